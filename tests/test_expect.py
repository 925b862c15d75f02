"""`expect` steps and `on_empty`: the checks themselves, their place in the plan and package, runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from skitflow.errors import RecipeError
from skitflow.plan.planner import build_plan
from skitflow.recipe.loader import load_recipe_text
from skitflow.steps.expect import Expect, ExpectationsFailed, ExpectSettings, check_frame
from skitflow.steps.registry import default_registry

REPO = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


def frame(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame({
        "id": range(n),
        "text": [f"t{i}" for i in range(n)],
        "label": ["a", "b"] * (n // 2),
        "lang": ["en", "hi"] * (n // 2),
        "duration": [float(i) for i in range(n)],
        "created_at": pd.date_range(end=NOW, periods=n, freq="h"),
    })


def results(data: pd.DataFrame, **checks) -> dict:
    return {r.name: r for r in check_frame(data, ExpectSettings(**checks), now=NOW)}


def test_every_check_passes_on_good_data_and_is_named() -> None:
    found = results(frame(), row_count={"min": 10, "max": 100}, not_null=["text", "label"],
                    unique=["id"], accepted_values={"lang": ["en", "hi"]},
                    range={"duration": {"min": 0, "max": 100}},
                    class_balance={"column": "label", "min_share": 0.4},
                    freshness={"column": "created_at", "max_age": "2h"},
                    columns={"duration": "float", "id": "int", "text": "str", "created_at": "datetime"})
    assert sorted(found) == sorted([
        "row_count", "not_null.text", "not_null.label", "unique.id", "accepted_values.lang",
        "range.duration", "class_balance.label", "freshness.created_at", "columns.duration",
        "columns.id", "columns.text", "columns.created_at"])
    assert all(r.passed and r.failing == 0 for r in found.values()), found


def test_failing_checks_count_rows_and_keep_at_most_five_examples() -> None:
    data = frame(40)
    data.loc[[1, 2, 3, 4, 5, 6, 7], "label"] = None
    data.loc[10, "lang"] = "fr"
    data.loc[11, "id"] = 12
    data.loc[30, "duration"] = -1.0
    found = results(data, row_count={"min": 50}, not_null=["label"], unique=["id"],
                    accepted_values={"lang": ["en", "hi"]}, range={"duration": {"min": 0}},
                    class_balance={"column": "label", "min_share": 0.49}, columns={"duration": "int"})
    assert not any(r.passed for r in found.values())
    assert found["not_null.label"].failing == 7
    assert [e["row"] for e in found["not_null.label"].examples] == [1, 2, 3, 4, 5]
    assert found["accepted_values.lang"].examples[0]["lang"] == "fr"
    assert {e["row"] for e in found["unique.id"].examples} == {11, 12}
    assert found["range.duration"].examples[0]["row"] == 30
    assert found["row_count"].detail == "40 rows (expected min 50)"
    assert found["columns.duration"].detail == "`duration` is float64, not int"
    # 33 labels left after 7 nulls: a 17, b 16 (48.5 %, under 49 %)
    assert found["class_balance.label"].examples == [{"class": "b", "share": 0.4848}]
    stale = results(frame().assign(created_at=pd.date_range(end=NOW - dt.timedelta(days=3), periods=20,
                                                               freq="h")),
                    freshness={"column": "created_at", "max_age": "2d"})["freshness.created_at"]
    assert not stale.passed and "3.0d old, over 2d" in stale.detail
    assert len(stale.examples) == 5


def test_nulls_pass_value_checks_as_in_dbt() -> None:
    data = frame().astype({"lang": object})
    data.loc[0, ["lang", "duration", "id"]] = [None, None, None]
    found = results(data, accepted_values={"lang": ["en", "hi"]}, range={"duration": {"max": 100}},
                    unique=["id"])
    assert all(r.passed for r in found.values())


def test_run_raises_with_every_failing_check_and_warn_passes_the_data_on() -> None:
    data = frame()
    data.loc[0, "text"] = None
    step = Expect()
    with pytest.raises(ExpectationsFailed) as caught:
        step.run(data, ExpectSettings(not_null=["text"], row_count={"min": 100}))
    message = str(caught.value)
    assert "2 of 2 checks failed" in message and "not_null.text: 1 of 20 rows is null" in message
    assert '"row": 0' in message
    assert step.run(data, ExpectSettings(not_null=["text"], severity="warn")) is data


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one check"):
        ExpectSettings(severity="warn")
    with pytest.raises(ValueError, match="not a duration"):
        ExpectSettings(freshness={"column": "c", "max_age": "two days"})
    with pytest.raises(ValueError, match="larger than"):
        ExpectSettings(range={"x": {"min": 3, "max": 1}})


RECIPE = """\
apiVersion: skitflow/v1
name: checked
source:
  csv: {{path: calls.csv, columns: [call_id, text, intent]}}
{source_options}
steps:
  - drop_duplicates: {{subset: [call_id]}}
  - expect: {{not_null: [{column}], unique: [call_id]}}
split:
  train_test: {{test_size: 0.2}}
{split_options}
trainer:
  xgboost: {{target: intent, features: [call_id]}}
"""


def plan(column: str = "text", source_options: str = "", split_options: str = ""):
    text = RECIPE.format(column=column, source_options=source_options, split_options=split_options)
    return build_plan(load_recipe_text(text, "checked.yaml"), default_registry())


def test_expect_columns_are_checked_against_the_column_contract() -> None:
    with pytest.raises(RecipeError) as caught:
        plan(column="txt")
    assert "checked.yaml:8:5: `expect` needs column `txt`, which does not exist here" in str(caught.value)
    with pytest.raises(RecipeError) as caught:
        plan(split_options="  expect: {test: {not_null: [call_idd]}}")
    assert "checked.yaml:11:12: `expect` needs column `call_idd`" in str(caught.value)
    with pytest.raises(RecipeError) as caught:
        plan(split_options="  expect: {train: {row_count: {min: 1}}, not_null: [text]}")
    assert "mixes `train:`/`test:` with checks" in str(caught.value)


def test_the_task_that_runs_an_expect_gets_a_metrics_output(tmp_path: Path) -> None:
    from skitflow.compile.build import compile_plan, task_spec
    from tests.package_check import check_package

    checked = plan(split_options="  expect: {row_count: {min: 5}}")
    prepare, split = checked.tasks[0], checked.tasks[1]
    assert prepare.checks and split.checks and not checked.tasks[2].checks
    spec = json.loads(task_spec(checked, split))
    assert [(c["step"], c.get("on")) for c in spec["calls"]] == [
        ("train_test", None), ("expect", "train"), ("expect", "test")]
    package = check_package(compile_plan(checked).text, tmp_path)
    outputs = package["components"]["comp-csv-drop-duplicates-expect"]["outputDefinitions"]["artifacts"]
    assert outputs["checks"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert "checks" not in package["components"]["comp-train-xgboost"].get("outputDefinitions", {}).get(
        "artifacts", {})


def test_on_empty_skip_guards_every_later_task_by_the_source_rows(tmp_path: Path) -> None:
    from skitflow.compile.build import compile_plan
    from tests.package_check import check_package

    skipping = plan(source_options="  on_empty: skip")
    assert skipping.tasks[0].on_empty == "skip" and skipping.tasks[0].guard is None
    assert all(t.guard is not None and t.guard.ref.task == skipping.tasks[0].id for t in skipping.tasks[1:])
    package = check_package(compile_plan(skipping).text, tmp_path)
    root = package["root"]["dag"]["tasks"]
    assert sorted(root) == ["condition-1", "csv-drop-duplicates-expect"]
    assert root["condition-1"]["taskInfo"]["name"] == "source-has-rows"
    condition = root["condition-1"]["triggerPolicy"]["condition"]
    assert "pipelinechannel--csv-drop-duplicates-expect-rows" in condition and "> 0" in condition
    assert all(t.guard is None for t in plan().tasks)


def run_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "skitflow", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


RUN_RECIPE = """\
apiVersion: skitflow/v1
name: checked-run
parameters:
  severity: {type: str, default: error}
  path: {type: str, default: calls.csv}
source:
  csv: {path: "{{ params.path }}", columns: [call_id, text, intent, duration]}
  on_empty: ON_EMPTY
steps:
  - expect: {not_null: [intent], range: {duration: {min: 0}}, severity: "{{ params.severity }}"}
  - dropna: {columns: [intent]}
split:
  train_test: {test_size: 0.25, stratify: intent}
  expect: {test: {row_count: {min: 2}}}
trainer:
  xgboost: {target: intent, features: [duration], params: {n_estimators: 5}}
evaluator:
  classification: {target: intent}
"""


@pytest.fixture
def checked_run(tmp_path: Path) -> Path:
    data = pd.DataFrame({"call_id": range(80), "text": ["x"] * 80, "intent": ["a", "b"] * 40,
                         "duration": [float(i) for i in range(80)]})
    data.loc[[3, 5], "intent"] = None
    data.to_csv(tmp_path / "calls.csv", index=False)
    data.head(0).to_csv(tmp_path / "empty.csv", index=False)
    return tmp_path


def write_recipe(folder: Path, on_empty: str) -> Path:
    (folder / "r.yaml").write_text(RUN_RECIPE.replace("ON_EMPTY", on_empty))
    return folder / "r.yaml"


@pytest.mark.slow
def test_an_error_expect_stops_the_run_before_training(checked_run: Path) -> None:
    write_recipe(checked_run, "fail")
    result = run_cli("run", "r.yaml", "--out", "out", "--no-cache", cwd=checked_run)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "expect: 1 of 2 checks failed" in result.stderr
    assert "not_null.intent: 2 of 80 rows are null" in result.stderr
    assert '"row": 3' in result.stderr and '"row": 5' in result.stderr
    summary = json.loads((checked_run / "out" / "summary.json").read_text())
    assert summary["not_run"]["train-xgboost"] == ["csv-expect-dropna"]


@pytest.mark.slow
def test_a_warn_expect_is_recorded_in_metrics_and_report(checked_run: Path) -> None:
    write_recipe(checked_run, "fail")
    result = run_cli("run", "r.yaml", "--out", "out", "--no-cache", "--param", "severity=warn",
                     cwd=checked_run)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((checked_run / "out" / "summary.json").read_text())
    assert summary["metrics"]["expect.not_null.intent"] == 2.0
    run_dir = checked_run / summary["run_dir"]
    checks = json.loads((run_dir / "csv-expect-dropna" / "checks").read_text())["expectations"]
    assert {c["name"]: c["failing"] for c in checks} == {"not_null.intent": 2, "range.duration": 0}
    executor = json.loads((run_dir / "csv-expect-dropna" / "executor_output.json").read_text())
    metadata = executor["artifacts"]["checks"]["artifacts"][0]["metadata"]
    assert metadata["not_null.intent"] == 2.0 and metadata["range.duration"] == 0.0
    split_checks = json.loads((run_dir / "split-train-test" / "checks").read_text())["expectations"]
    assert [c["name"] for c in split_checks] == ["test.row_count"]
    report = (run_dir / "evaluate-classification" / "report").read_text()
    assert "Data expectations" in report and "FAILED (warn)" in report
    assert report.rstrip().endswith("</html>")


@pytest.mark.slow
def test_an_empty_source_fails_by_default_and_skip_ends_the_run_successfully(checked_run: Path) -> None:
    write_recipe(checked_run, "fail")
    failed = run_cli("run", "r.yaml", "--out", "out1", "--no-cache", "--param", "path=empty.csv",
                     cwd=checked_run)
    assert failed.returncode == 1 and "`csv` returned no rows" in failed.stderr
    write_recipe(checked_run, "skip")
    skipped = run_cli("run", "r.yaml", "--out", "out2", "--no-cache", "--param", "path=empty.csv",
                      cwd=checked_run)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "no rows: nothing to train" in skipped.stdout
    summary = json.loads((checked_run / "out2" / "summary.json").read_text())
    assert summary["notes"][0].startswith("no rows: nothing to train")
    assert {t: s["status"] for t, s in summary["tasks"].items()} == {
        "csv-expect-dropna": "succeeded", "split-train-test": "skipped", "train-xgboost": "skipped",
        "evaluate-classification": "skipped"}
