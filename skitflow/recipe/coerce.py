"""Parameter values converted to their declared type, without pydantic or the recipe models.

Every task converts its run-time parameter values on start; importing the recipe models for that
cost about 40 ms per task. `models.coerce_parameter` is the same function for a `Parameter`.
"""

from __future__ import annotations

from typing import Any

PARAM_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def matches_type(value: Any, type_name: str) -> bool:
    """Whether `value` already has the parameter type `type_name` (a bool is not a number)."""
    expected = PARAM_TYPES[type_name]
    if type_name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def coerce_value(name: str, kind: str, value: Any) -> Any:
    """Convert a user-given value (often a string from the command line) to the type `kind`.

    Raises ValueError with a message fit for the user.
    """
    import json

    import yaml

    if isinstance(value, str) and kind != "str":
        if kind in ("list", "dict"):
            try:
                value = json.loads(value)
            except ValueError:
                try:
                    value = yaml.safe_load(value)
                except yaml.YAMLError:
                    raise ValueError(f"`{name}` expects {_a(kind)} as JSON or YAML") from None
        elif kind == "bool":
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"`{name}` expects true or false, got `{value}`")
            value = lowered in ("true", "1", "yes")
        else:
            try:
                value = PARAM_TYPES[kind](value)
            except ValueError:
                whole = _integral(value) if kind == "int" else None
                if whole is None:
                    raise ValueError(f"`{name}` expects {_a(kind)}, got `{value}`") from None
                value = whole
    if kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)  # KFP passes numbers through protobuf, where 240 may become 240.0
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not matches_type(value, kind):
        raise ValueError(f"`{name}` expects {_a(kind)}, got {type(value).__name__} `{value}`")
    return value


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "int" else f"a {kind}"


def _integral(text: str) -> int | None:
    """`240.0` -> 240; anything else -> None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None
