"""Run-time parameter values: parsed from the command line or a file, checked before any work.

Used by `skitflow run` and `skitflow submit` alike, so both refuse the same bad values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skitflow.errors import ParameterError, Problem, did_you_mean
from skitflow.recipe.models import Parameter, coerce_parameter

#: The Kubeflow API refuses parameter values longer than this (kubeflow/pipelines#12510).
KFP_PARAMETER_LIMIT = 10_000


def parse_assignments(assignments: Sequence[str]) -> dict[str, str]:
    """`NAME=VALUE` strings from the command line -> mapping; VALUE is parsed later by type."""
    values: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"`--param {item}` is not NAME=VALUE", hint="e.g. --param test_size=0.3")
        values[name.strip()] = value
    return values


def read_params_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping of parameter values."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParameterError(f"parameters file `{path}` does not exist") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameters file `{path}` is not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(f"parameters file `{path}` must hold a mapping of NAME: VALUE")
    return data


def resolve_parameters(
    declared: Mapping[str, Parameter],
    given: Mapping[str, Any],
    *,
    for_kubeflow: bool = False,
) -> dict[str, Any]:
    """Check and convert every given value; fill defaults; all problems reported at once."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for name, raw in given.items():
        spec = declared.get(name)
        if spec is None:
            known = ", ".join(declared) or "none"
            problems.append(Problem(f"unknown parameter `{name}`",
                                    hint=did_you_mean(name, declared) or f"declared parameters: {known}"))
            continue
        try:
            values[name] = coerce_parameter(name, spec, raw)
        except ValueError as exc:
            problems.append(Problem(str(exc), hint=spec.description or None))
    for name, spec in declared.items():
        if name not in values and name not in given:
            if spec.default is None:
                problems.append(Problem(f"parameter `{name}` has no default and no value",
                                        hint=f"pass --param {name}=VALUE"))
            else:
                values[name] = spec.default
    if for_kubeflow:
        for name, value in values.items():
            size = len(value if isinstance(value, str) else json.dumps(value))
            if size > KFP_PARAMETER_LIMIT:
                problems.append(Problem(
                    f"parameter `{name}` is {size} characters; Kubeflow refuses values over "
                    f"{KFP_PARAMETER_LIMIT}",
                    hint="put large data in a file or object store and pass its path"))
    if problems:
        raise ParameterError(problems=problems)
    return values
