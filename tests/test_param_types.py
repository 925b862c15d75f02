"""`list` and `dict` parameters keep their element types through compile and `skitflow run`.

They travel as JSON text (KFP_PARAM_TYPES): as KFP LIST/STRUCT values they passed through
protobuf's Struct, where every number is a double, and xgboost refused `max_depth: 4.0`. The submit
side is in tests/test_submit.py (test_dict_parameters_keep_their_ints_through_submit).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skitflow.recipe.models import Parameter, coerce_parameter, kfp_parameter_value
from tests.test_run import REPO, skitflow

GRID_RECIPE = f"""\
apiVersion: skitflow/v1
name: grid-tickets
parameters:
  grid: {{type: dict, default: {{n_estimators: 30, max_depth: 3, learning_rate: 0.3}}}}
  keep: {{type: list, default: [ticket_id, customer_age, account_months, num_previous_tickets, label]}}
source:
  csv: {{path: {REPO / 'examples/data/tickets.csv'}}}
steps:
  - select_columns: {{columns: "{{{{ params.keep }}}}"}}
split:
  train_test: {{test_size: 0.3, stratify: label, seed: 7}}
trainer:
  xgboost: {{target: label, params: "{{{{ params.grid }}}}"}}
"""


@pytest.mark.parametrize("kind, value", [
    ("dict", {"max_depth": 4, "eta": 0.5, "nested": {"n": [1, 2.5, True, None]}}),
    ("list", [1, 2, 3.0, "x", {"a": 1}]),
])
def test_json_text_round_trips_with_the_element_types(kind: str, value: object) -> None:
    text = kfp_parameter_value(kind, value)
    assert isinstance(text, str)
    decoded = coerce_parameter("p", Parameter(type=kind), text)
    assert decoded == value
    assert json.dumps(decoded) == json.dumps(value)  # 4 stays 4, 3.0 stays 3.0


def test_scalars_are_passed_as_they_are() -> None:
    assert kfp_parameter_value("int", 3) == 3 and kfp_parameter_value("str", "[1]") == "[1]"


@pytest.mark.slow
def test_an_xgboost_params_dict_with_ints_trains_through_skitflow_run(tmp_path: Path) -> None:
    recipe = tmp_path / "grid.yaml"
    recipe.write_text(GRID_RECIPE)
    out = tmp_path / "run"
    result = skitflow("run", recipe, "--out", out, "--no-cache",
                      "-p", 'grid={"n_estimators": 7, "max_depth": 2}')
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["grid"] == {"n_estimators": 7, "max_depth": 2}
    executor = json.loads((Path(summary["run_dir"]) / "train-xgboost" / "executor_output.json").read_text())
    [model] = executor["artifacts"]["model"]["artifacts"]
    params = model["metadata"]["params"]
    assert params["max_depth"] == 2 and params["n_estimators"] == 7 and model["metadata"]["n_rounds"] == 7
    package = (out / "package.yaml").read_text()
    assert "param_grid: str" in package  # the component takes the JSON text
