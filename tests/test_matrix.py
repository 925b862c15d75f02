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
    return build_plan(load_recipe_text(text, "r.yaml" if text.startswith(LOOPED[:40]) else "sweep.yaml"),
                      default_registry())


#: branches chosen at submit time: a ParallelFor over the list parameter
LOOPED = """\
apiVersion: skitflow/v1
name: per-client
parameters:
  clients: {type: list, default: [acme, globex]}
matrix:
  client: "{{ params.clients }}"
source:
  csv: {path: "data/{{ matrix.client }}.csv", columns: [call_id, text, intent, duration]}
split:
  train_test: {test_size: 0.25, stratify: intent}
trainer:
  xgboost: {target: intent, features: [duration], params: {n_estimators: 5}}
sinks:
  - file: {path: "out/{{ matrix.client }}/model.json"}
    input: model
  - file: {path: "out/{{ matrix.client }}/metrics.json"}
    input: metrics
  - file: {path: "{{ matrix.client }}"}
    input: report
evaluator:
  classification: {target: intent}
  gate: {metric: f1_macro, min: 0.0}
"""


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
    (LOOPED.replace("{type: list", "{type: str").replace("[acme, globex]", "acme"),
     "r.yaml:6:11: matrix `client` takes its values from `params.clients`, which is not a declared "
     "`type: list` parameter"),
    (LOOPED.replace('"{{ params.clients }}"', '"{{ params.clients }}"\n  lang: [en, hi]'),
     "r.yaml:7:3: a matrix with a run-time dimension (`client` from `params.clients`) cannot have "
     "other dimensions yet"),
    (LOOPED.replace('"{{ params.clients }}"', '"{{ params.clients }}"\n  exclude: [{client: acme}]'),
     "r.yaml:7:3: `exclude:` needs the values of `client` at compile time"),
    (LOOPED + "  select: {metric: f1_macro, mode: max}\n",
     "r.yaml:23:3: `select:` needs every branch's score in one task, but the branches of matrix "
     "`client` come from `params.clients` at run time (a ParallelFor): the open-source Kubeflow "
     "backend cannot collect a loop's outputs"),
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


def test_a_matrix_from_a_list_parameter_is_one_path_in_a_parallel_for(tmp_path: Path, cli) -> None:
    from skitflow.compile.build import compile_plan, task_spec
    from skitflow.recipe.models import LoopItems, kfp_arguments
    from tests.package_check import check_package

    looped = plan(LOOPED)
    assert looped.loop is not None and looped.loop.items == "clients" and looped.branches == 1
    assert [t.id for t in looped.tasks][:3] == ["csv", "split-train-test", "train-xgboost"]
    assert sorted(looped.parameters) == ["clients"] and isinstance(looped.parameters["clients"], LoopItems)
    source = looped.task("csv")
    assert source.params == ("matrix_client",)
    assert json.loads(task_spec(looped, source))["calls"][0]["settings"]["path"] == \
        "data/{{ params.matrix_client }}.csv"
    report = looped.task("file-report")  # a whole `{{ matrix.client }}` is the item itself
    assert json.loads(task_spec(looped, report))["calls"][0]["settings"]["path"] == {"$param": "matrix_client"}
    assert kfp_arguments(looped.parameters, {"clients": ["a", "b"]}) == {"clients": ["a", "b"]}
    package = check_package(compile_plan(looped).text, tmp_path)
    loop = package["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--clients"
    assert package["root"]["inputDefinitions"]["parameters"]["clients"] == {
        "defaultValue": ["acme", "globex"], "isOptional": True, "parameterType": "LIST"}
    inner = package["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert inner["csv"]["inputs"]["parameters"]["param_matrix_client"] == {
        "componentInputParameter": "pipelinechannel--clients-loop-item"}
    (tmp_path / "r.yaml").write_text(LOOPED)
    (tmp_path / "data").mkdir()
    result = cli("validate", str(tmp_path / "r.yaml"))
    assert "branches: decided at run time (ParallelFor over params.clients)" in result.output


@pytest.mark.slow
def test_a_looped_matrix_runs_once_per_client_given_at_run_time(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for n, client in enumerate(("acme", "globex", "initech")):
        pd.DataFrame({"call_id": range(120), "text": ["x"] * 120, "intent": ["a", "b", "c"] * 40,
                      "duration": [float((i * (n + 1)) % 17) for i in range(120)]}
                     ).to_csv(tmp_path / "data" / f"{client}.csv", index=False)
    (tmp_path / "r.yaml").write_text(LOOPED)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "skitflow", "run", "r.yaml", "--out", "run",
                           "--param", 'clients=["acme", "initech"]'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["acme", "initech"]  # not the default's globex
    for client in ("acme", "initech"):
        metrics = json.loads((out / client / "metrics.json").read_text())
        assert 0.0 <= metrics["metrics"]["f1_macro"] <= 1.0
        assert (out / client / "model.json").stat().st_size > 0
        assert (tmp_path / client).exists()  # the report sink's path is the item itself
    assert (out / "acme" / "model.json").read_bytes() != (out / "initech" / "model.json").read_bytes()
