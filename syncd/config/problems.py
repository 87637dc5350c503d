"""What is wrong with a config file: `Problem` records and the `ConfigError` carrying them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file.

    ``key`` is the key path (``watches[1].conflict``; empty for the file as a
    whole), ``message`` what is wrong, ``expected`` what would be right,
    ``hint`` a suggestion such as "did you mean 'conflict'?", ``line`` the
    1-based line in the YAML file when known.
    """

    key: str
    message: str
    expected: str | None = None
    hint: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.key or "(file)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        text = f"{where}: {self.message}"
        if self.expected:
            text += f"; expected {self.expected}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(Exception):
    """A config file could not be used; ``problems`` lists every problem found in it."""

    def __init__(self, source: Path | str, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.source = Path(source)
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{self.source}: {count} {noun}:"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._render()
