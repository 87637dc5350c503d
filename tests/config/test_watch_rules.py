"""Archive paths and listen addresses: the pure rules on config values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from syncd.config import WatchConfig, is_loopback_host, parse_listen_address


def _watch(**overrides: object) -> WatchConfig:
    values: dict[str, object] = {"path": Path("/srv/in"), "folder_id": "1", "name": "in"}
    values.update(overrides)
    return WatchConfig(**values)  # type: ignore[arg-type]


def test_archive_path_renders_the_template() -> None:
    when = dt.datetime(2024, 3, 9, 12, 0)
    watch = _watch(after_upload="move", archive_dir=Path("/srv/done"))
    assert watch.archive_path("sub/a.pdf", when) == Path("/srv/done/2024/03/09/sub/a.pdf")
    custom = _watch(after_upload="move", archive_dir=Path("/srv/done"),
                    archive_template="{watch}/{date:%Y%m}/{stem}-x{suffix}")
    assert custom.archive_path("sub/a.pdf", when) == Path("/srv/done/in/202403/a-x.pdf")
    with pytest.raises(ValueError, match="has no archive_dir"):
        _watch().archive_path("a.pdf", when)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9108", ("127.0.0.1", 9108, True)), ("[::1]:80", ("::1", 80, True)),
    ("localhost:9108", ("localhost", 9108, True)), ("0.0.0.0:9108", ("0.0.0.0", 9108, False)),
    (":9108", ("0.0.0.0", 9108, False)), ("metrics.example.com:1", ("metrics.example.com", 1, False)),
    ("127.0.0.1", None), ("127.0.0.1:0", None), ("127.0.0.1:70000", None), ("a b:1", None),
])
def test_parse_listen_address(text: str, expected: tuple[str, int, bool] | None) -> None:
    address = parse_listen_address(text)
    if expected is None:
        assert address is None
    else:
        assert address is not None and (address.host, address.port, address.is_loopback) == expected


def test_loopback_hosts() -> None:
    assert all(map(is_loopback_host, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback_host, ["api.box.com", "10.0.0.1", "0.0.0.0", "localhost.example.com"]))
