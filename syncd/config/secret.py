"""`Secret`: a value that must never be printed, logged or shown in an exception."""

from __future__ import annotations

import hmac


class Secret:
    """Holds a credential; ``repr``/``str`` show ``Secret('***')``, ``reveal()`` returns it.

    ``source`` says where it came from (``inline``, ``file /etc/syncd/token``,
    ``env BOX_TOKEN``, ``credential box-token``) so that messages can point at the
    origin of a bad credential without showing it. Two secrets are equal when
    their values are equal (compared in constant time), wherever they came from,
    so a reload notices a rotated token but not a token that merely moved.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "inline") -> None:
        if not isinstance(value, str):
            raise TypeError("Secret value must be a string")
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """Return the secret value itself; call only where it is sent, never logged."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        # Constant hash: hashing the value would make the hash an oracle for it.
        return hash(Secret)

    def __reduce__(self):
        # Pickling would write the value to wherever the pickle goes.
        raise TypeError("Secret values cannot be pickled")
