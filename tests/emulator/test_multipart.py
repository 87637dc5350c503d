"""The incremental multipart parser (pure logic): any split of the body gives the same parts."""

from __future__ import annotations

import pytest

from syncd.emulator.multipart import End, MultipartError, MultipartParser, PartData, PartStart, parse_options_header

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


@pytest.mark.parametrize(("header", "expected"), [
    ("multipart/form-data; boundary=abc", ("multipart/form-data", {"boundary": "abc"})),
    ('Multipart/Form-Data; BOUNDARY="a;b c"', ("multipart/form-data", {"boundary": "a;b c"})),
    ('form-data; name="file"; filename=""', ("form-data", {"name": "file", "filename": ""})),
    ('form-data; name="q\\"x"', ("form-data", {"name": 'q"x'})),
    ("form-data; name=attributes", ("form-data", {"name": "attributes"})),
    ("form-data; filename=\"a.txt\"; filename*=UTF-8''%C3%A9.txt", ("form-data", {"filename": "é.txt"})),
    ("text/plain", ("text/plain", {})),
])
def test_parse_options_header(header: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_options_header(header) == expected
