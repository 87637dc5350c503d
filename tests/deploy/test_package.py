"""The Debian package, end to end on this machine (as CI runs it, as root): build it with
scripts/build-deb.sh, lint it, install it with dpkg, run the installed syncd, verify the
installed units, upgrade over it, purge it.

It is the suite's one slow test (building the virtualenv; the first build on a machine also
downloads and compiles the wheels, cached in build/deb/wheels afterwards). It installs into
the real /opt/syncd, /etc/syncd and /lib/systemd/system, so it refuses to run over a syncd
that dpkg did not install, and takes a lock so that two checkouts on one machine do not
run dpkg at once.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd import __version__

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
LOCK = Path("/tmp/syncd-package-test.lock")
UNITS = (Path("/lib/systemd/system/syncd.service"), Path("/lib/systemd/system/syncd@.service"))
# Anything in a maintainer script that would start or restart the service unasked.
STARTS = re.compile(r"systemctl\s+(?:--\S+\s+)*(start|restart|try-restart|reload-or-restart|enable)\b"
                    r"|invoke-rc\.d|deb-systemd-invoke\s+(start|restart)")


def run(*argv: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)


def shell_code(script: Path) -> str:
    """A maintainer script without its comments and quoted messages (which may name commands)."""
    code = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
    return re.sub(r'"[^"]*"', '""', code)


def installed() -> bool:
    status = run("dpkg-query", "-W", "-f=${Status}", "syncd")
    return status.returncode == 0 and "installed" in status.stdout.split()


@pytest.fixture
def package_slot() -> Iterator[None]:
    """This machine's package manager, for this test alone; a syncd left by an earlier run is purged."""
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            assert run("dpkg", "--purge", "syncd").returncode == 0
        if Path("/opt/syncd").exists():
            pytest.fail("/opt/syncd exists but no syncd package owns it: move it aside to run this test")
        state_existed = Path("/var/lib/syncd").exists()
        try:
            yield
        finally:
            if installed():
                run("dpkg", "--purge", "syncd")
            if not state_existed:
                shutil.rmtree("/var/lib/syncd", ignore_errors=True)


def test_the_package_builds_lints_installs_verifies_upgrades_and_purges(package_slot: None, tmp_path: Path) -> None:
    built = run("bash", str(REPO / "scripts/build-deb.sh"), timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    deb = REPO / built.stdout.strip().splitlines()[-1]
    assert deb.name == f"syncd_{__version__}_{run('dpkg', '--print-architecture').stdout.strip()}.deb"

    lint = run("lintian", "--fail-on", "error", str(deb))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert not [line for line in lint.stdout.splitlines() if line.startswith("E:")]

    assert STARTS.search("systemctl --no-block restart syncd.service")  # the check below can fail
    control = tmp_path / "control"
    assert run("dpkg-deb", "--control", str(deb), str(control)).returncode == 0
    for script in ("postinst", "prerm", "postrm"):
        assert not STARTS.search(shell_code(control / script)), f"{script} starts the service unasked"
    assert (control / "conffiles").read_text().split() == ["/etc/syncd/syncd.yaml"]

    install = run("dpkg", "-i", str(deb))
    assert install.returncode == 0, install.stdout + install.stderr
    version = run("/opt/syncd/bin/syncd", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"syncd {__version__}")
    # Its own interpreter is Debian's, and systemd-python was compiled for it.
    assert Path("/opt/syncd/bin/python").resolve().parent == Path("/usr/bin")
    assert run("/opt/syncd/bin/python", "-c", "import systemd.daemon, systemd.journal").returncode == 0
    # psycopg runs on Debian's libpq5 (a Depends), not on a copy bundled in /opt/syncd.
    libpq = run("/opt/syncd/bin/python", "-c", "import psycopg; print(psycopg.pq.__impl__, psycopg.pq.version())")
    assert libpq.returncode == 0 and libpq.stdout.split()[0] == "python", libpq.stderr
    assert "libpq5" in run("dpkg-query", "-W", "-f=${Depends}", "syncd").stdout
    for unit in UNITS:
        verified = run("systemd-analyze", "verify", str(unit if "@" not in unit.name else
                                                         unit.with_name("syncd@demo.service")))
        assert (verified.returncode, verified.stderr) == (0, ""), (unit, verified.stderr)
    assert run("getent", "passwd", "syncd").returncode == 0
    assert Path("/var/lib/syncd").owner() == "syncd"
    config = Path("/etc/syncd/syncd.yaml")
    assert (config.group(), oct(config.stat().st_mode & 0o777)) == ("syncd", "0o640")
    assert run("pgrep", "-f", "/opt/syncd/bin/syncd run").returncode == 1  # installed, not started
    # The installed example, from a root shell outside systemd: valid, and honest about secrets.
    shell = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    checked = run("/usr/bin/syncd", "check-config", env=shell)
    assert checked.returncode == 0, checked.stderr
    assert "box.auth.client_secret from credential box-client-secret: not verified outside systemd" in checked.stdout

    # Upgrade (here: the same package again) keeps an edited config and the journal.
    config.write_text(config.read_text() + "# edited by the operator\n")
    journal = Path("/var/lib/syncd/journal.db")
    journal.write_bytes(b"not really a journal, but it must survive the upgrade")
    again = run("dpkg", "--force-confold", "-i", str(deb))
    assert again.returncode == 0, again.stdout + again.stderr
    assert config.read_text().endswith("# edited by the operator\n")
    assert journal.read_bytes() == b"not really a journal, but it must survive the upgrade"

    purge = run("dpkg", "--purge", "syncd")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not installed()
    assert [unit for unit in UNITS if unit.exists()] == []
    assert not Path("/opt/syncd").exists() and not Path("/usr/bin/syncd").exists() and not config.exists()
