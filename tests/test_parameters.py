"""Run-time parameters: typed, checked before anything runs, lists and dicts as JSON or YAML."""

from __future__ import annotations

import pytest

from skitflow.errors import ParameterError
from skitflow.recipe.models import Parameter
from skitflow.recipe.parameters import KFP_PARAMETER_LIMIT, parse_assignments, resolve_parameters
from skitflow.recipe.templating import resolve_runtime

DECLARED = {
    "size": Parameter(type="float", default=0.2),
    "rounds": Parameter(type="int", default=10),
    "flag": Parameter(type="bool", default=True),
    "columns": Parameter(type="list", default=["a"]),
    "extra": Parameter(type="dict", default={}),
    "name": Parameter(type="str"),
}


def test_values_are_converted_to_their_declared_types() -> None:
    given = parse_assignments(["size=0.5", "rounds=3", "flag=false", "columns=[x, y]",
                               'extra={"depth": 2}', "name=a=b"])
    assert resolve_parameters(DECLARED, given) == {
        "size": 0.5, "rounds": 3, "flag": False, "columns": ["x", "y"], "extra": {"depth": 2},
        "name": "a=b",
    }


def test_defaults_fill_in_and_a_missing_required_value_is_an_error() -> None:
    assert resolve_parameters(DECLARED, {"name": "n"})["size"] == 0.2
    with pytest.raises(ParameterError) as info:
        resolve_parameters(DECLARED, {})
    assert "`name` has no default" in info.value.problems[0].message


def test_all_bad_values_are_reported_together() -> None:
    with pytest.raises(ParameterError) as info:
        resolve_parameters(DECLARED, {"name": "n", "rounds": "1.5", "flag": "maybe", "colums": "[]"})
    messages = sorted(p.message for p in info.value.problems)
    assert messages == [
        "`flag` expects true or false, got `maybe`",
        "`rounds` expects an int, got `1.5`",
        "unknown parameter `colums`",
    ]
    assert next(p for p in info.value.problems if "colums" in p.message).hint == "did you mean `columns`?"


def test_values_too_large_for_kubeflow_are_refused_only_for_kubeflow() -> None:
    big = "x" * (KFP_PARAMETER_LIMIT + 1)
    assert resolve_parameters(DECLARED, {"name": big})["name"] == big
    with pytest.raises(ParameterError, match="Kubeflow refuses values over 10000"):
        resolve_parameters(DECLARED, {"name": big}, for_kubeflow=True)


def test_malformed_assignment() -> None:
    with pytest.raises(ParameterError, match="is not NAME=VALUE"):
        parse_assignments(["size"])


def test_runtime_resolution_keeps_types_of_whole_references() -> None:
    settings = {"test_size": {"$param": "size"}, "path": "s3://b/{{ params.name }}/{{ run.date }}.csv",
                "nested": [{"$param": "columns"}]}
    resolved = resolve_runtime(settings, {"size": 0.3, "name": "n", "columns": ["a"]},
                               {"date": "2026-11-29", "id": "r1"})
    assert resolved == {"test_size": 0.3, "path": "s3://b/n/2026-11-29.csv", "nested": [["a"]]}
