"""Reading the YAML text: the data, plus the line of every key path and any duplicate keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from syncd.config.problems import Problem


@dataclass
class YamlDocument:
    """Parsed YAML with ``lines`` mapping key paths (``watches[0].path``) to 1-based lines."""

    data: object
    lines: dict[str, int] = field(default_factory=dict)
    duplicates: list[Problem] = field(default_factory=list)


def parse_yaml(text: str) -> YamlDocument:
    """Parse *text*; raises ``yaml.YAMLError`` on syntax errors."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    document = YamlDocument(data=data)
    if node is not None:
        _walk(node, "", document, ())
    return document


def join_key(parent: str, key: str) -> str:
    """Key path of *key* inside *parent* (``box`` + ``auth`` -> ``box.auth``)."""
    return f"{parent}.{key}" if parent else key


def _walk(node: yaml.Node, path: str, document: YamlDocument, inside: tuple[int, ...]) -> None:
    if id(node) in inside:
        # `a: &x {b: *x}`: a structure that contains itself (no config is one) would recurse for ever.
        raise yaml.constructor.ConstructorError(None, None, "an alias refers to a mapping or list that contains it",
                                                node.start_mark)
    inside = (*inside, id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            child = join_key(path, key_node.value)
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                document.duplicates.append(
                    Problem(child, "appears twice in the same mapping", "each key once", line=line)
                )
            seen.add(key_node.value)
            document.lines.setdefault(child, line)
            _walk(value_node, child, document, inside)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            document.lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, document, inside)
