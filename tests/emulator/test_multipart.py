"""The incremental multipart parser (pure logic): any split of the body gives the same parts."""

from __future__ import annotations

import pytest

from syncd.emulator.multipart import End, MultipartError, MultipartParser, PartData, PartStart

BODY = (b"preamble\r\n--BOUND\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n{\"a\":1}"
        b"\r\n--BOUND  \r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\n\r\n"
        b"line1\r\n--BOUN not yet\r\n\r\n--BOUND--\r\nepilogue")


def parse(chunks: list[bytes]) -> list[tuple[str | None, str | None, bytes]]:
    parser = MultipartParser(b"BOUND")
    parts: list[tuple[str | None, str | None, bytes]] = []
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, PartStart):
                parts.append((event.name, event.filename, b""))
            elif isinstance(event, PartData):
                name, filename, data = parts[-1]
                parts[-1] = (name, filename, data + event.data)
            else:
                assert isinstance(event, End)
    assert parser.finished
    return parts


EXPECTED = [("attributes", None, b'{"a":1}'), ("file", "", b"line1\r\n--BOUN not yet\r\n")]


def test_whole_body() -> None:
    assert parse([BODY]) == EXPECTED


def test_every_two_way_split() -> None:
    for cut in range(1, len(BODY)):
        assert parse([BODY[:cut], BODY[cut:]]) == EXPECTED, cut


def test_byte_by_byte() -> None:
    assert parse([BODY[i:i + 1] for i in range(len(BODY))]) == EXPECTED


@pytest.mark.parametrize("body", [
    b"--BOUND\r\nX-Other: 1\r\n\r\ndata\r\n--BOUND--",
    b"--BOUNDjunk\r\n\r\n",
])
def test_malformed(body: bytes) -> None:
    with pytest.raises(MultipartError):
        MultipartParser(b"BOUND").feed(body)
