"""Layers import downward only: every module under syncd/ is parsed (ast, lazy imports in
functions included) and each `syncd` import checked against the layer table.

    __main__ -> cli -> commands -> service -> pipeline -> journal | box -> config | logs | socket_deadlines

A module may import its own package and any package of a lower layer; packages that
share a layer (journal and box, config, logs and socket_deadlines) stay independent of each other. The
emulator imports nothing of the client, and the client reaches the emulator only from
`syncd.commands.emulator` (the `syncd emulator` command) and `syncd.testing`. The test
harness `syncd.testing` may import anything; nothing in syncd imports it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "syncd"

#: Lowest layer first. The names are the second component of a module's name
#: (`syncd.box.client` -> "box", `syncd.logs` -> "logs", `syncd.__main__` -> "__main__").
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"config", "logs", "socket_deadlines"}),
    frozenset({"journal", "box"}),
    frozenset({"pipeline"}),
    frozenset({"service"}),
    frozenset({"commands"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),  # `python -m syncd`: runs the CLI
)
EMULATOR, TESTING = "emulator", "testing"
#: The one client module that may import the emulator, besides syncd.testing.
EMULATOR_COMMAND = "syncd.commands.emulator"


def part_of(module: str) -> str:
    """The layer name of a module: its second component ("" for the `syncd` package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank_of(part: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if part in layer), None)


def module_sources(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """Every module under `root` by dotted name (`syncd.box.client`), with its source."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


@functools.cache
def import_nodes(source: str) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """Every import statement of `source`, at any depth (parsed once per source)."""
    return tuple(node for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom)))


def imported_modules(module: str, source: str, known: set[str], *, is_package: bool) -> set[str]:
    """The syncd modules `module` imports anywhere in its source (relative imports resolved)."""
    found: set[str] = set()
    for node in import_nodes(source):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        for alias in node.names:
            # `from syncd import logs` imports the module syncd.logs, not a name of syncd.
            candidate = f"{base}.{alias.name}"
            found.add(candidate if candidate in known else base)
    return {name for name in found if name == "syncd" or name.startswith("syncd.")}


def problem(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None when it may."""
    mine, theirs = part_of(importer), part_of(imported)
    if mine == EMULATOR:
        return None if theirs == EMULATOR else "the emulator imports nothing of the client"
    if theirs == "" or theirs == mine:
        return None
    if theirs == TESTING:
        return "nothing in syncd imports the test harness syncd.testing"
    if mine == TESTING:
        return None
    if theirs == EMULATOR:
        return None if importer == EMULATOR_COMMAND else (
            f"the client reaches the emulator only through {EMULATOR_COMMAND}")
    my_rank, their_rank = rank_of(mine), rank_of(theirs)
    if my_rank is None or their_rank is None:
        return f"syncd.{mine if my_rank is None else theirs} is in no layer"
    if their_rank < my_rank:
        return None
    if their_rank == my_rank:
        return f"{mine} and {theirs} share a layer and stay independent of each other"
    return f"upward import ({mine} is below {theirs})"


def violations(sources: dict[str, str]) -> list[str]:
    known = set(sources)
    found = []
    for module, source in sorted(sources.items()):
        if part_of(module) not in ("", EMULATOR, TESTING) and rank_of(part_of(module)) is None:
            found.append(f"{module} is in no layer: add syncd.{part_of(module)} to LAYERS in tests/test_layers.py")
        is_package = any(other.startswith(module + ".") for other in known)
        for imported in sorted(imported_modules(module, source, known, is_package=is_package)):
            reason = problem(module, imported)
            if reason:
                found.append(f"{module} imports {imported}: {reason}")
    return found


def test_every_module_imports_downward_only() -> None:
    sources = module_sources()
    assert "syncd.service.daemon" in sources and "syncd.journal.journal" in sources  # the walk found the tree
    assert violations(sources) == []


def test_the_cli_dispatches_only_to_commands() -> None:
    # The CLI imports its sub-commands by name (importlib), which the ast walk cannot see.
    from syncd.cli import COMMANDS

    assert [c.module for c in COMMANDS if not c.module.startswith("syncd.commands.")] == []


@pytest.mark.parametrize(("importer", "source", "expected"), [
    ("syncd.journal.file_states", "from syncd.pipeline import claims", "upward import"),
    ("syncd.box.folders", "def f():\n    from syncd.journal import Journal", "share a layer"),
    ("syncd.config.loader", "import syncd.logs", "share a layer"),
    ("syncd.service.daemon", "from syncd.commands.status_report import collect_status", "upward import"),
    ("syncd.emulator.store", "from syncd import __version__", "the emulator imports nothing of the client"),
    ("syncd.pipeline.ingest", "from syncd.emulator.harness import EmulatorProcess", "only through"),
    ("syncd.service.daemon", "from syncd.testing.daemon_process import DaemonProcess", "test harness"),
    ("syncd.box.transport", "from .. import pipeline", "upward import"),
    ("syncd.watchers", "import os", "in no layer"),
    ("syncd.config.loader", "import syncd.watchers", "in no layer"),
])
def test_the_rule_flags_what_it_should(importer: str, source: str, expected: str) -> None:
    sources = {**module_sources(), importer: source}
    found = [v for v in violations(sources) if v.startswith(f"{importer} ")]
    assert len(found) == 1 and expected in found[0], found


def test_allowed_imports_pass() -> None:
    sources = module_sources()
    for importer, source in [
        ("syncd.commands.emulator", "from syncd.emulator import command"),
        ("syncd.testing.daemon_process", "from syncd.emulator.harness import EmulatorProcess"),
        ("syncd.cli", "from syncd.commands.common import EXIT_OK"),
        ("syncd.box.transport", "from .. import __version__"),
        ("syncd.pipeline.claims", "from syncd.journal import Journal"),
    ]:
        assert [v for v in violations({**sources, importer: source}) if v.startswith(importer + " ")] == []
