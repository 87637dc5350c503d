"""Check JSON bodies against the official SDK's own schema classes (boxsdk 10.18, `box_sdk_gen.schemas`).

The plan endpoint is newer than the vendored openapi.json, so its request and
response shapes are checked against the classes the SDK serialises them from
and deserialises them into: every field the class requires is present, every
field present has the annotated type (recursively through nested schemas,
lists, unions and enums), and no key is one the class does not know.
"""

from __future__ import annotations

import inspect
import types
import typing
from enum import Enum
from typing import Any

from box_sdk_gen.internal.base_object import BaseObject


def check_shape(schema: type[BaseObject], data: Any, *, open_enums: frozenset[str] = frozenset()) -> None:
    """Raise AssertionError listing every way `data` differs from `schema`.

    `open_enums` names fields whose enum in the SDK is known to be incomplete
    (ClientError.code lacks parts_mismatch, digest_mismatch, ...): any string passes.
    """
    __tracebackhide__ = True
    problems = list(_object_problems(schema, data, schema.__name__, open_enums))
    assert not problems, "\n  ".join([f"not a {schema.__name__} as boxsdk defines it:", *problems])


def _fields(schema: type[BaseObject]) -> dict[str, tuple[str, Any, bool]]:
    """JSON key -> (parameter name, annotation, required) for every field of the schema."""
    hints = typing.get_type_hints(schema.__init__)
    fields = {}
    for name, parameter in inspect.signature(schema.__init__).parameters.items():
        if name == "self" or parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        key = schema._fields_to_json_mapping.get(name, name)
        fields[key] = (name, hints.get(name, Any), parameter.default is inspect.Parameter.empty)
    return fields


def _object_problems(schema: type[BaseObject], data: Any, path: str, open_enums: frozenset[str]) -> typing.Iterator[str]:
    if not isinstance(data, dict):
        yield f"{path}: expected an object, got {type(data).__name__}"
        return
    fields = _fields(schema)
    for key in data:
        if key not in fields:
            yield f"{path}.{key}: not a field of {schema.__name__}"
    for key, (_, annotation, required) in fields.items():
        if key not in data:
            if required:
                yield f"{path}.{key}: required by {schema.__name__}, missing"
            continue
        yield from _value_problems(annotation, data[key], f"{path}.{key}", key in open_enums, open_enums)


def _value_problems(annotation: Any, value: Any, path: str, open_enum: bool,
                    open_enums: frozenset[str]) -> typing.Iterator[str]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return
        attempts = [list(_value_problems(option, value, path, open_enum, open_enums))
                    for option in options if option is not type(None)]
        if all(attempts):
            yield from min(attempts, key=len)
        return
    if value is None:
        yield f"{path}: null where {annotation!r} is expected"
        return
    if origin in (list, typing.List):
        if not isinstance(value, list):
            yield f"{path}: expected a list, got {type(value).__name__}"
            return
        (item,) = typing.get_args(annotation) or (Any,)
        for index, element in enumerate(value):
            yield from _value_problems(item, element, f"{path}[{index}]", open_enum, open_enums)
        return
    if origin in (dict, typing.Dict) or annotation in (dict, typing.Dict):
        if not isinstance(value, dict):
            yield f"{path}: expected an object, got {type(value).__name__}"
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseObject):
        yield from _object_problems(annotation, value, path, open_enums)
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        allowed = {member.value for member in annotation}
        if not isinstance(value, str) or (not open_enum and value not in allowed):
            yield f"{path}: {value!r} is not one of {sorted(allowed)}"
    elif annotation is bool:
        if not isinstance(value, bool):
            yield f"{path}: expected a boolean, got {value!r}"
    elif annotation is int:
        if not isinstance(value, int) or isinstance(value, bool):
            yield f"{path}: expected an integer, got {value!r}"
    elif annotation is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            yield f"{path}: expected a number, got {value!r}"
    elif annotation is str or getattr(annotation, "__name__", "") in ("DateTime", "Date"):
        if not isinstance(value, str):
            yield f"{path}: expected a string, got {value!r}"
