"""Checks of an evaluator's `gate:` at validate time, so an unsafe gate never runs.

A gate must name a metric its evaluator computes (with a did-you-mean), bound it the way that
guards it (`min` for a score, `max` for an error: see :mod:`skitflow.steps.gate`), and decide
something: a gate with neither a bound nor `beat:` would pass every model.
"""

from __future__ import annotations

from skitflow.errors import Problem, did_you_mean
from skitflow.recipe.models import Gate
from skitflow.recipe.sourcemap import SourceMap
from skitflow.recipe.templating import ParamRef, referenced_run_names
from skitflow.steps.base import Step
from skitflow.steps.gate import bound_problem, metric_direction

_PATH = ("evaluator", "gate")


def gate_problems(gate: Gate, evaluator: Step, source_map: SourceMap) -> list[Problem]:
    """Every reason this gate could let a worse model through, each at its recipe line."""
    problems: list[Problem] = []
    declared = dict(getattr(evaluator, "metrics", None) or {})
    metric = gate.metric
    if declared and metric not in declared:
        hint = did_you_mean(metric, declared) or (
            f"`{evaluator.name}` computes: {', '.join(sorted(declared))}")
        problems.append(source_map.problem(
            (*_PATH, "metric"), f"the `{evaluator.name}` evaluator computes no metric `{metric}`",
            hint))
        return problems
    direction = metric_direction(metric, declared)
    for bound in ("min", "max"):
        if getattr(gate, bound) is not None and direction is not None:
            found = bound_problem(metric, direction, bound)
            if found:
                problems.append(source_map.problem((*_PATH, bound), found[0], found[1], key=True))
    if gate.min is None and gate.max is None and gate.beat is None:
        way = "max" if direction == "lower" else "min"
        problems.append(source_map.problem(
            _PATH, f"the gate on `{metric}` has no threshold, so every model would pass",
            f"add `{way}: <value>`, or `beat: <published model>` to publish only better models",
            key=True))
    if isinstance(gate.beat, str) and not gate.beat.strip():
        problems.append(source_map.problem((*_PATH, "beat"), "`beat:` is empty",
                                           "name the published model bundle: a path or s3:// URI",
                                           key=True))
    elif gate.beat is not None:
        if direction is None:
            problems.append(source_map.problem(
                (*_PATH, "beat"), f"`beat:` needs to know whether a higher or lower `{metric}` is "
                "better, and the evaluator does not say",
                f"declare `metrics = {{'{metric}': 'higher'}}` (or 'lower') on `{evaluator.name}`",
                key=True))
        if referenced_run_names(gate.beat):
            problems.append(source_map.problem(
                (*_PATH, "beat"), "`beat:` names the model published by earlier runs, so it cannot "
                "use `run.*`", "name the path the model sink writes, without the run's id or date",
                key=True))
    elif gate.by != 0.0:
        problems.append(source_map.problem(
            (*_PATH, "by"), "`by:` without `beat:` has nothing to be better than",
            "add `beat: <path or s3:// URI of the published model>`", key=True))
    if not isinstance(gate.by, ParamRef) and gate.by < 0:
        problems.append(source_map.problem(
            (*_PATH, "by"), f"`by: {gate.by:g}` would publish a model worse than the published one",
            "use 0 (at least as good) or a positive margin"))
    return problems
