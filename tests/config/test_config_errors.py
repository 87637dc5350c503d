"""Every class of config error produces a message naming the key, the fault and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.config import ConfigError, load_config
from tests.config.conftest import MINIMAL, load_ok, load_problems, problem_for

# Loading is pure computation on tiny files: anything slow is a bug (a missing
# section once sent the line lookup into an endless loop).
pytestmark = pytest.mark.timeout(20)

CASES = [
    # (id, yaml text, key, fragments that must all appear in the rendered problem)
    ("unknown key with suggestion", MINIMAL + "workerz: 3\n", "workerz",
     ["is not a known key", "did you mean 'workers'?", "(line 9)"]),
    ("unknown nested key", MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    confict: skip'),
     "watches[0].confict", ["did you mean 'conflict'?"]),
    ("unknown key without suggestion lists the known ones", MINIMAL + "logging: {colour: red}\n",
     "logging.colour", ["expected one of format, level"]),
    ("key of another auth type", MINIMAL.replace("token: dev-token}", "token: dev-token, token_store: x}"),
     "box.auth.token_store", ["token_store is used by auth type oauth"]),
    ("wrong type: integer", MINIMAL + "workers: many\n", "workers", ["is 'many'", "a whole number >= 1"]),
    ("wrong type: boolean", MINIMAL.replace("  auth:", "  verify_tls: 'yes'\n  auth:"), "box.verify_tls",
     ["true or false"]),
    ("wrong type: section", MINIMAL + "retry: 5\n", "retry", ["is int 5", "a mapping"]),
    ("integer out of range", MINIMAL + "workers: 0\n", "workers", ["is 0, out of range"]),
    ("bad size", MINIMAL.replace("  auth:", "  direct_upload_max: 50 megs\n  auth:"), "box.direct_upload_max",
     ["'50 megs' has an unknown unit 'megs'", "50MiB"]),
    ("size below Box's chunked minimum", MINIMAL.replace("  auth:", "  direct_upload_max: 10MiB\n  auth:"),
     "box.direct_upload_max", ["10,485,760 bytes, too small", "at least 20,000,000 bytes"]),
    ("bad duration", MINIMAL + "scan_interval: 10 minutes\n", "scan_interval",
     ["'10 minutes' is not a duration", "10s, 5m"]),
    ("duration without unit", MINIMAL + "shutdown_timeout: 30\n", "shutdown_timeout", ["did you mean '30s'?"]),
    ("zero duration where positive needed", MINIMAL + "retry: {initial_backoff: 0}\n", "retry.initial_backoff",
     ["is zero"]),
    ("max_backoff below initial_backoff", MINIMAL + "retry: {initial_backoff: 1m, max_backoff: 10s}\n",
     "retry.max_backoff", ["shorter than initial_backoff"]),
    ("bad enum with suggestion", MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    conflict: versoin'),
     "watches[0].conflict", ["'versoin', not allowed", "version, skip, rename, fail", "did you mean 'version'?"]),
    ("bad auth type", MINIMAL.replace("type: developer_token", "type: oauth2"), "box.auth.type",
     ["did you mean 'oauth'?"]),
    ("missing required top-level", MINIMAL.replace("journal: ./var/journal.db\n", ""), "journal",
     ["is required but missing", "a file system path"]),
    ("missing required in a watch", MINIMAL.replace('    folder_id: "0"\n', ""), "watches[0].folder_id",
     ["is required but missing", "Box folder id"]),
    ("missing auth secret", MINIMAL.replace(", token: dev-token", ""), "box.auth.token", ["is required"]),
    ("missing section", MINIMAL.split("journal:")[0].replace("box:", "bix:") + "journal: j.db\nwatches: [{path: inbox, folder_id: '0'}]\n",
     "box.auth.type", ["is required but missing", "developer_token, oauth"]),
    ("missing watches", MINIMAL.split("watches:")[0], "watches", ["at least one watch"]),
    ("empty watches", MINIMAL.split("watches:")[0] + "watches: []\n", "watches", ["at least one watch"]),
    ("folder id not digits", MINIMAL.replace('folder_id: "0"', 'folder_id: "abc"'), "watches[0].folder_id",
     ["quoted string of digits"]),
    ("archive_dir required for move", MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    after_upload: move'),
     "watches[0].archive_dir", ["is required when after_upload is move"]),
    ("archive_dir without move", MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    archive_dir: /srv/a'),
     "watches[0].archive_dir", ["is set but after_upload is keep"]),
    ("archive inside the watch",
     MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    after_upload: move\n    archive_dir: inbox/done'),
     "watches[0].archive_dir", ["would be uploaded again"]),
    ("archive template field", MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    archive_template: "{dat}/{name}"'),
     "watches[0].archive_template", ["unknown field {dat}", "did you mean 'date'?"]),
    ("archive template escaping", MINIMAL.replace('folder_id: "0"', 'folder_id: "0"\n    archive_template: "../{name}"'),
     "watches[0].archive_template", ["leaves the archive folder"]),
    ("journal inside a watch", MINIMAL.replace("journal: ./var/journal.db", "journal: inbox/journal.db"),
     "journal", ["would be uploaded"]),
    ("verify_tls false for a remote host",
     MINIMAL.replace("http://127.0.0.1:8765/2.0", "https://api.box.com/2.0").replace("  auth:", "  verify_tls: false\n  auth:"),
     "box.verify_tls", ["api_url points at api.box.com, a non-loopback host"]),
    ("plain http to a remote host", MINIMAL.replace("http://127.0.0.1:8765/api/2.0", "http://upload.example.com/api/2.0"),
     "box.upload_url", ["send tokens in clear"]),
    ("not a URL", MINIMAL.replace("http://127.0.0.1:8765/2.0", "127.0.0.1:8765"), "box.api_url",
     ["is not an http(s) URL"]),
    ("metrics on a public address", MINIMAL + "metrics: {listen: '0.0.0.0:9108'}\n", "metrics.listen",
     ["reachable from other machines", "allow_remote: true"]),
    ("metrics address malformed", MINIMAL + "metrics: {listen: 'localhost'}\n", "metrics.listen", ["is not HOST:PORT"]),
    ("duplicate key", MINIMAL + "workers: 2\nworkers: 3\n", "workers", ["appears twice"]),
    ("duplicate watch", MINIMAL + '  - path: ./inbox/\n    folder_id: "1"\n    name: other\n', "watches[1].path",
     ["is already watched by watches[0]"]),
    ("nested watch", MINIMAL + '  - path: ./inbox/sub\n    folder_id: "1"\n', "watches[1].path",
     ["is inside watches[0]"]),
    ("watch containing an earlier one", MINIMAL.replace("./inbox", "./inbox/deep") + '  - path: ./inbox\n    folder_id: "1"\n',
     "watches[0].path", ["is inside watches[1]"]),
    ("duplicate watch names", MINIMAL + '  - path: ./other/inbox\n    folder_id: "1"\n', "watches[1].name",
     ["'inbox' is also the name of watches[0]", "set name: explicitly"]),
    ("bad secret source", MINIMAL.replace("token: dev-token", "token: {envv: X}"), "box.auth.token.envv",
     ["did you mean 'env'?"]),
    ("missing env var", MINIMAL.replace("token: dev-token", "token: {env: NO_SUCH_VAR}"), "box.auth.token.env",
     ["environment variable NO_SUCH_VAR is not set"]),
    ("credential without CREDENTIALS_DIRECTORY", MINIMAL.replace("token: dev-token", "token: {credential: box}"),
     "box.auth.token.credential", ["$CREDENTIALS_DIRECTORY is not set", "LoadCredential=box:"]),
    ("missing secret file", MINIMAL.replace("token: dev-token", "token: {file: nope.txt}"), "box.auth.token.file",
     ["nope.txt does not exist"]),
    ("a structure that contains itself", MINIMAL + "alerts: &loop {pending_older_than: *loop}\n", "",
     ["is not valid YAML: an alias refers to a mapping or list that contains it"]),
    ("zero stuck_after", MINIMAL + "health: {stuck_after: 0s}\n", "health.stuck_after", ["is zero"]),
    ("unknown retention key", MINIMAL + "retention: {histroy: 30d}\n", "retention.histroy",
     ["did you mean 'history'?"]),
    ("bad retention", MINIMAL + "retention: {uploaded_rows: forever}\n", "retention.uploaded_rows",
     ["is not a duration", "or null to turn it off"]),
]


@pytest.mark.parametrize(("text", "key", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_class_message(write_config, text: str, key: str, fragments: list[str]) -> None:
    error = load_problems(write_config(text))
    message = problem_for(error, key)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_secret_file_open_to_others_is_refused_with_the_fix(write_config, tmp_path: Path) -> None:
    secret = tmp_path / "token.txt"
    secret.write_text("file-secret-value\n")
    os.chmod(secret, 0o644)
    error = load_problems(write_config(MINIMAL.replace("token: dev-token", "token: {file: token.txt}")))
    message = problem_for(error, "box.auth.token.file")
    assert "open to group/others (mode 0644)" in message
    assert f"fix: chmod 600 {secret}" in message
    assert "file-secret-value" not in str(error)


def test_missing_credential_names_the_unit_setting(write_config, tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    error = load_problems(write_config(MINIMAL.replace("token: dev-token", "token: {credential: box-token}")),
                         environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    message = problem_for(error, "box.auth.token.credential")
    assert f"credential box-token is not in $CREDENTIALS_DIRECTORY ({credentials})" in message
    assert "LoadCredential=box-token:" in message


def test_metrics_on_public_address_allowed_explicitly_with_warning(write_config) -> None:
    config = load_ok(write_config(MINIMAL + "metrics: {listen: '0.0.0.0:9108', allow_remote: true}\n"))
    assert str(config.metrics.listen) == "0.0.0.0:9108"
    assert any("serves metrics to other machines" in w for w in config.warnings)


def test_verify_tls_false_is_allowed_on_loopback(write_config) -> None:
    config = load_ok(write_config(MINIMAL.replace("  auth:", "  verify_tls: false\n  auth:")))
    assert config.box.verify_tls is False


def test_all_problems_are_reported_at_once(write_config) -> None:
    text = """\
        box:
          api_url: https://api.box.com/2.0
          auth: {type: developer_token, token: {env: MISSING_TOKEN}}
          direct_upload_max: lots
          verify_tls: false
        workerz: 3
        scan_interval: 5 min
        watches:
          - path: ./inbox
            folder_id: 0x
            conflict: overwrite
            after_upload: move
          - path: ./inbox/nested
            folder_id: "1"
        logging: {format: jsn}
        """
    error = load_problems(write_config(text))
    keys = [p.key for p in error.problems]
    assert keys == [
        "journal",  # missing keys have no line and come first
        "box.auth.token.env",
        "box.direct_upload_max",
        "box.verify_tls",
        "workerz",
        "scan_interval",
        "watches[0].archive_dir",
        "watches[0].folder_id",
        "watches[0].conflict",
        "watches[1].path",
        "logging.format",
    ]
    rendered = str(error)
    assert rendered.startswith(f"{error.source}: 11 problems:\n  - journal: is required but missing")
    assert "\n  - box.auth.token.env (line 3): environment variable MISSING_TOKEN is not set" in rendered
    assert len(rendered.splitlines()) == 12


def test_file_level_problems(tmp_path: Path) -> None:
    cases = {
        "missing.yaml": None,
        "empty.yaml": "",
        "list.yaml": "- a\n- b\n",
        "syntax.yaml": "box:\n  api_url: [unclosed\njournal: x\n",
    }
    messages = {}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path / name, environ={})
        (problem,) = caught.value.problems
        messages[name] = str(problem)
    assert messages["missing.yaml"] == "(file): file not found; expected a YAML config file"
    assert messages["empty.yaml"].startswith("(file): is empty")
    assert messages["list.yaml"].startswith("(file): is a list")
    assert messages["syntax.yaml"].startswith("(file) (line ") and "is not valid YAML" in messages["syntax.yaml"]


def test_wrong_type_for_a_secret_does_not_echo_it(write_config) -> None:
    error = load_problems(write_config(MINIMAL.replace("token: dev-token", "token: [s3cr3t-value, x]")))
    assert "s3cr3t-value" not in str(error)
    assert "{file: PATH}" in problem_for(error, "box.auth.token")


def test_yaml_syntax_error_does_not_quote_the_file(write_config) -> None:
    error = load_problems(write_config(MINIMAL.replace("token: dev-token}", "token: \"leaky-9d1\t}\n  x: [")))
    assert "leaky-9d1" not in str(error) and "is not valid YAML" in str(error)
