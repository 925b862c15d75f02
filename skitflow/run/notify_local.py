"""Notifications at the end of `skitflow run`: the CLI knows everything the run did.

The package's exit task (`notify`) also runs under kfp.local; it sees LOCAL_RUN_ENV, which the
local runner sets for its tasks, and leaves sending to this module, so a local run notifies once
and with its metrics and gate verdict (which the exit task on Kubeflow cannot know).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from skitflow.plan.planner import Plan
from skitflow.run.local import RunResult
from skitflow.util.notify import Delivery, RunReport, Target, deliver
from skitflow.util.redact import redact


def local_report(plan: Plan, result: RunResult) -> RunReport:
    """The run as a notification sees it: identity and metrics from summary.json, the gate's
    verdict with its bounds from the evaluation's metrics.json, the first failure with the last
    lines its task printed."""
    summary = _read_json(result.out_dir / "summary.json")
    identity = summary.get("run") or {}
    gate = None
    if result.gate is not None:
        metrics_file = result.tasks[result.gate["task"]].artifacts.get("metrics", "")
        verdict = _read_json(metrics_file).get("gate") if metrics_file else None
        gate = {"passed": bool(result.gate["passed"]), "score": result.gate.get("score"),
                **({k: verdict.get(k) for k in ("metric", "min", "max")} if verdict else {})}
    failure = None
    if result.failure is not None:
        first = result.failure
        task = result.tasks.get(first.get("task") or "")
        failure = {"task": first.get("task"), "step": first.get("step"),
                   "location": first.get("location"), "error": redact(str(first.get("error") or "")),
                   "log": [redact(line) for line in (task.messages[-8:] if task else [])]}
    return RunReport(recipe=plan.name, status=result.status, run_name=identity.get("name", ""),
                     run_id=identity.get("id", ""), link=str(result.out_dir.resolve()),
                     seconds=result.seconds, metrics=dict(result.metrics), gate=gate, failure=failure,
                     notes=list(result.notes))  # "no rows: nothing to train"


def notify_run(plan: Plan, result: RunResult, *, environ: Mapping[str, str],
               log: Callable[[str], None]) -> list[Delivery]:
    """Send the recipe's notifications for a finished local run; never raises."""
    if not plan.notify:
        return []
    try:
        report = local_report(plan, result)
    except Exception as exc:  # a summary we cannot read must not change the run's exit code
        log(redact(f"notify: notifications not sent: {type(exc).__name__}: {exc}"))
        return []
    return deliver(report, [Target.from_dict(entry.to_target()) for entry in plan.notify],
                   environ=environ, log=log)


def _read_json(path: Any) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
