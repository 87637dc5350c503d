"""Run a real `syncd run` whose logs go to a real systemd-journald, and print what journald holds.

Run inside a private mount namespace (``unshare --mount``): tmpfs goes over /run (and
/var/log/journal) first, as in tests/logs/journald_probe.py, so the machine's journal is
neither read nor touched. Usage: python journald_daemon.py CONFIG STOP_FILE. The daemon
(its config says ``logging.format: journald``) runs until STOP_FILE appears, then gets
SIGTERM; every journal entry (``journalctl -o json``, all of them) is printed on stdout.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.logs.journald_probe import _mount_private_dirs, _start_journald


def main() -> None:
    config, stop_file = sys.argv[1], Path(sys.argv[2])
    _mount_private_dirs()
    journald = _start_journald()
    try:
        daemon = subprocess.Popen([sys.executable, "-m", "syncd", "run", "--config", config],
                                  stdout=subprocess.DEVNULL, stderr=sys.stderr)
        deadline = time.monotonic() + 120
        while not stop_file.exists() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        time.sleep(0.3)  # the last entries reach journald
        result = subprocess.run(["journalctl", "-o", "json", "--no-pager"], capture_output=True, text=True)
        sys.stdout.write(result.stdout)
        sys.exit(daemon.returncode)
    finally:
        journald.terminate()
        journald.wait(timeout=10)


if __name__ == "__main__":
    main()
