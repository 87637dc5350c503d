#!/usr/bin/env bash
# Set up everything (system packages, .venv) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k emulator`.
# Tests run in SYNCD_TEST_WORKERS processes (default 4; most of a daemon test's time is
# waiting on real processes, so more workers than the 2 cores CI has pays), one test
# file per process at a time (--dist loadfile keeps a module's fixtures in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -n "${SYNCD_TEST_WORKERS:-4}" --dist loadfile "$@"
