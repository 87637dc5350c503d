"""`Secret`: a value that must never be printed, logged or shown in an exception."""

from __future__ import annotations

import hmac


class SecretNotResolved(RuntimeError):
    """`reveal()` was called on a secret the config was loaded without reading.

    Commands that never talk to Box load the config with ``resolve_secrets=False``:
    a code path that reaches for the value anyway is a bug, and it must fail loudly
    rather than send an empty credential.
    """


class Secret:
    """Holds a credential; ``repr``/``str`` show ``Secret('***')``, ``reveal()`` returns it.

    ``source`` says where it came from (``inline``, ``file /etc/syncd/token``,
    ``env BOX_TOKEN``, ``credential box-token``) so that messages can point at the
    origin of a bad credential without showing it. Two secrets are equal when
    their values are equal (compared in constant time), wherever they came from,
    so a reload notices a rotated token but not a token that merely moved.

    A secret made by `Secret.unresolved` names its source but holds no value:
    ``check`` says what could be verified about the source without reading it.
    """

    __slots__ = ("_value", "source", "check")

    def __init__(self, value: str, source: str = "inline") -> None:
        if not isinstance(value, str):
            raise TypeError("Secret value must be a string")
        self._value: str | None = value
        self.source = source
        self.check: str | None = None

    @classmethod
    def unresolved(cls, source: str, check: str) -> Secret:
        """A secret from `source` that was not read; `check` says what was verified of it (or not)."""
        secret = cls("", source)
        secret._value = None
        secret.check = check
        return secret

    @property
    def resolved(self) -> bool:
        """Whether the value was read (False for `Secret.unresolved`)."""
        return self._value is not None

    def reveal(self) -> str:
        """Return the secret value itself; call only where it is sent, never logged."""
        if self._value is None:
            raise SecretNotResolved(f"the secret from {self.source} was not read (config loaded without secrets)")
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')" if self.resolved else f"Secret(unresolved, {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        if self._value is None or other._value is None:
            return self._value is other._value and self.source == other.source
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        # Constant hash: hashing the value would make the hash an oracle for it.
        return hash(Secret)

    def __reduce__(self):
        # Pickling would write the value to wherever the pickle goes.
        raise TypeError("Secret values cannot be pickled")
