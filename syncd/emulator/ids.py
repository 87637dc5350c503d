"""Identifiers that need to be unique but not secret: request ids, temp names, part ids, blob names.

They come from a PRNG seeded once from the OS, which is much cheaper than a
`secrets` call per request: every os.urandom call releases and re-takes the
GIL, which under load costs a thread switch. Tokens and upload-session ids
still come from `secrets`.
"""

from __future__ import annotations

import random
import threading

_random = random.Random()
_lock = threading.Lock()


def unique_hex(digits: int) -> str:
    """`digits` lower-case hex characters."""
    with _lock:
        value = _random.getrandbits(digits * 4)
    return f"{value:0{digits}x}"
