"""``filter`` / ``sort_by`` / ``page_size`` / ``page_token`` semantics of KFP list calls.

The client sends a JSON-serialised ``Filter`` protobuf.  kfp 2.17.3 itself
sends ``{"predicates": [{"operation": 1, "key": "display_name",
"stringValue": name}]}`` (numeric operation, camelCase value field), while
users and docs write ``"operation": "EQUALS"`` and ``string_value``; protobuf
JSON accepts all of these, so this module does too.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200

_OPERATIONS_BY_NUMBER = {
    0: "OPERATION_UNSPECIFIED",
    1: "EQUALS",
    2: "NOT_EQUALS",
    3: "GREATER_THAN",
    5: "GREATER_THAN_EQUALS",
    6: "LESS_THAN",
    7: "LESS_THAN_EQUALS",
    8: "IN",
    9: "IS_SUBSTRING",
}
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "EQUALS": lambda field, value: field == value,
    "NOT_EQUALS": lambda field, value: field != value,
    "GREATER_THAN": lambda field, value: field > value,
    "GREATER_THAN_EQUALS": lambda field, value: field >= value,
    "LESS_THAN": lambda field, value: field < value,
    "LESS_THAN_EQUALS": lambda field, value: field <= value,
    "IN": lambda field, values: field in values,
    "IS_SUBSTRING": lambda field, value: str(value) in str(field),
}
_SCALAR_VALUE_KEYS = {
    "string_value": "string",
    "stringValue": "string",
    "int_value": "int",
    "intValue": "int",
    "long_value": "int",
    "longValue": "int",
    "timestamp_value": "timestamp",
    "timestampValue": "timestamp",
}
_LIST_VALUE_KEYS = {
    "string_values": "string",
    "stringValues": "string",
    "int_values": "int",
    "intValues": "int",
    "long_values": "int",
    "longValues": "int",
}


class ListError(ValueError):
    """An invalid filter, sort or page token (HTTP 400, like the backend's InvalidArgument)."""


def list_page(
    items: list[dict[str, Any]],
    query: Mapping[str, str],
    *,
    aliases: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], int, str]:
    """Filter, sort and paginate ``items``; returns (page, total_size, next_page_token)."""
    aliases = aliases or {}
    predicates = parse_filter(query.get("filter", ""))
    selected = [
        item
        for item in items
        if all(_matches(item, predicate, aliases) for predicate in predicates)
    ]
    selected = _sorted(selected, query.get("sort_by", ""), aliases)
    offset = _decode_page_token(query.get("page_token", ""))
    page_size = _page_size(query.get("page_size", ""))
    page = selected[offset : offset + page_size]
    next_offset = offset + page_size
    next_token = _encode_page_token(next_offset) if next_offset < len(selected) else ""
    return page, len(selected), next_token


def parse_filter(raw: str) -> list[dict[str, Any]]:
    """Parse the JSON filter into normalised predicates: {key, operation, kind, value}."""
    if not raw:
        return []
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ListError(f"Invalid input error: failed to parse filter {raw!r}: {error}") from error
    if not isinstance(document, dict):
        raise ListError(f"Invalid input error: filter must be a JSON object, got {raw!r}")
    predicates = document.get("predicates") or []
    if not isinstance(predicates, list):
        raise ListError("Invalid input error: filter.predicates must be a list")
    return [_normalise_predicate(predicate) for predicate in predicates]


def _normalise_predicate(predicate: Any) -> dict[str, Any]:
    """Resolve the operation (name or number) and the single value field of a predicate."""
    if not isinstance(predicate, dict) or not predicate.get("key"):
        raise ListError(f"Invalid input error: predicate without key: {predicate!r}")
    operation = predicate.get("operation", 0)
    if isinstance(operation, int):
        operation = _OPERATIONS_BY_NUMBER.get(operation, "OPERATION_UNSPECIFIED")
    if operation not in _COMPARISONS:
        raise ListError(
            f"Invalid input error: invalid predicate operation {predicate.get('operation')!r}"
        )
    value_keys = [key for key in predicate if key in _SCALAR_VALUE_KEYS or key in _LIST_VALUE_KEYS]
    if len(value_keys) != 1:
        raise ListError(f"Invalid input error: predicate needs exactly one value: {predicate!r}")
    value_key = value_keys[0]
    if value_key in _LIST_VALUE_KEYS:
        if operation != "IN":
            raise ListError(f"Invalid input error: {value_key} requires operation IN")
        values = (predicate[value_key] or {}).get("values") or []
        kind = _LIST_VALUE_KEYS[value_key]
        value: Any = [_convert(kind, item) for item in values]
    else:
        if operation == "IN":
            raise ListError("Invalid input error: operation IN requires a list value")
        kind = _SCALAR_VALUE_KEYS[value_key]
        value = _convert(kind, predicate[value_key])
    return {"key": predicate["key"], "operation": operation, "kind": kind, "value": value}


def _convert(kind: str, value: Any) -> Any:
    """Convert a predicate value; timestamps become epoch seconds to compare with ``*_at`` fields."""
    try:
        if kind == "int":
            return int(value)
        if kind == "timestamp":
            return parse_timestamp(str(value))
    except ValueError as error:
        raise ListError(f"Invalid input error: bad {kind} value {value!r}") from error
    return str(value)


def parse_timestamp(text: str) -> float:
    """RFC 3339 text to epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _field(item: Mapping[str, Any], key: str, aliases: Mapping[str, str]) -> Any:
    """Look up a (possibly dotted) field; unknown keys are an error, as in the backend."""
    current: Any = item
    for part in aliases.get(key, key).split("."):
        if not isinstance(current, Mapping) or part not in current:
            raise ListError(f"Invalid input error: invalid filter or sort key {key!r}")
        current = current[part]
    return current


def _matches(
    item: Mapping[str, Any], predicate: Mapping[str, Any], aliases: Mapping[str, str]
) -> bool:
    """Whether one item satisfies one predicate."""
    field = _field(item, predicate["key"], aliases)
    value = predicate["value"]
    if (
        isinstance(field, str)
        and predicate["key"].endswith(("_at", "_time"))
        and predicate["kind"] != "string"
    ):
        field = parse_timestamp(field) if field else 0.0
    elif predicate["kind"] == "int" and isinstance(field, str) and field.lstrip("-").isdigit():
        field = int(field)
    elif predicate["kind"] == "string" and not isinstance(field, str):
        field = "" if field is None else str(field)
    try:
        return _COMPARISONS[predicate["operation"]](field, value)
    except TypeError as error:
        raise ListError(
            f"Invalid input error: cannot compare {predicate['key']!r} with {value!r}"
        ) from error


def _sorted(
    items: list[dict[str, Any]], sort_by: str, aliases: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Sort by ``"field"`` or ``"field desc"``; items keep creation order otherwise."""
    words = sort_by.split()
    if not words:
        return items
    if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
        raise ListError(f"Invalid input error: invalid sorting field {sort_by!r}")
    key = words[0]
    for item in items:
        _field(item, key, aliases)
    descending = len(words) == 2 and words[1].lower() == "desc"
    return sorted(items, key=lambda item: _sort_key(_field(item, key, aliases)), reverse=descending)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Order values of mixed kinds without TypeErrors (numbers before text)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, "" if value is None else str(value))


def _page_size(raw: str) -> int:
    """The effective page size: default when unset or 0, capped like the backend."""
    if not raw:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError as error:
        raise ListError(f"Invalid input error: invalid page_size {raw!r}") from error
    if size < 0:
        raise ListError(f"Invalid input error: page_size must not be negative, got {size}")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _encode_page_token(offset: int) -> str:
    """An opaque page token, like the backend's base64 tokens."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_page_token(token: str) -> int:
    """Inverse of :func:`_encode_page_token`; garbage tokens are a 400."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise ListError(f"Invalid input error: invalid page token {token!r}") from error
    if not isinstance(offset, int) or offset < 0:
        raise ListError(f"Invalid input error: invalid page token {token!r}")
    return offset
