"""Server-supplied URLs get the bearer token only on trusted hosts (issue 11 item 7): the
rule itself, and the emulator handing out URLs on another origin (``--public-url``)."""

from __future__ import annotations

import pytest

from syncd.box import (
    ChunkedUpload,
    DeveloperTokenAuth,
    ErrorClass,
    SavedSession,
    TrustedURLs,
    Uploader,
    UntrustedURL,
)
from syncd.box.transport import Transport
from structlog.testing import capture_logs

from .conftest import MemoryProgress, count, make_client, write_file

MiB = 1024 * 1024


@pytest.mark.parametrize(("configured", "url", "ok"), [
    # Box's own hosts, over https only.
    (("https://api.box.com/2.0", "https://upload.box.com/api/2.0"), "https://upload-las.app.box.com/api/2.0/x", True),
    (("https://api.box.com/2.0",), "https://dl.boxcloud.com/d/1/x", True),
    (("https://api.box.com/2.0",), "http://upload.box.com/api/2.0/x", False),
    (("https://api.box.com/2.0",), "https://upload.box.com.evil.example/x", False),
    (("https://api.box.com/2.0",), "https://evilbox.com/x", False),
    (("https://api.box.com/2.0",), "ftp://upload.box.com/x", False),
    # The configured hosts (a proxy in front of Box).
    (("https://box-proxy.corp.example/2.0",), "https://box-proxy.corp.example:8443/api/2.0/x", True),
    (("https://box-proxy.corp.example/2.0",), "http://box-proxy.corp.example/api/2.0/x", False),
    # Plain http only when every configured URL is loopback, and still only to trusted hosts.
    (("http://127.0.0.1:8765/2.0", "http://127.0.0.1:8765/api/2.0"), "http://127.0.0.1:8765/api/2.0/x", True),
    (("http://127.0.0.1:8765/2.0",), "http://127.0.0.1:9999/api/2.0/x", True),
    (("http://127.0.0.1:8765/2.0",), "http://10.0.0.5/api/2.0/x", False),
    (("http://127.0.0.1:8765/2.0",), "https://evil.example/x", False),
    (("http://127.0.0.1:8765/2.0", "https://api.box.com/2.0"), "http://127.0.0.1:8765/x", False),
    ((), "http://127.0.0.1:1/x", False),
])
def test_which_urls_may_get_the_token(configured, url: str, ok: bool) -> None:
    trusted = TrustedURLs(*configured)
    assert (trusted.problem(url) is None) is ok


def test_a_refused_url_says_why_and_is_permanent_config() -> None:
    with pytest.raises(UntrustedURL) as caught:
        TrustedURLs("https://api.box.com/2.0").check("https://evil.example/upload?token=x")
    assert caught.value.error_class is ErrorClass.PERMANENT_CONFIG
    assert "evil.example" in str(caught.value) and "token=x" not in str(caught.value)
    assert "box.api_url" in str(caught.value)  # the fix when it is a legitimate proxy


def test_the_transport_refuses_before_sending_anything() -> None:
    slept: list[float] = []
    transport = Transport(DeveloperTokenAuth("secret-token"), sleep=slept.append)
    transport.trusted.trust("https://api.box.com/2.0")
    with pytest.raises(UntrustedURL):
        transport.request("GET", "https://attacker.example/steal")  # no DNS lookup, no connection
    assert slept == []


@pytest.fixture
def elsewhere(emulator_factory):
    """An emulator whose absolute URLs (session endpoints, preflight upload_url) name another origin."""
    return emulator_factory("--min-chunked-size", "1000000", "--part-sizes", "*=1MiB",
                            "--public-url", "https://uploads.attacker.example")


def test_session_endpoints_on_an_untrusted_host_are_refused_before_they_are_kept(elsewhere, tmp_path) -> None:
    path = write_file(tmp_path / "f.bin", 2 * MiB)
    progress = MemoryProgress()
    with make_client(elsewhere) as client, pytest.raises(UntrustedURL) as caught:
        ChunkedUpload(client, path, "0", "f.bin", progress=progress).run()
    assert "uploads.attacker.example" in str(caught.value)
    assert progress.created == 0 and progress.saved is None  # never saved for a resume
    stats = elsewhere.stats()
    assert count(stats, "sessions.create", "201") == 1 and count(stats, "sessions.upload_part") == 0


def test_a_preflight_upload_url_on_an_untrusted_host_is_refused(elsewhere, tmp_path) -> None:
    path = write_file(tmp_path / "f.bin", MiB)
    with make_client(elsewhere) as client, pytest.raises(UntrustedURL):
        Uploader(client).upload(path, "0", "f.bin")
    stats = elsewhere.stats()
    assert count(stats, "files.preflight", "200") == 1 and count(stats, "files.upload") == 0


def test_a_stored_session_on_an_untrusted_host_is_dropped_and_the_upload_starts_afresh(emulator, tmp_path) -> None:
    path = write_file(tmp_path / "f.bin", 21_000_000)
    stored = SavedSession.resumed("ABCDEF0123456789ABCDEF0123456789", endpoint="https://evil.example/s/1",
                                  upload_url="unused", file_size=21_000_000, part_size=8 * MiB, total_parts=3,
                                  expires_at=None)
    progress = MemoryProgress(stored)
    with make_client(emulator) as client, capture_logs() as logs:
        result = Uploader(client, chunked_threshold=20_000_000).upload(path, "0", "f.bin", progress=progress)
    assert result.size == 21_000_000 and progress.discarded == 1 and progress.created == 1
    refused = [e for e in logs if e["event"] == "upload_session_url_refused"]
    assert len(refused) == 1 and refused[0]["url"] == "https://evil.example/s/1"
