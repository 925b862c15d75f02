"""Strict request bodies: an unknown field is a 400, as on the real API server.

The API server's REST side is grpc-gateway v2 (`backend/src/apiserver/main.go`) with a
`runtime.JSONPb` whose `protojson.UnmarshalOptions` keep `DiscardUnknown: false`; a body that
does not decode is answered with `codes.InvalidArgument` (HTTP 400) and protojson's message,
e.g. ``proto: (line 1:2): unknown field "x"``: the position is the line and column of the
field's name in the body. Like protojson, both the proto name (`display_name`) and the JSON
name (`displayName`) of a field are accepted, and `google.protobuf.Struct` fields
(`pipeline_spec`, parameter values) take anything.

The message definitions are read from `kfp_server_api`, the client kfp generates from the same
protos, so the field lists cannot drift from the client under test.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import kfp_server_api.models as api_models

from .common import ApiError

_WHITESPACE = " \t\r\n"
_DECODER = json.JSONDecoder()


class _UnknownField(Exception):
    def __init__(self, name: str, offset: int) -> None:
        super().__init__(name)
        self.name = name
        self.offset = offset


def check_fields(body: bytes, message: str) -> None:
    """Raise the server's 400 when `body` (already valid JSON) has a field `message` lacks."""
    text = body.decode("utf-8", errors="replace")
    try:
        _value(text, _skip(text, 0), message)
    except _UnknownField as unknown:
        line = text.count("\n", 0, unknown.offset) + 1
        column = unknown.offset - (text.rfind("\n", 0, unknown.offset) + 1) + 1
        raise ApiError(
            400, f'proto: (line {line}:{column}): unknown field "{unknown.name}"'
        ) from None


def proto_names(document: Any, message: str) -> Any:
    """`document` with every field spelled by its proto name, as the server stores it."""
    fields = _fields(message)
    if isinstance(document, dict) and fields is not None:
        return {fields[k][0]: proto_names(v, fields[k][1]) if k in fields else v
                for k, v in document.items()}
    if isinstance(document, list) and message.startswith("list["):
        return [proto_names(item, message[5:-1]) for item in document]
    if isinstance(document, dict) and message.startswith("dict("):
        inner = message[5:-1].split(", ", 1)[1]
        return {k: proto_names(v, inner) for k, v in document.items()}
    return document


@cache
def _fields(message: str) -> dict[str, tuple[str, str]] | None:
    """Field name (proto or JSON spelling) -> (proto name, type); None for a non-message."""
    model = getattr(api_models, message, None)
    types = getattr(model, "openapi_types", None)
    if not types:  # an enum, or a scalar such as `str`
        return None
    fields: dict[str, tuple[str, str]] = {}
    for name, kind in types.items():
        fields[name] = (name, kind)
        fields[re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)] = (name, kind)
    return fields


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def _value(text: str, index: int, kind: str) -> int:
    """Walk the JSON value at `index` of type `kind`; return the index after it."""
    if kind.startswith("list[") and text.startswith("[", index):
        inner = kind[5:-1]
        index = _skip(text, index + 1)
        if text.startswith("]", index):
            return index + 1
        while True:
            index = _skip(text, _value(text, index, inner))
            if text.startswith("]", index):
                return index + 1
            index = _skip(text, index + 1)  # the comma
    if kind.startswith("dict(") and text.startswith("{", index):
        inner = kind[5:-1].split(", ", 1)[1]
        return _object(text, index, lambda name: inner)
    fields = _fields(kind)
    if fields is not None and text.startswith("{", index):
        return _object(text, index, lambda name: fields[name][1] if name in fields else None)
    return _DECODER.raw_decode(text, index)[1]  # scalars, Struct, Value, null


def _object(text: str, index: int, field_kind: Any) -> int:
    index = _skip(text, index + 1)
    if text.startswith("}", index):
        return index + 1
    while True:
        name, after = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
        kind = field_kind(name)
        if kind is None:
            raise _UnknownField(name, index)
        index = _skip(text, _skip(text, after) + 1)  # past the colon
        index = _skip(text, _value(text, index, kind))
        if text.startswith("}", index):
            return index + 1
        index = _skip(text, index + 1)  # the comma
