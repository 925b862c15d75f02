"""A matrix recipe -> one Plan: every branch unrolled at compile time, with readable task names.

Why unrolled and not `dsl.ParallelFor` over a static list: the open-source Kubeflow backend runs
ParallelFor, but it does not fan in. `dsl.Collected` over a loop's outputs is refused or fails on
it (kubeflow/pipelines #3412, #6161, #10035: "KFP OSS BE does not yet support this"), and
`.after()` on a task inside a loop is not allowed (#10050). A `select:` needs every branch's
score in one task, and gated sinks need their own branch's gate, so each branch is laid out as its
own path: plain tasks and `dsl.If`s that every backend and kfp.local run. Task names carry the
branch's values (`train-xgboost-acme-en`), so the Kubeflow UI shows which branch is which. The
cost is a package that grows with the branches (linearly: benchmarks in /work/notes/matrix.md),
bounded by `skitflow.recipe.matrix.MAX_BRANCHES`. Only a dimension whose values are chosen at
submit time (a list parameter) is a ParallelFor, with no fan-in: see `planner._looped`.

With `select:` at the evaluator the branches must differ only in trainer settings: the data path
(source, steps, dataset sinks, split) is planned once, each branch trains and evaluates, and one
`select` task picks the best model by the metric; only the winner reaches the gate and the model
sinks, and the select task's metrics and report list every branch's score. A gate with `beat:`
holds for the winner as for a single model: the select task gets the test rows and the
evaluator, and scores the published model on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from skitflow.errors import Problem, RecipeError
from skitflow.plan.planner import Condition, Plan, Ref, Task, _Planner
from skitflow.recipe.loader import LoadedRecipe
from skitflow.recipe.models import Recipe, Select
from skitflow.steps.registry import Registry

#: recipe parts a `select:` sweep may vary across branches
SWEEPABLE = ("trainer", "matrix")
_MODEL_ROLES = ("model", "metrics", "report")


def build_matrix_plan(loaded: LoadedRecipe, registry: Registry) -> Plan:
    """Plan each branch, then lay them side by side (or share their data path, with `select:`)."""
    select = _select(loaded.branches[0][1])
    problems: list[Problem] = []
    plans: list[Plan] = []
    shared_ids: set[str] = set()
    for branch, recipe in loaded.branches:
        planner = _Planner(replace(loaded, recipe=recipe, branches=()), registry)
        planner.suffix = branch.label
        if select is None:
            planner.used_ids = shared_ids
        try:
            plans.append(planner.build())
        except RecipeError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
    if select is not None and not problems:
        problems.extend(_sweep_problems(loaded))
    if problems:
        raise RecipeError(problems=problems)
    if select is None:
        tasks = tuple(task for plan in plans for task in plan.tasks)
    else:
        base = _Planner(replace(loaded, branches=()), registry).build()
        tasks = _selected(base, plans, [b.label for b, _ in loaded.branches], select)
    digest = hashlib.sha256("".join(p.recipe_hash for p in plans).encode()).hexdigest()[:16]
    warnings = tuple(dict.fromkeys(w for plan in plans for w in plan.warnings))
    return replace(plans[0], tasks=tasks, recipe_hash=digest, warnings=warnings,
                   branches=len(plans))


def _select(recipe: Recipe) -> Select | None:
    raw = (recipe.evaluator or {}).get("select")
    return Select.model_validate(raw) if isinstance(raw, dict) else None


def _sweep_problems(loaded: LoadedRecipe) -> list[Problem]:
    """`select:` compares models trained on the same data: only trainer settings may vary."""
    first = _comparable(loaded.branches[0][1])
    differ: set[str] = set()
    for _, recipe in loaded.branches[1:]:
        other = _comparable(recipe)
        differ |= {key for key in first.keys() | other.keys() if first.get(key) != other.get(key)}
    if not differ:
        return []
    listed = ", ".join(f"`{k}`" for k in sorted(differ))
    return [loaded.source_map.problem(
        ("evaluator", "select"), f"`select:` picks among trainer settings, but the matrix branches "
        f"also differ in {listed}",
        "use `{{ matrix.NAME }}` only under `trainer:` with `select:`, or drop `select:` to publish "
        "one model per branch", key=True)]


def _comparable(recipe: Recipe) -> dict[str, Any]:
    data = recipe.model_dump(mode="json", by_alias=True, exclude=set(SWEEPABLE))
    return {k: repr(v) for k, v in data.items()}


def _selected(base: Plan, plans: list[Plan], labels: list[str], select: Select) -> tuple[Task, ...]:
    """The data path of `base` once, each branch's train and evaluate, one select, the sinks."""
    train = next(t for t in base.tasks if t.component == "train")
    evaluate = next(t for t in base.tasks if t.component == "evaluate")
    used = {t.id for t in base.tasks}
    shared = [t for t in base.tasks if t.component not in ("train", "evaluate")
              and t.role not in _MODEL_ROLES]
    swept: list[Task] = []
    for plan in plans:
        ids = {mine.id: theirs.id for mine, theirs in zip(plan.tasks, base.tasks, strict=True)}
        own = {t.id for t in plan.tasks if t.component in ("train", "evaluate")}
        for task in plan.tasks:
            if task.id in own:
                rewired = {name: tuple(r if r.task in own else Ref(ids[r.task], r.output) for r in refs)
                           for name, refs in task.inputs.items()}
                swept.append(replace(task, inputs=rewired, gate=None, guard=train.guard))
                used.add(task.id)
    select_id, n = f"select-{select.metric}".replace("_", "-"), 2
    while select_id in used:
        select_id, n = f"select-{select.metric}-{n}".replace("_", "-"), n + 1
    trains = [t for t in swept if t.component == "train"]
    evaluates = [t for t in swept if t.component == "evaluate"]
    inputs: dict[str, tuple[Ref, ...]] = {}
    for index, (trained, evaluated) in enumerate(zip(trains, evaluates, strict=True)):
        inputs[f"model_{index}"] = (Ref(trained.id, "model"),)
        inputs[f"metrics_{index}"] = (Ref(evaluated.id, "metrics"),)
    calls: tuple = ()
    if evaluate.gate is not None and evaluate.gate.beat is not None:
        # `beat:`: the winner must beat the published model, scored on the same test rows by the
        # same evaluator, exactly as a single-model recipe's evaluate task does
        calls = evaluate.calls
        inputs["test"] = evaluate.inputs["test"]
    chooser = Task(id=select_id, component="select", calls=calls, inputs=inputs,
                   options=evaluate.options, gate=evaluate.gate, guard=train.guard,
                   select={"metric": select.metric, "mode": select.mode, "branches": labels})
    sinks = []
    for task in base.tasks:
        if task.role in _MODEL_ROLES:
            condition = task.condition
            if condition is not None and condition.ref is not None and condition.ref.task == evaluate.id:
                condition = Condition(condition.label, condition.op, condition.value,
                                      ref=Ref(select_id, condition.ref.output))
            sinks.append(replace(task, inputs={"data": (Ref(select_id, task.role or "model"),)},
                                 condition=condition))
    return (*shared, *swept, chooser, *sinks)
