#!/usr/bin/env bash
# Set up everything (system packages, .venv) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k emulator`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
