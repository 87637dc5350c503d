"""What a SIGHUP reload has to apply: the difference between two configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from syncd.config import diff_configs
from tests.config.conftest import MINIMAL, load_ok


def test_identical_configs_have_no_changes(write_config) -> None:
    first = load_ok(write_config(MINIMAL, "a.yaml"))
    second = load_ok(write_config(MINIMAL, "b.yaml"))
    changes = diff_configs(first, second)
    assert changes.is_empty and changes.describe() == [] and changes.restart_required == ()


def test_watches_added_removed_changed_and_settings(write_config, tmp_path: Path) -> None:
    old = load_ok(write_config(MINIMAL + '  - path: ./gone\n    folder_id: "5"\n', "old.yaml"))
    new_text = (
        MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    conflict: skip')
        .replace("token: dev-token", "token: rotated-token")
        .replace("./var/journal.db", "./var/other.db")
        + '  - path: ./new\n    folder_id: "6"\nworkers: 8\nretry: {max_backoff: 2h}\n'
    )
    new = load_ok(write_config(new_text, "new.yaml"))
    changes = diff_configs(old, new)

    assert [w.name for w in changes.watches_added] == ["new"]
    assert [w.name for w in changes.watches_removed] == ["gone"]
    (changed,) = changes.watches_changed
    assert changed.path == tmp_path / "inbox"
    assert [(f.key, f.old, f.new) for f in changed.fields] == [("conflict", "version", "skip")]
    keys = {f.key: f for f in changes.settings_changed}
    assert set(keys) == {"box.auth.token", "journal", "workers", "retry.max_backoff"}
    assert (keys["workers"].old, keys["workers"].new) == (4, 8)
    assert changes.restart_required == ("box.auth.token", "journal", "workers")
    described = "\n".join(changes.describe())
    assert "watch added: new" in described and "watch removed: gone" in described
    assert "watch inbox: conflict: 'version' -> 'skip'" in described
    assert "box.auth.token: Secret('***') -> Secret('***')" in described
    assert "dev-token" not in described and "rotated-token" not in described


def test_auth_type_change_is_one_setting(write_config) -> None:
    old = load_ok(write_config(MINIMAL, "a.yaml"))
    new_auth = dataclasses.replace(old.box, auth=dataclasses.replace(old.box.auth, token=old.box.auth.token))
    assert diff_configs(old, dataclasses.replace(old, box=new_auth)).is_empty
    ccg = MINIMAL.replace("auth: {type: developer_token, token: dev-token}",
                          "auth: {type: client_credentials, client_id: c, client_secret: s3cret, subject_type: user,"
                          " subject_id: '9'}")
    changes = diff_configs(old, load_ok(write_config(ccg, "b.yaml")))
    assert [f.key for f in changes.settings_changed] == ["box.auth"]


def test_every_setting_either_applies_on_reload_or_needs_a_restart() -> None:
    """One list decides (the daemon reads `restart_required`): every top-level key of the
    config file, and every compared field of Config, is in exactly one of the two sets."""
    import dataclasses

    from syncd.config import APPLIED_ON_RELOAD, RESTART_REQUIRED, SCHEMA, Config

    assert not APPLIED_ON_RELOAD & RESTART_REQUIRED
    assert APPLIED_ON_RELOAD | RESTART_REQUIRED == set(SCHEMA[""])
    assert APPLIED_ON_RELOAD | RESTART_REQUIRED == {f.name for f in dataclasses.fields(Config) if f.compare}
