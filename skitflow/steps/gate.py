"""The gate: whether a trained model may be published, and why.

A gate compares one evaluator metric with its bounds (`min` for a score, `max` for an error)
and, with `beat:`, with the same metric of the currently published model (the champion)
scored on the same test set: the new model (the challenger) passes only when it is better by
at least `by`, in the metric's direction. When nothing is published yet, the bounds alone
decide, and the reason says so. A metric that is not a number never passes.

Pure: the runtime scores the champion and hands its metrics in; the planner uses
:func:`metric_direction` and :func:`bound_problem` to refuse unsafe gates at `validate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from skitflow.steps.base import Direction

#: Directions of well-known metric names, for evaluators that declare none (plugins).
KNOWN_DIRECTIONS: dict[str, Direction] = {
    "accuracy": "higher", "balanced_accuracy": "higher", "roc_auc": "higher",
    "average_precision": "higher", "r2": "higher", "explained_variance": "higher",
    "rmse": "lower", "mse": "lower", "mae": "lower", "mape": "lower", "log_loss": "lower",
    "brier": "lower", "error_rate": "lower",
}
_HIGHER_PREFIXES = ("f1_", "precision_", "recall_", "roc_auc_")


def metric_direction(metric: str, declared: Mapping[str, Direction]) -> Direction | None:
    """The evaluator's own declaration first, then the well-known names; None when unknown."""
    if metric in declared:
        return declared[metric]
    if metric in KNOWN_DIRECTIONS:
        return KNOWN_DIRECTIONS[metric]
    if metric.startswith(_HIGHER_PREFIXES) or metric in ("f1", "precision", "recall"):
        return "higher"
    return None


def bound_problem(metric: str, direction: Direction, bound: str) -> tuple[str, str] | None:
    """(message, hint) when `bound` ("min" or "max") cannot guard a `direction` metric."""
    if bound == "min" and direction == "lower":
        return (f"`min` on `{metric}` lets the worst models through: lower `{metric}` is better",
                f"write `max:` to refuse models whose `{metric}` is too high")
    if bound == "max" and direction == "higher":
        return (f"`max` on `{metric}` lets the worst models through: higher `{metric}` is better",
                f"write `min:` to refuse models whose `{metric}` is too low")
    return None


@dataclass(frozen=True)
class Verdict:
    """What the gate decided, with the numbers behind it (summary.json, metrics.json, report)."""

    metric: str
    direction: Direction | None
    score: float
    passed: bool
    reason: str
    min: float | None = None
    max: float | None = None
    beat: str | None = None
    by: float = 0.0
    #: "scored" (a published model was scored), "none yet" (nothing published), None (no beat)
    champion: str | None = None
    champion_score: float | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def decide(
    metric: str,
    direction: Direction | None,
    scalars: Mapping[str, float],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    beat: str | None = None,
    by: float = 0.0,
    champion: Mapping[str, float] | None = None,
) -> Verdict:
    """The gate's verdict for a model with metrics `scalars`.

    `champion` is the published model's metrics on the same test set, or None when `beat`
    names nothing yet (or no `beat` is given).
    """
    score = float(scalars[metric])
    reasons: list[str] = []
    passed = True
    if math.isnan(score):
        passed = False
        reasons.append(f"{metric} is not a number")
    if minimum is not None and not score >= minimum:
        passed = False
        reasons.append(f"{metric} {score:.4f} is below the minimum {minimum:g}")
    if maximum is not None and not score <= maximum:
        passed = False
        reasons.append(f"{metric} {score:.4f} is above the maximum {maximum:g}")
    bounds = " and ".join(
        f"{'>=' if name == 'min' else '<='} {value:g}"
        for name, value in (("min", minimum), ("max", maximum)) if value is not None
    )
    if passed and bounds:
        reasons.append(f"{metric} {score:.4f} meets {bounds}")

    state, champion_score, champion_metrics = None, None, {}
    if beat is not None:
        if champion is None:
            state = "none yet"
            decides = "the threshold alone decides" if bounds else "there is no threshold"
            reasons.insert(0, f"no published model at {beat} yet: {decides}")
        else:
            state = "scored"
            champion_metrics = {k: float(v) for k, v in champion.items()}
            champion_score = champion_metrics.get(metric, math.nan)
            better = _improvement(score, champion_score, direction)
            if math.isnan(champion_score):
                passed = False
                reasons.append(f"the published model's {metric} is not a number, so the new "
                               "model cannot be shown to be better")
            elif better < by or math.isnan(better):
                passed = False
                way = "higher" if direction == "higher" else "lower"
                reasons.append(
                    f"{metric} {score:.4f} does not beat the published model's "
                    f"{champion_score:.4f} by at least {by:g} ({way} is better; difference "
                    f"{better:+.4f})")
            else:
                reasons.append(f"{metric} {score:.4f} beats the published model's "
                               f"{champion_score:.4f} by {better:+.4f} (at least {by:g})")
    if not reasons:
        reasons.append(f"{metric} {score:.4f}: the gate sets no bound")
    return Verdict(metric, direction, score, passed, "; ".join(reasons), minimum, maximum, beat,
                   by, state, champion_score, champion_metrics)


def _improvement(score: float, champion: float, direction: Direction | None) -> float:
    """How much better the new score is than the champion's (positive: better)."""
    return champion - score if direction == "lower" else score - champion
