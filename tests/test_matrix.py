"""`matrix:` and `select:`: branches, limits, templating, the unrolled plan and package, a sweep run."""

from __future__ import annotations

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
from skitflow.recipe.matrix import MAX_BRANCHES
from skitflow.steps.registry import default_registry

REPO = Path(__file__).resolve().parent.parent

RECIPE = """\
apiVersion: skitflow/v1
name: sweep
matrix:
{matrix}
source:
  csv: {{path: "{path}", columns: [call_id, text, intent, duration]}}
split:
  train_test: {{test_size: 0.25, stratify: intent}}
sinks:
  - file: {{path: "out/model.json"}}
    input: model
trainer:
  xgboost: {{target: intent, features: [duration], params: {{n_estimators: 5, max_depth: "{{{{ matrix.depth }}}}"}}}}
evaluator:
  classification: {{target: intent}}
  gate: {{metric: f1_macro, min: 0.0}}
{select}
"""


def recipe(matrix: str = "  depth: [2, 4]", path: str = "calls.csv",
           select: str = "  select: {metric: f1_macro, mode: max}") -> str:
    return RECIPE.format(matrix=matrix, path=path, select=select)


def plan(text: str):
    return build_plan(load_recipe_text(text, "sweep.yaml"), default_registry())


def test_branches_are_the_cross_product_less_exclusions_with_typed_values() -> None:
    loaded = load_recipe_text(recipe(matrix="  depth: [2, 4, 6]\n  seed: [1, 2]\n"
                                     "  exclude: [{depth: 6, seed: 2}]", select=""), "sweep.yaml")
    assert [b.label for b, _ in loaded.branches] == [
        "depth2-seed1", "depth2-seed2", "depth4-seed1", "depth4-seed2", "depth6-seed1"]
    depths = [r.trainer["xgboost"]["params"]["max_depth"] for _, r in loaded.branches]
    assert depths == [2, 2, 4, 4, 6]  # a whole-value template keeps the matrix value's type


def test_every_branch_is_a_complete_path_with_readable_names() -> None:
    clients = plan(recipe(matrix="  client: [acme, globex]", path="{{ matrix.client }}.csv",
                          select="").replace('"{{ matrix.depth }}"', "3"))
    assert clients.branches == 2
    names = [t.id for t in clients.tasks]
    assert names == ["csv-acme", "split-train-test-acme", "train-xgboost-acme",
                     "evaluate-classification-acme", "file-model-acme",
                     "csv-globex", "split-train-test-globex", "train-xgboost-globex",
                     "evaluate-classification-globex", "file-model-globex"]
    assert clients.tasks[0].calls[0].settings["path"] == "acme.csv"
    sink = clients.task("file-model-globex")
    assert sink.condition.ref.task == "evaluate-classification-globex"


def test_select_shares_the_data_path_and_gates_only_the_winner() -> None:
    swept = plan(recipe())
    names = [t.id for t in swept.tasks]
    assert names == ["csv", "split-train-test", "train-xgboost-depth2", "evaluate-classification-depth2",
                     "train-xgboost-depth4", "evaluate-classification-depth4", "select-f1-macro",
                     "file-model"]
    chooser = swept.task("select-f1-macro")
    assert chooser.fan_in == 2 and chooser.gate.metric == "f1_macro"
    assert chooser.inputs["model_1"][0].task == "train-xgboost-depth4"
    assert swept.task("evaluate-classification-depth2").gate is None
    sink = swept.task("file-model")
    assert sink.inputs["data"][0].task == "select-f1-macro" and sink.condition.ref.task == "select-f1-macro"


@pytest.mark.parametrize(("text", "message"), [
    (recipe(matrix="  depth: [2, 4]", path="{{ matrix.depth }}.csv"),
     "sweep.yaml:17:3: `select:` picks among trainer settings, but the matrix branches also differ in `source`"),
    (recipe(matrix="  depth: []", select=""), "sweep.yaml:4:10: matrix `depth` must be a non-empty list"),
    (recipe(matrix="  depth: [2, 4]\n  exclude: [{dept: 2}]", select=""),
     "`dept` is not a matrix name"),
    (recipe(matrix="  deep: [2, 4]", select=""), "unknown name `matrix.depth`"),
    (recipe(matrix="  a: [" + ", ".join(map(str, range(17))) + "]\n  b: [" +
            ", ".join(map(str, range(16))) + "]", select=""),
     f"the matrix has 272 branches, over the limit of {MAX_BRANCHES}"),
    (recipe(matrix='  depth: "{{ params.depths }}"', select="").replace(
        "matrix:", "parameters:\n  depths: {type: list, default: [2, 4]}\nmatrix:"),
     "sweep.yaml:6:10: matrix `depth` takes its values from `params.depths` at run time; branches "
     "decided at run time (a ParallelFor over a list parameter) are not supported yet"),
])
def test_bad_matrices_are_refused_with_a_location(text: str, message: str) -> None:
    with pytest.raises(RecipeError) as caught:
        plan(text)
    assert message in str(caught.value)


def test_select_and_matrix_templates_need_a_matrix() -> None:
    text = recipe().replace("matrix:\n  depth: [2, 4]\n", "").replace('"{{ matrix.depth }}"', "3")
    with pytest.raises(RecipeError, match="has no `matrix:`"):
        plan(text)
    with pytest.raises(RecipeError, match="the recipe has no `matrix:`"):
        plan(recipe().replace("matrix:\n  depth: [2, 4]\n", ""))


def test_the_sweep_compiles_to_plain_tasks_and_one_select(tmp_path: Path) -> None:
    from skitflow.compile.build import compile_plan
    from tests.package_check import check_package

    package = check_package(compile_plan(plan(recipe())).text, tmp_path)
    root = package["root"]["dag"]["tasks"]
    assert "for-loop" not in json.dumps(root)  # unrolled: no ParallelFor to fan in from
    select = root["select-f1-macro"]
    assert sorted(select["inputs"]["artifacts"]) == ["metrics_0", "metrics_1", "model_0", "model_1"]


@pytest.mark.slow
def test_a_sweep_runs_and_publishes_only_the_winner(tmp_path: Path) -> None:
    data = pd.DataFrame({"call_id": range(120), "text": ["x"] * 120, "intent": ["a", "b", "c"] * 40,
                         "duration": [float(i % 17) for i in range(120)]})
    data.to_csv(tmp_path / "calls.csv", index=False)
    (tmp_path / "r.yaml").write_text(recipe())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "skitflow", "run", "r.yaml", "--out", "out", "--no-cache"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    scores = {k: v for k, v in summary["metrics"].items() if k.startswith("branch.")}
    assert sorted(scores) == ["branch.depth2.f1_macro", "branch.depth4.f1_macro"]
    assert summary["metrics"]["f1_macro"] == max(scores.values())
    run_dir = tmp_path / summary["run_dir"]
    chosen = json.loads((run_dir / "select-f1-macro" / "metrics").read_text())
    assert chosen["branches"] == {k.split(".")[1]: v for k, v in scores.items()}
    winner = chosen["selected_branch"]
    assert (tmp_path / "out" / "model.json").read_bytes() == \
        (run_dir / f"train-xgboost-{winner}" / "model").read_bytes()
    assert "winner" in (run_dir / "select-f1-macro" / "report").read_text()


BEAT = ("  gate: {metric: f1_macro, min: 0.0}", "  gate: {metric: f1_macro, min: 0.0, beat: out/model.json, by: 0.01}")


def test_a_sweep_with_beat_scores_the_published_model_in_its_select_task(tmp_path: Path) -> None:
    from skitflow.compile.build import compile_plan, task_spec
    from tests.package_check import check_package

    swept = plan(recipe().replace(*BEAT))
    chooser = swept.task("select-f1-macro")
    assert chooser.inputs["test"] == swept.task("evaluate-classification-depth2").inputs["test"]
    assert [c.step for c in chooser.calls] == ["classification"]
    assert chooser.options.caching is False  # the published model changes under its name
    spec = json.loads(task_spec(swept, chooser))
    assert spec["gate"]["beat"] == "out/model.json" and spec["calls"][0]["step"] == "classification"
    package = check_package(compile_plan(swept).text, tmp_path)
    assert "test" in package["root"]["dag"]["tasks"]["select-f1-macro"]["inputs"]["artifacts"]
    plain = plan(recipe()).task("select-f1-macro")  # without `beat:` the shape is unchanged
    assert "test" not in plain.inputs and plain.calls == ()


@pytest.mark.slow
def test_a_sweeps_winner_must_beat_the_published_model(tmp_path: Path) -> None:
    data = pd.DataFrame({"call_id": range(120), "text": ["x"] * 120, "intent": ["a", "b", "c"] * 40,
                         "duration": [float(i % 17) for i in range(120)]})
    data.to_csv(tmp_path / "calls.csv", index=False)
    (tmp_path / "r.yaml").write_text(recipe().replace(*BEAT))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(out: str) -> tuple[subprocess.CompletedProcess[str], dict]:
        done = subprocess.run([sys.executable, "-m", "skitflow", "run", "r.yaml", "--out", out],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        return done, json.loads((tmp_path / out / "summary.json").read_text())

    first, summary = run("run1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary["gate"]["champion"] == "none yet"
    published = (tmp_path / "out" / "model.json").read_bytes()
    # the same data and settings: the same winner, which does not beat itself by 0.01
    second, summary = run("run2")
    assert second.returncode == 3, second.stdout + second.stderr
    gate = summary["gate"]
    assert gate["champion"] == "scored" and gate["passed"] is False
    assert gate["champion_score"] == pytest.approx(summary["metrics"]["f1_macro"])
    assert "does not beat the published model's" in gate["reason"]
    assert (tmp_path / "out" / "model.json").read_bytes() == published
