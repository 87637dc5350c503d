"""Human-friendly sizes (``50MiB``, ``20MB``, ``1048576``) and durations (``500ms``, ``1h30m``)."""

from __future__ import annotations

import re

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

SIZE_EXPECTED = "a size such as 1048576, 512KiB, 20MB or 50MiB"
DURATION_EXPECTED = "a duration such as 500ms, 10s, 5m, 1h or 1h30m"


def parse_size(value: object) -> int:
    """Return the number of bytes that *value* denotes.

    Accepts a non-negative integer (bytes) or a string with an optional unit:
    B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024),
    case-insensitive. Raises ValueError with a readable reason otherwise.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value
    if isinstance(value, float):
        raise ValueError(f"{value!r} is a fraction of a byte; give whole bytes or a unit")
    if not isinstance(value, str):
        raise ValueError(f"{_kind(value)} is not a size")
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size")
    number, unit = match.groups()
    multiplier = _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        raise ValueError(f"{value!r} has an unknown unit {unit!r}")
    total = float(number) * multiplier
    if total != int(total):
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(total)


def parse_duration(value: object) -> float:
    """Return the number of seconds that *value* denotes.

    Accepts strings made of number+unit parts (ms, s, m, h, d), e.g. ``500ms``,
    ``10s``, ``1h30m``; ``0`` alone is accepted. A bare non-zero number is refused
    on purpose: ``30`` could mean seconds or minutes, and guessing wrong silently
    is worse than asking.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a duration")
    if isinstance(value, (int, float)):
        if value == 0:
            return 0.0
        raise ValueError(f"{value!r} has no unit (did you mean '{value}s'?)")
    if not isinstance(value, str):
        raise ValueError(f"{_kind(value)} is not a duration")
    text = value.strip().replace(" ", "")
    if text == "0":
        return 0.0
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        raise ValueError(f"{value!r} has no unit (did you mean '{text}s'?)")
    position = 0
    seconds = 0.0
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration")
    return seconds


def format_size(size: int) -> str:
    """Render *size* bytes compactly and exactly (``52428800`` -> ``50MiB``)."""
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB"):
        multiplier = _SIZE_UNITS[unit.lower()]
        if size and size % multiplier == 0:
            return f"{size // multiplier}{unit}"
    return str(size)


def format_duration(seconds: float) -> str:
    """Render *seconds* compactly (``5400`` -> ``1h30m``, ``0.5`` -> ``500ms``)."""
    if seconds == 0:
        return "0s"
    milliseconds = round(seconds * 1000)
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
