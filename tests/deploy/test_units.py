"""The shipped unit files, checked by the real systemd-analyze and systemd-sysusers.

`systemd-analyze verify` insists that every Exec*= binary exists. The units name
the production paths (/opt/syncd/bin/syncd, /bin/kill), so verification runs
against a throw-away root (`--root=`) laid out like an installed server: the
units and the drop-in under /etc/systemd/system, this virtualenv's real `syncd`
entry point at /opt/syncd/bin/syncd, and systemd's own targets, which verify
needs to build the dependency graph (only regular files are copied: the
absolute symlinks among them would point out of the root).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

import pytest

from syncd.cli import EXIT_USAGE
from syncd.config.model import Config

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SYSTEMD_UNITS = Path("/usr/lib/systemd/system")
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
MAX_EXPOSURE = 2.0

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Section -> key -> every value given (keys may repeat), ignoring comments."""
    unit: Unit = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        unit[section][key].append(value)
    return unit


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def installed_syncd() -> Path:
    found = shutil.which("syncd", path=str(Path(sys.executable).parent))
    assert found, "the virtualenv has no syncd entry point; run scripts/bootstrap.sh"
    return Path(found)


@pytest.fixture(scope="module")
def server_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for target in SYSTEMD_UNITS.glob("*.target"):
        if target.is_file() and not target.is_symlink():
            shutil.copy(target, units)
    local = root / "etc/systemd/system"
    (local / "syncd.service.d").mkdir(parents=True)
    (local / "syncd@demo.service.d").mkdir(parents=True)
    shutil.copy(DEPLOY / "syncd.service", local)
    shutil.copy(DEPLOY / "syncd@.service", local)
    shutil.copy(DEPLOY / "drop-in/drop-folders.conf", local / "syncd.service.d")
    shutil.copy(DEPLOY / "drop-in/drop-folders.conf", local / "syncd@demo.service.d")
    (root / "opt/syncd/bin").mkdir(parents=True)
    shutil.copy(installed_syncd(), root / "opt/syncd/bin/syncd")
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")
    return root


@pytest.mark.parametrize("unit", ["syncd.service", "syncd@demo.service"])
def test_verify_is_clean(server_root: Path, unit: str) -> None:
    result = run(SYSTEMD_ANALYZE, "verify", f"--root={server_root}", unit)
    # verify exits 0 on mere warnings (unknown keys, bad values), so "clean" means no output at all.
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_verify_would_catch_a_missing_binary(server_root: Path, tmp_path: Path) -> None:
    """The check above can fail: without the installed binary, verify complains."""
    root = tmp_path / "root"
    shutil.copytree(server_root, root, symlinks=True)
    (root / "opt/syncd/bin/syncd").unlink()
    result = run(SYSTEMD_ANALYZE, "verify", f"--root={root}", "syncd.service")
    assert result.returncode != 0
    assert "/opt/syncd/bin/syncd" in result.stderr


def exposure(*argv: str) -> dict[str, float]:
    result = run(SYSTEMD_ANALYZE, "security", "--offline=true", *argv)
    assert result.returncode == 0, result.stderr
    scores = {
        name: float(score)
        for name, score in re.findall(r"Overall exposure level for (\S+): (\d+\.\d+)", result.stdout)
    }
    assert scores, result.stdout
    return scores


def test_security_exposure_of_the_shipped_file_is_at_most_2() -> None:
    # The exact command the README and the issue quote.
    assert exposure(str(DEPLOY / "syncd.service"))["syncd.service"] <= MAX_EXPOSURE


@pytest.mark.parametrize("unit", ["syncd.service", "syncd@demo.service"])
def test_security_exposure_with_the_drop_folder_drop_in_is_at_most_2(server_root: Path, unit: str) -> None:
    assert exposure(f"--root={server_root}", unit)[unit] <= MAX_EXPOSURE


def test_sysusers_creates_a_system_user_without_a_login(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    result = run("systemd-sysusers", f"--root={tmp_path}", str(DEPLOY / "sysusers.d/syncd.conf"))
    assert result.returncode == 0, result.stderr
    users = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    name, _, uid, gid, _, home, shell = users["syncd"]
    assert int(uid) < 1000  # a system user
    assert home == "/var/lib/syncd"
    assert shell.endswith("nologin")
    groups = {line.split(":")[0]: line.split(":")[2] for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert groups["syncd"] == gid


def test_the_service_contract() -> None:
    service = parse_unit(DEPLOY / "syncd.service")["Service"]
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": ["/opt/syncd/bin/syncd run --config /etc/syncd/syncd.yaml"],
        # Validate, then signal: a bad config fails `systemctl reload` (tests/ops/test_reload.py runs these).
        "ExecReload": ["/opt/syncd/bin/syncd check-config --config /etc/syncd/syncd.yaml", "/bin/kill -HUP $MAINPID"],
        # File leases on other users' files (writer detection); nothing else.
        "CapabilityBoundingSet": ["CAP_LEASE"],
        "AmbientCapabilities": ["CAP_LEASE"],
        "WatchdogSec": ["30s"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": [str(EXIT_USAGE)],  # a bad config is not fixed by restarting
        "User": ["syncd"],
        "StateDirectory": ["syncd"],
        "ConfigurationDirectory": ["syncd"],
    }
    assert {key: service[key] for key in expected} == expected
    credentials = dict(value.split(":", 1) for value in service["LoadCredential"])
    # Credential store names, not absolute paths: a missing one is skipped instead of
    # failing the start, so a developer-token setup needs no client-secret file.
    assert credentials == {
        "box-token": "syncd.box-token",
        "box-client-secret": "syncd.box-client-secret",
        "box-key-passphrase": "syncd.box-key-passphrase",
    }
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)", value)
    assert match, f"unexpected time span {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_systemd_waits_longer_than_syncd_takes_to_shut_down() -> None:
    default_shutdown = next(f.default for f in fields(Config) if f.name == "shutdown_timeout")
    for unit in ("syncd.service", "syncd@.service"):
        stop = seconds(parse_unit(DEPLOY / unit)["Service"]["TimeoutStopSec"][0])
        assert stop >= default_shutdown + 30, f"{unit}: TimeoutStopSec leaves no margin over shutdown_timeout"


def test_the_template_differs_from_the_service_only_by_instance() -> None:
    plain = parse_unit(DEPLOY / "syncd.service")
    template = parse_unit(DEPLOY / "syncd@.service")
    per_instance = {
        ("Unit", "Description"),
        ("Service", "ExecStart"),
        ("Service", "ExecReload"),
        ("Service", "SyslogIdentifier"),
        ("Service", "Environment"),  # SYNCD_SYSLOG_IDENTIFIER follows SyslogIdentifier
        ("Service", "StateDirectory"),
        ("Service", "LoadCredential"),
    }
    for section in plain.keys() | template.keys():
        for key in plain[section].keys() | template[section].keys():
            if (section, key) in per_instance:
                assert any("%i" in v for v in template[section][key]), (section, key)
            else:
                assert plain[section][key] == template[section][key], (section, key)
    assert template["Service"]["ExecStart"] == ["/opt/syncd/bin/syncd run --config /etc/syncd/%i.yaml"]
