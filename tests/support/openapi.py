"""Validate Box API traffic against Box's own OpenAPI document (``openapi.json``).

The spec is loaded once per process, from the copy vendored beside this module
(``tests/support/box-openapi/openapi.json``, Apache-2.0, see the NOTICE there) or
from the file named by ``$SYNCD_BOX_OPENAPI``. Where the live Box service is known
to differ from the spec (REFERENCE.md §2, §4, §7), the loaded copy is patched; every
such patch is one row of :data:`SPEC_EXCEPTIONS`, with the reason for it. Nothing else
relaxes the spec.

Two additional format checks make the spec's ``format`` hints bite where
REFERENCE.md §1 is precise: ``date-time`` must be ISO-8601 with an offset and whole
seconds, and ``digest`` (the file ``sha1``) must be 40 hex characters.

Public entry points:

* :func:`validate_response` / :func:`validate_request` — by method, path template,
  status and parsed JSON body.
* :func:`validate_http_response` — a ``requests.Response`` as received (derives
  method, path template, status, checks content type and the 401 header).
* :func:`validate_component` — a body against a named component schema.
* :func:`path_template_for` — the spec path template matching a concrete URL path.
* :func:`redact` — a body with credential fields masked, for assertion messages.

Violations raise :class:`SpecViolation` (an ``AssertionError``, so pytest reports it
as a test failure). Its message never carries token-like values.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator
from openapi_schema_validator._format import oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_ENV = "SYNCD_BOX_OPENAPI"
# Box's spec, vendored so that a clone with nothing beside it runs the whole suite.
VENDORED_SPEC = Path(__file__).resolve().parent / "box-openapi" / "openapi.json"
_SPEC_URI = "urn:box:openapi"
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# Prefixes under which the emulator (and Box) serve the spec's paths.
_BASE_PREFIXES = ("/api/2.0", "/2.0")
# Keys whose values are credentials: never echoed in violation messages.
_SECRET_KEYS = frozenset(
    {"access_token", "refresh_token", "upload_token", "assertion", "client_secret", "code", "token"}
)

Spec = dict[str, Any]


class OpenApiError(Exception):
    """Base class for problems with the spec or with a lookup in it."""


class UnknownOperation(OpenApiError):
    """The method and path (or status) have no operation/response in the spec."""

    def __init__(self, method: str, path: str, detail: str = "") -> None:
        self.method = method
        self.path = path
        super().__init__(f"{method.upper()} {path}: {detail or 'no such operation in openapi.json'}")


class SpecViolation(AssertionError):
    """A body does not match its schema. ``problems`` lists one line per error."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        super().__init__(f"{where} violates openapi.json:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- spec loading


def spec_path() -> Path:
    """Where openapi.json is read from: ``$SYNCD_BOX_OPENAPI``, else the vendored copy."""
    override = os.environ.get(SPEC_ENV)
    if override:
        return Path(override)
    return VENDORED_SPEC


def _read_spec(path: Path) -> Spec:
    try:
        with path.open("rb") as handle:
            spec = json.load(handle)
    except FileNotFoundError as exc:
        raise OpenApiError(f"openapi.json not found at {path} (set ${SPEC_ENV})") from exc
    except json.JSONDecodeError as exc:
        raise OpenApiError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict) or "paths" not in spec or "components" not in spec:
        raise OpenApiError(f"{path} does not look like an OpenAPI document")
    return spec


@functools.cache
def load_spec() -> Spec:
    """The spec with :data:`SPEC_EXCEPTIONS` applied (loaded and patched once per process)."""
    spec = _read_spec(spec_path())
    for exception in SPEC_EXCEPTIONS:
        exception.apply(spec)
    return spec


@functools.cache
def _registry() -> Registry:
    resource = Resource.from_contents(load_spec(), default_specification=DRAFT4)
    return Registry().with_resource(_SPEC_URI, resource)


# --------------------------------------------------------------------------- exceptions table


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


def _operation(spec: Spec, method: str, path: str) -> dict[str, Any]:
    return spec["paths"][path][method.lower()]


def _error_with_context(context_properties: Mapping[str, Any], nullable: bool = False) -> dict[str, Any]:
    context = {"type": "object", "properties": dict(context_properties), "nullable": nullable}
    return {"allOf": [_schema_ref("ClientError"), {"properties": {"context_info": context}}]}


# A file 409 names the one item in the way: a file (with sha1) or a folder.
_CONFLICT_ITEM = {"anyOf": [_schema_ref("FileConflict"), _schema_ref("Folder--Mini")]}
_FILE_CONFLICT_OBJECT = _error_with_context(
    {"conflicts": {**_CONFLICT_ITEM, "type": "object"}}
)
_FOLDER_CONFLICT_ARRAY = _error_with_context(
    {"conflicts": {"type": "array", "minItems": 1, "items": _CONFLICT_ITEM}}
)
_FILE_409_OPERATIONS = (
    ("post", "/files/content"),
    ("options", "/files/content"),
    ("post", "/files/upload_sessions"),
    ("post", "/files/{file_id}/content"),
    ("post", "/files/{file_id}/upload_sessions"),
    ("post", "/files/upload_sessions/{upload_session_id}/commit"),
)


def _nullable_allof_members(spec: Spec) -> None:
    _rewrite_nullable_allof(spec)


def _rewrite_nullable_allof(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_nullable_allof(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _rewrite_nullable_allof(value)
    members = node.get("allOf")
    if not isinstance(members, list):
        return
    nullable = [m for m in members if isinstance(m, dict) and m.get("nullable") is True and "type" not in m]
    beside = node.get("nullable") is True and "type" not in node
    if nullable or beside:
        rest = [m for m in members if not any(m is n for n in nullable)]
        del node["allOf"]
        node.pop("nullable", None)
        node["anyOf"] = [{"allOf": rest}, {"enum": [None]}]


def _blank_user_login(spec: Spec) -> None:
    login = spec["components"]["schemas"]["User--Mini"]["allOf"][1]["properties"]["login"]
    login.pop("format", None)
    login["anyOf"] = [{"format": "email"}, {"maxLength": 0}]


def _drop_error_code_enum(spec: Spec) -> None:
    spec["components"]["schemas"]["ClientError"]["properties"]["code"].pop("enum", None)


def _file_conflicts_are_objects(spec: Spec) -> None:
    for method, path in _FILE_409_OPERATIONS:
        _operation(spec, method, path)["responses"]["409"] = _json_response(
            _FILE_CONFLICT_OBJECT, "Name in use; context_info.conflicts is the one item in the way."
        )


def _folder_conflicts_are_arrays(spec: Spec) -> None:
    _operation(spec, "post", "/folders")["responses"]["409"] = _json_response(
        _FOLDER_CONFLICT_ARRAY, "Name in use; context_info.conflicts is an array of minis."
    )


def _part_overlap_is_416(spec: Spec) -> None:
    responses = _operation(spec, "put", "/files/upload_sessions/{upload_session_id}")["responses"]
    responses["416"] = _json_response(
        # null context for a range that does not fit the session at all
        _error_with_context({"conflicting_part": _schema_ref("UploadPart")}, nullable=True),
        "Range overlaps a stored part (or does not fit the session).",
    )


def _version_upload_any_2xx(spec: Spec) -> None:
    responses = _operation(spec, "post", "/files/{file_id}/content")["responses"]
    responses["201"] = copy.deepcopy(responses["200"])


def _commit_202_body_undocumented(spec: Spec) -> None:
    responses = _operation(spec, "post", "/files/upload_sessions/{upload_session_id}/commit")["responses"]
    responses["202"]["x-syncd-any-body"] = True


def _401_may_be_empty(spec: Spec) -> None:
    for path_item in spec["paths"].values():
        for method, operation in path_item.items():
            if method in _HTTP_METHODS and isinstance(operation, dict):
                operation.setdefault("x-syncd-empty-401", True)


def _preflight_size_is_int64(spec: Spec) -> None:
    schema = _operation(spec, "options", "/files/content")["requestBody"]["content"]["application/json"]["schema"]
    schema["properties"]["size"]["format"] = "int64"


def _version_attributes_name_optional(spec: Spec) -> None:
    content = _operation(spec, "post", "/files/{file_id}/content")["requestBody"]["content"]
    content["multipart/form-data"]["schema"]["properties"]["attributes"].pop("required", None)


def _commit_attributes(spec: Spec) -> None:
    schema = _operation(spec, "post", "/files/upload_sessions/{upload_session_id}/commit")["requestBody"][
        "content"
    ]["application/json"]["schema"]
    schema["properties"]["attributes"] = {
        "type": "object",
        "properties": {
            "content_modified_at": {"type": "string", "format": "date-time"},
            "content_created_at": {"type": "string", "format": "date-time"},
            "name": {"type": "string"},
        },
    }


@dataclass(frozen=True)
class SpecException:
    """One documented difference between openapi.json and the live service."""

    where: str
    reason: str
    apply: Callable[[Spec], None]


SPEC_EXCEPTIONS: tuple[SpecException, ...] = (
    SpecException(
        "every `allOf` with a member `{nullable: true}` or a sibling `nullable: true` "
        "(e.g. File.shared_link, Folder.parent, Folder.shared_link)",
        "Box's spec marks a composed property nullable with a separate allOf member or next to "
        "allOf without a `type`; OAS 3.0.3 "
        "(and the validator) only honour `nullable` next to `type`, which would reject the "
        "`null` Box documents ('This value will be null if ...'). Read as 'this schema or null'.",
        _nullable_allof_members,
    ),
    SpecException(
        "User--Mini.login (format email)",
        "The live root folder (id 0) reports created_by/owned_by as a blank user "
        '{"type":"user","id":"","name":"","login":""}; an empty login is accepted, any '
        "other login must still be an email address.",
        _blank_user_login,
    ),
    SpecException(
        "ClientError.code (every error body)",
        "The spec's `code` enum is incomplete: the live API sends item_name_in_use, "
        "rate_limit_exceeded, session_expired, digest_mismatch, ... (REFERENCE.md §2). "
        "The enum is dropped; `code` must still be a string.",
        _drop_error_code_enum,
    ),
    SpecException(
        "409 of POST/OPTIONS /files/content, POST /files/upload_sessions, "
        "POST /files/{file_id}/content, POST /files/{file_id}/upload_sessions, commit",
        "For files the live API returns context_info.conflicts as ONE object (a file with "
        "id and sha1, or the folder in the way), not the spec's array (REFERENCE.md §4, §7.1; "
        "rclone and box-ui-elements read conflicts.id).",
        _file_conflicts_are_objects,
    ),
    SpecException(
        "409 of POST /folders",
        "For folders conflicts is an array of minis, as in the spec's ConflictError; the "
        "spec's POST /folders 409 is a bare ClientError, so the array is made explicit "
        "(REFERENCE.md §3.7).",
        _folder_conflicts_are_arrays,
    ),
    SpecException(
        "416 of PUT /files/upload_sessions/{upload_session_id}",
        "Part overlap is answered 416 range_overlaps_existing_part carrying "
        "context_info.conflicting_part (an UploadPart), not the spec's 409 (REFERENCE.md §5, §7.4).",
        _part_overlap_is_416,
    ),
    SpecException(
        "201 of POST /files/{file_id}/content",
        "The spec says 200 for a new version; whether live says 200 or 201 is unverified, "
        "clients accept any 2xx (REFERENCE.md §3.2, §7.3). 201 carries the same Files body.",
        _version_upload_any_2xx,
    ),
    SpecException(
        "202 of POST /files/upload_sessions/{upload_session_id}/commit",
        "The spec defines no body for the 202 'parts not processed yet' answer and the live "
        "body is unknown (REFERENCE.md §3.6, §7); any body (or none) is accepted.",
        _commit_202_body_undocumented,
    ),
    SpecException(
        "401 of every operation",
        "An invalid or expired token is seen answered with an EMPTY body plus "
        "WWW-Authenticate (REFERENCE.md §2, box-node-sdk#157); a JSON body must be a ClientError.",
        _401_may_be_empty,
    ),
    SpecException(
        "request body of OPTIONS /files/content: size",
        "The spec types the preflight `size` as int32, which cannot describe files over "
        "2 GiB that Box accepts (up to 500 GB, REFERENCE.md §5); treated as int64.",
        _preflight_size_is_int64,
    ),
    SpecException(
        "request body of POST /files/{file_id}/content: attributes.name",
        "The spec marks `name` required but describes it as optional (a rename); "
        "clients omit it (REFERENCE.md §3.2).",
        _version_attributes_name_optional,
    ),
    SpecException(
        "request body of POST /files/upload_sessions/{upload_session_id}/commit: attributes",
        "The spec lists only `parts`; the guide, rclone, box-ui-elements and the Java SDK "
        "also send `attributes` with content_modified_at/content_created_at (REFERENCE.md §3.6), "
        "whose times are validated like any other.",
        _commit_attributes,
    ),
)


# --------------------------------------------------------------------------- formats

# REFERENCE.md §1: ISO-8601 with an offset and whole seconds, e.g. 2012-12-12T10:53:43-08:00.
_BOX_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
_SHA1_HEX = re.compile(r"^[0-9a-fA-F]{40}$")


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, (func, raises) in oas30_format_checker.checkers.items():
        checker.checks(name, raises)(func)
    checker.checks("date-time")(lambda value: not isinstance(value, str) or bool(_BOX_DATE_TIME.match(value)))
    checker.checks("digest")(lambda value: not isinstance(value, str) or bool(_SHA1_HEX.match(value)))
    return checker


_FORMAT_CHECKER = _format_checker()


# --------------------------------------------------------------------------- lookups


def _pointer(*parts: str) -> str:
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return "#/" + "/".join(urllib.parse.quote(p, safe="~") for p in escaped)


@functools.cache
def _validator(pointer: str) -> OAS30Validator:
    return OAS30Validator({"$ref": _SPEC_URI + pointer}, registry=_registry(), format_checker=_FORMAT_CHECKER)


def _find_operation(method: str, path_template: str) -> dict[str, Any]:
    path_item = load_spec()["paths"].get(path_template)
    if path_item is None:
        raise UnknownOperation(method, path_template, "path template not in openapi.json")
    operation = path_item.get(method.lower())
    if not isinstance(operation, dict):
        raise UnknownOperation(method, path_template, "method not defined for this path")
    return operation


@functools.cache
def _templates() -> tuple[tuple[re.Pattern[str], str, int], ...]:
    compiled = []
    for template in load_spec()["paths"]:
        params = template.count("{")
        regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        compiled.append((re.compile(regex), template, params))
    # Literal segments win over parameters: /files/content before /files/{file_id}.
    return tuple(sorted(compiled, key=lambda item: item[2]))


def path_template_for(method: str, url_or_path: str) -> str:
    """The spec template for a concrete URL or path (``/api/2.0`` or ``/2.0`` prefix optional).

    A trailing slash is ignored (rclone sends ``/files/content/``).
    """
    path = urllib.parse.urlsplit(url_or_path).path
    for prefix in _BASE_PREFIXES:
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
            break
    if len(path) > 1:
        path = path.rstrip("/")
    for regex, template, _ in _templates():
        if regex.match(path) and method.lower() in load_spec()["paths"][template]:
            return template
    raise UnknownOperation(method, path)


# --------------------------------------------------------------------------- validation


def _describe(error: ValidationError) -> str:
    location = error.json_path
    keys = [str(part) for part in error.absolute_path]
    secret = any(key in _SECRET_KEYS for key in keys)
    instance = "<redacted>" if secret else _short(error.instance)
    expected = _short(error.validator_value)
    if error.validator in ("oneOf", "anyOf", "allOf", "$ref"):
        # The nested errors say what actually failed; their messages are value-free here.
        nested = "; ".join(sorted({_describe(sub) for sub in (error.context or [])})[:4])
        return f"{location}: failed {error.validator}" + (f" ({nested})" if nested else "")
    if error.validator == "required":
        return f"{location}: {error.message}"  # names the missing key, no values
    return f"{location}: failed {error.validator}={expected} (got {instance})"


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, (dict, list)):
        text = f"{type(value).__name__} of {len(value)}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check(pointer: str, instance: Any, where: str) -> None:
    __tracebackhide__ = True  # pytest must not print `instance` (it may hold tokens)
    errors = sorted(_validator(pointer).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise SpecViolation(where, [_describe(error) for error in errors[:20]])


def _response_entry(operation: Mapping[str, Any], method: str, path: str, status: int) -> tuple[str, Mapping[str, Any]]:
    responses = operation.get("responses", {})
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            return key, responses[key]
    raise UnknownOperation(method, path, f"status {status} is not documented and there is no default")


def validate_response(method: str, path_template: str, status: int, json_body: Any) -> None:
    """Check a response body (parsed JSON, or ``None`` for an empty body) against the spec.

    The schema is the one for ``status``, else ``default``. Raises :class:`SpecViolation`
    when the body does not match and :class:`UnknownOperation` when the spec has no entry.
    """
    __tracebackhide__ = True
    operation = _find_operation(method, path_template)
    where = f"{method.upper()} {path_template} -> {status}"
    key, response = _response_entry(operation, method, path_template, status)
    if response.get("x-syncd-any-body"):
        return
    content = response.get("content") or {}
    if "application/json" not in content:
        if content:
            return  # a non-JSON body (e.g. file content); nothing to validate here
        if json_body not in (None, b"", ""):
            raise SpecViolation(where, [f"the spec defines no body for {key}, got {_short(json_body)}"])
        return
    if json_body is None:
        if status == 401 and operation.get("x-syncd-empty-401"):
            return
        raise SpecViolation(where, ["empty body where the spec defines a JSON body"])
    pointer = _pointer("paths", path_template, method.lower(), "responses", key, "content", "application/json", "schema")
    _check(pointer, json_body, where)


def validate_request(method: str, path_template: str, json_body: Any) -> None:
    """Check a request body against the operation's request schema.

    For multipart uploads pass the ``attributes`` object; for the form-encoded token
    endpoint pass the form fields as a dict.
    """
    __tracebackhide__ = True
    operation = _find_operation(method, path_template)
    where = f"request {method.upper()} {path_template}"
    content = (operation.get("requestBody") or {}).get("content") or {}
    base = ("paths", path_template, method.lower(), "requestBody", "content")
    if "application/json" in content:
        pointer = _pointer(*base, "application/json", "schema")
    elif "multipart/form-data" in content:
        pointer = _pointer(*base, "multipart/form-data", "schema", "properties", "attributes")
    elif "application/x-www-form-urlencoded" in content:
        pointer = _pointer(*base, "application/x-www-form-urlencoded", "schema")
    else:
        raise UnknownOperation(method, path_template, "operation takes no JSON/form request body")
    _check(pointer, json_body, where)


def validate_component(schema_name: str, instance: Any) -> None:
    """Check ``instance`` against ``#/components/schemas/<schema_name>``."""
    __tracebackhide__ = True
    if schema_name not in load_spec()["components"]["schemas"]:
        raise OpenApiError(f"no component schema named {schema_name!r}")
    _check(_pointer("components", "schemas", schema_name), instance, f"components.schemas.{schema_name}")


def validate_http_response(response: Any, path_template: str | None = None) -> Any:
    """Validate a ``requests.Response`` as received and return its parsed JSON (or ``None``).

    Method and path template come from ``response.request`` unless ``path_template`` is
    given. A JSON body must say ``application/json``; a 401 must carry WWW-Authenticate.
    """
    __tracebackhide__ = True
    request = response.request
    method = str(request.method)
    template = path_template or path_template_for(method, str(request.url))
    where = f"{method} {template} -> {response.status_code}"
    body: Any = None
    if response.content:
        content_type = response.headers.get("Content-Type", "")
        if "json" in content_type:
            try:
                body = response.json()
            except ValueError as exc:
                raise SpecViolation(where, [f"Content-Type {content_type} but body is not JSON: {exc}"]) from exc
        elif template == "/files/{file_id}/content" and method == "GET":
            return None
        else:
            raise SpecViolation(where, [f"non-JSON body with Content-Type {content_type!r}"])
    if response.status_code == 401 and "WWW-Authenticate" not in response.headers:
        raise SpecViolation(where, ["401 without a WWW-Authenticate header"])
    validate_response(method, template, response.status_code, body)
    return body


def redact(value: Any) -> Any:
    """A copy of a JSON value with credential fields (access_token, refresh_token, ...) masked.

    For assertion messages that show a body: token answers must never reach test output.
    """
    if isinstance(value, dict):
        return {k: "<redacted>" if k in _SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def iter_exception_rows() -> Iterable[tuple[str, str]]:
    """(where, reason) of every documented exception, for reports and docs."""
    return ((row.where, row.reason) for row in SPEC_EXCEPTIONS)
