"""Whatever the YAML holds, loading ends in a Config or a ConfigError, quickly, without leaking the token."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from syncd.config import ConfigError, load_config

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "syncd.example.yaml"
TOKEN = "robustness-token-5521"
ODD_VALUES = [None, 0, -1, 7, True, "x", "", "10s", "50MiB", [], {}, [1], {"a": 1}, 3.5, "0", "../..", "/",
              "{relpath}", "127.0.0.1:80", {"file": None}, {"env": 5}, {"credential": "../x"}]


def _key_paths(value: object, prefix: tuple = ()) -> Iterator[tuple]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _key_paths(child, prefix + (key,))


def _mutate(document: dict, rng: random.Random, paths: list[tuple]) -> dict:
    mutated = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        try:
            parent = mutated
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict) and rng.random() < 0.2:
                del parent[path[-1]]
            else:
                # A copy: a shared value mutated later would make the document contain itself.
                parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    return mutated


def test_mutated_configs_load_or_fail_with_problems(tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["box"]["auth"] = {"type": "developer_token", "token": TOKEN}
    paths = list(_key_paths(document))
    rng = random.Random(20240101)
    target = tmp_path / "syncd.yaml"
    failures = 0
    for _ in range(200):
        target.write_text(yaml.safe_dump(_mutate(document, rng, paths)))
        try:
            load_config(target, environ={})
        except ConfigError as error:
            failures += 1
            assert error.problems and all(p.message for p in error.problems)
            assert TOKEN not in str(error)
    assert failures > 150  # the mutations really do break things
