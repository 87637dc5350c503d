"""An incremental multipart/form-data parser built on `bytes.find`.

Box's direct uploads arrive as multipart bodies of any size, so the body is
fed in chunks and part data comes out as it arrives, never accumulated.
(werkzeug's sansio decoder compiles regular expressions per boundary, which
costs more than the rest of a small upload; this parser compiles nothing.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_HEADER_BLOCK = 16 * 1024
_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def parse_options_header(value: str) -> tuple[str, dict[str, str]]:
    """`multipart/form-data; boundary="x"` -> ("multipart/form-data", {"boundary": "x"}).

    Parameter names are lower-cased; quoted values are unescaped; RFC 5987
    `name*=UTF-8''...` values are decoded and win over the plain form.
    """
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if name.endswith("*"):
            charset, _, encoded = raw.partition("'")
            _, _, encoded = encoded.partition("'")
            params[name[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="replace")
        else:
            params.setdefault(name, raw)
    return main.strip().lower(), params


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class PartStart:
    """A new part begins; `filename` is None when the part has none (a plain field)."""

    name: str | None
    filename: str | None


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class End:
    """The closing boundary was seen."""


Event = PartStart | PartData | End


class MultipartParser:
    """Feed bytes with `feed`; it returns the events those bytes complete."""

    def __init__(self, boundary: bytes) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("invalid multipart boundary")
        self._dash_boundary = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray()
        self._state = "preamble"

    @property
    def finished(self) -> bool:
        return self._state == "end"

    def feed(self, data: bytes) -> list[Event]:
        if self._state == "end":
            return []
        self._buffer += data
        events: list[Event] = []
        while True:
            progressed = getattr(self, f"_{self._state}")(events)
            if not progressed or self._state == "end":
                return events

    def _preamble(self, events: list[Event]) -> bool:
        buffer = self._buffer
        index = buffer.find(self._dash_boundary)
        if index < 0:
            keep = len(self._dash_boundary)
            if len(buffer) > keep:
                del buffer[: len(buffer) - keep]
            return False
        after = index + len(self._dash_boundary)
        return self._after_boundary(after, events)

    def _after_boundary(self, after: int, events: list[Event]) -> bool:
        buffer = self._buffer
        if len(buffer) < after + 2:
            return False
        tail = bytes(buffer[after:after + 2])
        if tail == b"--":
            del buffer[:]
            self._state = "end"
            events.append(End())
            return True
        # Transport padding (spaces/tabs) may follow a boundary before its CRLF.
        line_end = buffer.find(b"\n", after)
        if line_end < 0:
            if len(buffer) - after > 256:
                raise MultipartError("garbage after boundary")
            return False
        if bytes(buffer[after:line_end]).strip(b" \t\r"):
            raise MultipartError("garbage after boundary")
        del buffer[: line_end + 1]
        self._state = "headers"
        return True

    def _headers(self, events: list[Event]) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        size = 4
        if end < 0:
            end = buffer.find(b"\n\n")
            size = 2
        if end < 0:
            if buffer.startswith(b"\r\n"):  # a part with no headers at all
                end, size = -2, 4
            else:
                if len(buffer) > MAX_HEADER_BLOCK:
                    raise MultipartError("part headers too large")
                return False
        block = bytes(buffer[: max(end, 0)])
        del buffer[: end + size]
        name = filename = None
        for line in block.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == "content-disposition":
                _, options = parse_options_header(value.strip())
                name = options.get("name")
                filename = options.get("filename")
        if name is None and filename is None:
            raise MultipartError("part without a Content-Disposition name")
        events.append(PartStart(name, filename))
        self._state = "data"
        return True

    def _data(self, events: list[Event]) -> bool:
        buffer = self._buffer
        index = buffer.find(self._delimiter)
        if index < 0:
            # Hold back what could be the start of a delimiter split across feeds.
            safe = len(buffer) - len(self._delimiter) + 1
            if safe > 0:
                events.append(PartData(bytes(buffer[:safe])))
                del buffer[:safe]
            return False
        if index:
            events.append(PartData(bytes(buffer[:index])))
        del buffer[:index]
        return self._after_boundary(len(self._delimiter), events)
