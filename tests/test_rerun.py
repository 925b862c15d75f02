"""Rerun only what changed: real `skitflow run`s of examples/tickets.yaml with the cache on.

A task's cache key (kfp.local's: component name, image, command with the embedded source, the
input values and artifacts; Kubeflow's the same, artifacts by their MLMD name) is made of its
inputs, so the task spec holds only what the task's result depends on (build.task_spec): a step's
place in the recipe (`steps[3]`) instead of its line, no recipe hash.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.test_run import REPO, skitflow

pytestmark = pytest.mark.slow
TASKS = ("csv-to-drop-columns", "file-dataset", "split-train-test", "train-xgboost",
         "evaluate-classification", "file-model")
#: Sinks write outside the run, so they are never cached (Step.cacheable): they run every time.
SINKS = {"file-dataset", "file-model"}


def _run(recipe: Path, tmp: Path, name: str) -> tuple[dict[str, str], float]:
    started = time.perf_counter()
    result = skitflow("run", recipe, "--out", tmp / name, "--cache-dir", tmp / "cache",
                      "-p", f"out_dir={tmp / 'published'}")
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp / name / "summary.json").read_text())
    return {task: entry["status"] for task, entry in summary["tasks"].items()}, seconds


def _edit(recipe: Path, old: str, new: str) -> None:
    text = recipe.read_text()
    assert old in text, old
    recipe.write_text(text.replace(old, new, 1))


def test_an_edit_reruns_only_the_tasks_that_depend_on_it(tmp_path: Path) -> None:
    data = tmp_path / "tickets.csv"
    shutil.copy(REPO / "examples" / "data" / "tickets.csv", data)
    recipe = tmp_path / "tickets.yaml"
    recipe.write_text((REPO / "examples" / "tickets.yaml").read_text()
                      .replace("path: examples/data/tickets.csv", f"path: {data}"))
    first, _ = _run(recipe, tmp_path, "first")
    assert set(first.values()) == {"succeeded"}, first

    def rerun_after(name: str, edit) -> set[str]:
        edit()
        statuses, seconds = _run(recipe, tmp_path, name)
        ran = {task for task, status in statuses.items() if status == "succeeded"}
        assert ran | {t for t, s in statuses.items() if s == "cached"} == set(TASKS), statuses
        table.append((name, sorted(ran), round(seconds, 1)))
        return ran

    table: list[tuple[str, list[str], float]] = []
    # the description shifts every line below it, too
    assert rerun_after("description", lambda: _edit(
        recipe, "description: Route support tickets", "description: |\n  Route\n  support tickets")) == SINKS
    assert rerun_after("a sink", lambda: _edit(
        recipe, '/dataset.parquet", format: parquet}', '/tickets.parquet", format: parquet}')) == SINKS
    assert rerun_after("the evaluator", lambda: _edit(
        recipe, 'min: "{{ params.min_f1 }}"', "min: 0.6")) == SINKS | {"evaluate-classification"}
    assert rerun_after("a step setting", lambda: _edit(
        recipe, "strip: {columns: [subject]}", "strip: {columns: [subject, label]}")) == set(TASKS)
    assert rerun_after("the source data", lambda: data.write_text(
        data.read_text().replace("\n", "\n", 1) + data.read_text().splitlines()[1] + "\n")) == set(TASKS)
    print(json.dumps(table))
