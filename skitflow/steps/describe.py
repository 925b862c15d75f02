"""A step's settings as a reader sees them: name, type, default, description.

`skitflow steps show` and the `skitflow docs` catalogue both read settings through here, so the
terminal and the site cannot describe a step differently.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from skitflow.steps.base import Step


@dataclass(frozen=True)
class SettingRow:
    name: str
    type: str
    default: str  # "required" or the default's repr
    description: str


def type_name(annotation: Any) -> str:
    """`list[str] | None`, `'any' | 'all'`: types as a user reads them, not typing's repr."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else origin.__name__
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def setting_rows(step: type[Step]) -> list[SettingRow]:
    """One row per field of the step's Settings model, in declaration order."""
    rows = []
    for field_name, info in step.Settings.model_fields.items():
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        rows.append(SettingRow(field_name, type_name(info.annotation), default, info.description or ""))
    return rows
