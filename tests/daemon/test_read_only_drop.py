"""`after_upload: delete` against a drop folder that is a read-only mount (as the shipped unit keeps
drop folders until a drop-in says otherwise): the file is uploaded, its delete waits, journaled,
with the reason in `syncd status` and the metric; once the mount is writable again the delete is
done by the running daemon, without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.daemon.daemon_process import (
    Watch, assert_exactly_once, config_data, free_port, local_files, run_syncd, status_json, wait_for_box,
    wait_until, write_config,
)
from tests.daemon.drops import write_file
from tests.support.mounts import tmpfs



def pending_metric(port: int) -> float:
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("syncd_post_actions_pending{"):
            return float(line.split()[1])
    raise AssertionError("syncd_post_actions_pending not exported")


@pytest.mark.timeout(120)
def test_a_delete_on_a_read_only_drop_folder_waits_with_its_reason_then_completes(tmp_path: Path, emulator,
                                                                                 daemon_factory):
    port = free_port()
    with tmpfs(tmp_path / "drop", "4m") as mount:
        write_file(mount.path / "in/scan.pdf", b"scanned on a read-only share")
        mount.remount(read_only=True)
        config = write_config(tmp_path / "syncd.yaml", config_data(
            emulator, tmp_path / "var" / "journal.db", [Watch(mount.path, options={"after_upload": "delete"})],
            readiness={"settle": "300ms"}, retry={"initial_backoff": "500ms", "max_backoff": "1s"},
            metrics={"listen": f"127.0.0.1:{port}"}))
        daemon = daemon_factory(config).start()
        expected = local_files(mount.path)
        wait_for_box(emulator, expected, timeout=30, daemon=daemon)

        def waiting() -> dict | None:
            actions = status_json(config)["post_actions"]
            return actions[0] if actions and actions[0]["reason"] else None

        wait_until(lambda: waiting() is not None, timeout=30, message=lambda: daemon.tail())
        action = waiting()
        assert (action["action"], action["path"], action["code"]) == ("delete", "in/scan.pdf", "EROFS"), action
        assert action["reason"] == "Read-only file system"
        assert (mount.path / "in/scan.pdf").exists()
        assert status_json(config)["counts"]["uploaded"] == 1
        assert pending_metric(port) == 1
        check = run_syncd("status", "--config", str(config), "--check")
        assert check.returncode == 1 and "after-upload action(s) waiting" in check.stdout, check.stdout
        assert "after-upload actions pending: 1" in run_syncd("status", "--config", str(config)).stdout

        mount.remount(read_only=False)
        wait_until(lambda: not (mount.path / "in/scan.pdf").exists(), timeout=30, message=lambda: daemon.tail())
        wait_until(lambda: status_json(config)["post_actions_pending"] == 0, timeout=10)
        assert pending_metric(port) == 0
        assert daemon.running() and daemon.starts == 1 and len(daemon.events("daemon_started")) == 1
        assert daemon.events("source_deleted") and daemon.events("source_action_deferred")
        assert_exactly_once(emulator, expected)
        assert daemon.stop() == 0
