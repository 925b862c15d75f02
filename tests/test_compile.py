"""Compiling: determinism, Kubernetes options, secrets, scale, and validate's independence of kfp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from skitflow.api import compile_recipe
from skitflow.plan.planner import build_plan
from skitflow.recipe.loader import load_recipe_text
from skitflow.steps.registry import default_registry
from tests.package_check import check_package

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "recipes" / "seed-workflow.yaml"


def _compile_in_subprocess(recipe: Path, out: Path, seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    subprocess.run([sys.executable, "-m", "skitflow", "compile", str(recipe), "-o", str(out), "--target", "local"],
                   check=True, cwd=REPO, env=env, capture_output=True)
    return out.read_bytes()


def test_output_is_byte_identical_across_runs_and_hash_seeds(tmp_path: Path) -> None:
    first = _compile_in_subprocess(SEED, tmp_path / "a.yaml", "1")
    second = _compile_in_subprocess(SEED, tmp_path / "b.yaml", "4242")
    assert first == second


def test_task_names_come_from_the_recipe(tmp_path: Path) -> None:
    package = compile_recipe(SEED)
    spec = check_package(package.text, tmp_path)
    assert sorted(spec["root"]["dag"]["tasks"]) == [
        "condition-1", "csv-to-drop-columns", "evaluate-classification", "labelstudio-dataset",
        "s3-dataset", "split-train-test", "train-xgboost",
    ]
    gate = spec["root"]["dag"]["tasks"]["condition-1"]
    assert gate["taskInfo"]["name"] == "gate-f1-macro"
    assert "evaluate-classification-passed" in gate["triggerPolicy"]["condition"]
    assert list(spec["components"]["comp-condition-1"]["dag"]["tasks"]) == ["s3-model"]


def test_recipe_parameters_become_typed_pipeline_parameters() -> None:
    spec = yaml.safe_load(compile_recipe(SEED).text.split("\n---\n")[0])
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["test_size"] == {"defaultValue": 0.2, "isOptional": True, "parameterType": "NUMBER_DOUBLE"}
    assert inputs["bucket"]["parameterType"] == "STRING"


KUBERNETES = REPO / "tests" / "recipes" / "valid" / "kubernetes-options.yaml"


def test_kubernetes_options_reach_the_package(tmp_path: Path) -> None:
    text = compile_recipe(KUBERNETES).text
    pipeline, platform = yaml.safe_load_all(text)
    executors = pipeline["deploymentSpec"]["executors"]
    scale = executors["exec-scale"]["container"]
    assert scale["image"] == "registry.example.com/heavy:2.0"
    assert scale["resources"]["cpuRequest"] == 4.0
    assert scale["resources"]["memoryRequest"] == 8.589934592  # 8Gi in GB, as kfp writes it
    train = executors["exec-train-xgboost"]["container"]
    assert train["resources"]["accelerator"]["resourceCount"] == "1"
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    tasks = pipeline["root"]["dag"]["tasks"]
    assert tasks["csv-sample"]["cachingOptions"] == {}
    assert tasks["scale"]["retryPolicy"]["maxRetryCount"] == 2
    assert tasks["scale"]["retryPolicy"]["backoffDuration"] == "30s"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-scale"]["activeDeadlineSeconds"] == "1800"
    assert k8s["exec-scale"]["tolerations"][0]["key"] == "dedicated"
    assert k8s["exec-scale"]["nodeSelector"]["labels"] == {"pool": "cpu"}
    secret = k8s["exec-csv-sample"]["secretAsEnv"][0]
    assert secret["secretName"] == "object-store"
    assert {m["envVar"] for m in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_secret_values_never_reach_the_package(tmp_path: Path) -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": secret, "DB_PASSWORD": secret}
    out = tmp_path / "k.yaml"
    subprocess.run([sys.executable, "-m", "skitflow", "compile", str(KUBERNETES), "-o", str(out), "--target", "local"],
                   check=True, cwd=REPO, env=env, capture_output=True)
    text = out.read_text()
    assert secret not in text
    assert "object-store" in text  # the secret's name is what is compiled


def test_mutable_image_tags_turn_caching_off() -> None:
    text = """\
apiVersion: skitflow/v1
name: latest-tag
image: example.com/team/skitflow:latest
source:
  csv: {path: a.csv}
sinks:
  - file: {path: b.csv}
"""
    plan = build_plan(load_recipe_text(text, "r.yaml"), default_registry())
    assert all(task.options.caching is False for task in plan.tasks)
    assert "mutable tag" in plan.warnings[0].message


def test_fusion_and_isolation() -> None:
    text = """\
apiVersion: skitflow/v1
name: fusion
source:
  csv: {path: a.csv, columns: [a, b, c]}
steps:
  - dropna: {}
  - lowercase: {columns: [a]}
  - strip: {columns: [a]}
    isolate: true
  - drop_columns: {columns: [c]}
  - standardize: {columns: [b]}
"""
    plan = build_plan(load_recipe_text(text, "r.yaml"), default_registry())
    assert [(t.id, [c.step for c in t.calls]) for t in plan.tasks] == [
        ("csv-dropna-lowercase", ["csv", "dropna", "lowercase"]),
        ("strip", ["strip"]),
        ("drop-columns-standardize", ["drop_columns", "standardize"]),
    ]


def test_fused_steps_must_agree_on_task_options() -> None:
    text = """\
apiVersion: skitflow/v1
name: conflict
source:
  csv: {path: a.csv}
steps:
  - dropna: {}
    resources: {cpu: "1"}
  - lowercase: {columns: [a]}
    resources: {cpu: "2"}
"""
    import pytest

    from skitflow.errors import SkitflowError

    with pytest.raises(SkitflowError) as info:
        build_plan(load_recipe_text(text, "r.yaml"), default_registry())
    [problem] = info.value.problems
    assert "`resources` differs from `dropna`" in problem.message
    assert problem.location.line == 9


def _recipe_with_steps(count: int, isolate: bool = False) -> str:
    steps = "\n".join(
        f"  - fillna: {{values: {{x{i % 50}: 0}}}}" + ("\n    isolate: true" if isolate else "")
        for i in range(count)
    )
    columns = ", ".join(f"x{i}" for i in range(50))
    return f"""\
apiVersion: skitflow/v1
name: scale-{count}
source:
  csv: {{path: a.csv, columns: [{columns}]}}
steps:
{steps}
"""


def test_a_thousand_steps_compile_quickly(tmp_path: Path) -> None:
    started = time.perf_counter()
    package = compile_recipe(load_recipe_text(_recipe_with_steps(1000), "r.yaml"))
    seconds = time.perf_counter() - started
    spec = check_package(package.text, tmp_path)
    calls = json.loads(spec["root"]["dag"]["tasks"]["csv-to-fillna"]["inputs"]["parameters"]["spec"]
                       ["runtimeValue"]["constant"])["calls"]
    assert len(calls) == 1001
    assert seconds < 10, f"1000 fused steps took {seconds:.1f}s to compile"


def test_validate_never_imports_kfp(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from skitflow.cli.app import app\n"
        "try:\n"
        "    app(['validate', 'recipes/seed-workflow.yaml'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('kfp', 'pandas', 'xgboost', 'sklearn'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)


def test_each_used_parameter_is_a_typed_input_of_its_task(tmp_path: Path) -> None:
    text = """\
apiVersion: skitflow/v1
name: typed-inputs
parameters:
  day: {type: str, default: a}
  keep: {type: list, default: [a, b]}
source:
  csv: {path: "data/{{ params.day }}.csv"}
steps:
  - select_columns: {columns: "{{ params.keep }}"}
"""
    package = compile_recipe(load_recipe_text(text, "r.yaml"))
    spec = check_package(package.text, tmp_path)
    inputs = spec["components"]["comp-csv-select-columns"]["inputDefinitions"]["parameters"]
    assert inputs["param_day"]["parameterType"] == "STRING"
    # a list travels as JSON text (its ints would become floats in a protobuf Struct); the spec
    # keeps the declared type, with which the task decodes it
    assert inputs["param_keep"]["parameterType"] == "STRING"
    assert spec["root"]["inputDefinitions"]["parameters"]["keep"]["defaultValue"] == '["a","b"]'
    wiring = spec["root"]["dag"]["tasks"]["csv-select-columns"]["inputs"]["parameters"]
    assert wiring["param_keep"] == {"componentInputParameter": "keep"}


def test_a_parameter_named_like_a_python_keyword_is_refused() -> None:
    import pytest

    from skitflow.errors import SkitflowError

    text = "apiVersion: skitflow/v1\nname: k\nparameters:\n  class: {type: str}\nsource:\n  csv: {path: a.csv}\n"
    with pytest.raises(SkitflowError, match="not a keyword"):
        load_recipe_text(text, "r.yaml")


def test_parameters_compile_in_any_order_of_defaults(tmp_path: Path) -> None:
    """Parameters are a mapping: one without a default may follow one with a default."""
    text = """\
apiVersion: skitflow/v1
name: any-order
parameters:
  a: {type: int, default: 1}
  b: {type: int}
  c: {type: str, default: x}
  d: {type: float}
source:
  csv: {path: "data/{{ params.c }}.csv"}
steps:
  - sample: {n: "{{ params.a }}"}
  - sample: {n: "{{ params.b }}"}
    isolate: true
split:
  train_test: {test_size: "{{ params.d }}"}
"""
    package = compile_recipe(load_recipe_text(text, "r.yaml"))
    spec = check_package(package.text, tmp_path)
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["a"]["defaultValue"] == 1 and inputs["c"]["defaultValue"] == "x"
    assert "defaultValue" not in inputs["b"] and "defaultValue" not in inputs["d"]
    wired = {name: task["inputs"]["parameters"] for name, task in spec["root"]["dag"]["tasks"].items()}
    assert wired["split-train-test"]["param_d"] == {"componentInputParameter": "d"}
    assert any(p.get("param_b") == {"componentInputParameter": "b"} for p in wired.values())


BEAT = """\
apiVersion: skitflow/v1
name: beat
parameters:
  margin: {type: float, default: 0.01}
  published: {type: str, default: s3://models/beat/model.zip}
source:
  csv: {path: data.csv, columns: [x, label]}
split:
  train_test: {test_size: 0.2}
trainer:
  linear: {target: label}
evaluator:
  classification: {target: label}
  gate: {metric: f1_macro, min: 0.7, beat: "{{ params.published }}", by: "{{ params.margin }}"}
sinks:
  - s3: {uri: "{{ params.published }}"}
    input: model
  - s3: {uri: "s3://models/beat/reports/"}
    input: report
"""


def test_a_champion_gate_reaches_the_task_uncached_and_only_the_model_waits_for_it(tmp_path: Path) -> None:
    package = compile_recipe(load_recipe_text(BEAT, "beat.yaml"))
    spec = check_package(package.text, tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    evaluate = tasks["evaluate-classification"]
    task_spec = json.loads(evaluate["inputs"]["parameters"]["spec"]["runtimeValue"]["constant"])
    assert task_spec["gate"] == {"metric": "f1_macro", "min": 0.7, "beat": {"$param": "published"},
                                 "by": {"$param": "margin"}}
    assert task_spec["param_types"] == {"margin": "float", "published": "str"}
    assert evaluate["cachingOptions"] == {}  # the published model changes under its name
    assert "s3-report" in tasks  # the report is written whatever the verdict
    gated = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert list(gated) == ["s3-model"]
