"""What a run looks like to the service's clients: JSON for `GET /runs/{id}`, text for Slack.

The Slack message for a finished run comes from the same builder as the recipe's `notify:`
(skitflow.util.notify), so the two cannot describe a run differently.

What the Kubeflow run API tells: the run's state, its tasks' states and the error. The gate
verdict is read from the tasks the gate guards (the sinks after an evaluator's gate): they ran
(passed) or were skipped (failed). Metric values are not in the run API: skitflow.serve.metrics
reads them from the evaluate tasks' output artifacts and hands them in here.
"""

from __future__ import annotations

from typing import Any

from skitflow.plan.planner import Plan
from skitflow.serve.metrics import MetricsResult
from skitflow.submit.reconcile import FINAL_STATES, progress_of

NOT_READ = MetricsResult(None, "the metrics were not read for this answer")


def gate_verdict(plan: Plan | None, tasks: dict[str, str]) -> str | None:
    """passed / failed from the gated tasks' states; None when the recipe has no gated task or
    the run has not got that far."""
    if plan is None:
        return None
    gated = [t.id for t in plan.tasks if t.condition is not None
             and t.condition.label.startswith("gate-")]
    states = [tasks[name] for name in gated if name in tasks]
    if any(state == "SUCCEEDED" for state in states):
        return "passed"
    if states and all(state == "SKIPPED" for state in states):
        return "failed"
    return None


def run_view(run: Any, link: str, plan: Plan | None,
             metrics: MetricsResult | None = None) -> dict[str, Any]:
    """The JSON answer of `GET /runs/{id}`; `metrics` (read once the run finished) is null with
    a note while it runs or when they could not be read."""
    task_ids = {t.id for t in plan.tasks} if plan is not None else set()
    progress = progress_of(run, task_ids, 0.0)
    tasks = dict(progress.tasks)
    finished = progress.state in FINAL_STATES
    return {
        "run_id": run.run_id,
        "name": run.display_name,
        "recipe": plan.name if plan is not None else recipe_of(run),
        "state": progress.state,
        "finished": finished,
        "link": link,
        "created_at": _time(run.created_at),
        "finished_at": _time(run.finished_at) if finished else None,
        "tasks": [{"name": name, "state": state} for name, state in progress.tasks],
        "failed_task": progress.failed_task,
        "error": progress.error,
        "gate": gate_verdict(plan, tasks) if finished else None,
        "metrics": (metrics or NOT_READ).metrics if finished else None,
        "metrics_note": (metrics or NOT_READ).note if finished else None,
    }


def recipe_of(run: Any) -> str | None:
    """The recipe named in a skitflow run's description (`skitflow recipe=NAME ...`)."""
    words = (getattr(run, "description", None) or "").split()
    if not words or words[0] != "skitflow":
        return None
    tags = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return tags.get("recipe")


def _time(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def outcome_payload(view: dict[str, Any]) -> dict[str, Any]:
    """The Slack message for a finished run, made by the same builder as the recipe's `notify:`
    (skitflow.util.notify): recipe, run, state, gate, failing task and error, link."""
    from skitflow.util.notify import RunReport, Target, slack_payload

    failure = None
    if view.get("failed_task") or view.get("error"):
        failure = {"task": view.get("failed_task"), "error": view.get("error") or ""}
    status = {"SUCCEEDED": "succeeded", "CANCELED": "interrupted"}.get(view["state"], "failed")
    report = RunReport(
        recipe=view.get("recipe") or "run", status=status, run_name=view.get("name") or "",
        run_id=view["run_id"], link=view["link"],
        gate=None if view.get("gate") is None else {"passed": view["gate"] == "passed"},
        failure=failure, notes=[f"Kubeflow state: {view['state']}"])
    return {"response_type": "in_channel", **slack_payload(report, Target(kind="slack", env=""))}


def started_text(recipe: str, run_id: str, link: str, params: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"
    return f"*{recipe}* started ({shown}): run {run_id}\n<{link}|open in Kubeflow>"
