"""A task imports only its own steps: the registry's built-in name table and what it costs."""

from __future__ import annotations

import json
import subprocess
import sys

from skitflow.steps.base import Kind
from skitflow.steps.builtin import BUILTIN_STEPS
from skitflow.steps.registry import BUILTIN_MODULES, builtin_step


def test_the_builtin_table_names_every_builtin_step_and_its_module() -> None:
    registered = {(s.kind.value, s.name): s.__module__ for s in BUILTIN_STEPS}
    assert registered == BUILTIN_MODULES


def test_builtin_step_finds_the_class_and_nothing_that_is_not_built_in() -> None:
    assert builtin_step(Kind.TRANSFORM, "strip").__name__ == "Strip"
    assert builtin_step(Kind.SINK, "s3").kind is Kind.SINK
    assert builtin_step(Kind.SOURCE, "s3").kind is Kind.SOURCE
    assert builtin_step(Kind.TRANSFORM, "title_case") is None
    assert builtin_step(Kind.SINK, "strip") is None


PROBE = """
import json, sys
from skitflow.run.runtime import _load_step
step = _load_step({"kind": "transform", "step": "strip", "package": "skitflow"})
print(json.dumps({"step": step.name, "modules": sorted(m for m in sys.modules if m.startswith(
    ("skitflow.steps.", "sklearn", "xgboost", "matplotlib", "boto3")))}))
"""


def test_a_task_with_one_transform_imports_no_other_step_module() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert found["step"] == "strip"
    assert found["modules"] == ["skitflow.steps.base", "skitflow.steps.columns",
                                "skitflow.steps.registry", "skitflow.steps.transforms"]


VALIDATE_PROBE = """
import json, sys
from pathlib import Path
from skitflow.plan.planner import build_plan
from skitflow.recipe.loader import load_recipe_file
from skitflow.steps.registry import default_registry
plan = build_plan(load_recipe_file(Path(sys.argv[1]), partial=True), default_registry())
print(json.dumps({"tasks": len(plan.tasks), "modules": sorted(
    m for m in sys.modules if m.startswith("skitflow.steps.") and m not in (
        "skitflow.steps.base", "skitflow.steps.columns", "skitflow.steps.registry",
        "skitflow.steps.gate"))}))
"""


def test_planning_imports_only_the_step_modules_the_recipe_names(tmp_path) -> None:
    recipe = tmp_path / "small.yaml"
    recipe.write_text("apiVersion: skitflow/v1\nname: small\nsource:\n  csv: {path: data.csv}\n"
                      "steps:\n  - strip: {columns: [text]}\nsinks:\n  - file: {path: out.csv}\n")
    out = subprocess.run([sys.executable, "-c", VALIDATE_PROBE, str(recipe)], capture_output=True,
                         text=True, check=True)
    found = json.loads(out.stdout)
    assert found["tasks"] >= 1
    assert found["modules"] == ["skitflow.steps.sinks", "skitflow.steps.sources",
                                "skitflow.steps.transforms"]


def test_the_registry_lists_and_finds_every_builtin_without_importing_first() -> None:
    from skitflow.steps.registry import discover

    registry = discover()
    assert set(registry.names()) == {name for _, name in BUILTIN_MODULES}
    assert [e.kind for e in registry.find("s3")] == [Kind.SINK, Kind.SOURCE]
    assert registry.get("strip", Kind.TRANSFORM).package == "skitflow"
    assert registry.get("nope", Kind.TRANSFORM) is None
    assert len(list(registry)) == len(BUILTIN_MODULES)
