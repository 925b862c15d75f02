"""Simulated run lifecycles and recurring-run validation.

No pipeline ever executes: a run advances one step per ``GET /runs/{id}``
(PENDING at creation, RUNNING, then its final state after ``polls_to_finish``
polls), and ``run_details.task_details`` reports the root DAG's tasks in
dependency order as they "start" and "finish", so a client can show per-task
progress.  Outcomes other than SUCCEEDED are scripted with :class:`RunScript`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .common import ApiError, now, public

FINAL_RUN_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
DEFAULT_FAILURE_MESSAGE = "failed to execute component: exit status 1"
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,\-#LW]+$")


@dataclass
class RunScript:
    """A scripted outcome for runs created after it was added (first match wins).

    A run matches when its display name contains ``matching`` and, if given,
    ``pipeline_name`` equals the spec's ``pipelineInfo.name`` or the name of the
    referenced pipeline.  ``times`` limits how many runs it applies to.
    """

    matching: str = ""
    pipeline_name: str | None = None
    final_state: str = "FAILED"
    failing_task: str | None = None
    polls: int | None = None
    message: str = DEFAULT_FAILURE_MESSAGE
    times: int | None = None
    used: int = 0

    def matches(self, display_name: str, pipeline_names: set[str]) -> bool:
        """Whether a new run gets this outcome."""
        if self.times is not None and self.used >= self.times:
            return False
        if self.matching not in display_name:
            return False
        return self.pipeline_name is None or self.pipeline_name in pipeline_names


@dataclass
class SimulatedRun:
    """A run resource plus the bookkeeping that drives its simulated state."""

    resource: dict[str, Any]
    tasks: list[tuple[str, str]]
    polls_to_finish: int
    final_state: str = "SUCCEEDED"
    failing_task: str | None = None
    message: str = ""
    polls: int = 0
    canceled: bool = False
    state: str = ""
    task_times: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        resource: dict[str, Any],
        tasks: list[tuple[str, str]],
        polls_to_finish: int,
        script: RunScript | None,
    ) -> SimulatedRun:
        """A new run; a matching script decides its outcome (default: SUCCEEDED)."""
        run = cls(resource, list(tasks), polls_to_finish)
        if script is not None:
            script.used += 1
            run.final_state = script.final_state
            run.message = script.message
            run.polls_to_finish = script.polls or polls_to_finish
            if script.final_state == "FAILED":
                run.failing_task = run._resolve_failing_task(script.failing_task)
        return run

    @property
    def finished(self) -> bool:
        return self.state in FINAL_RUN_STATES

    def poll(self) -> None:
        """Count one ``GET`` poll (finished runs no longer move)."""
        if not self.finished:
            self.polls += 1

    def retry(self) -> None:
        """``:retry`` of a failed or canceled run: it starts over and succeeds."""
        if self.state not in ("FAILED", "CANCELED"):
            raise ApiError(
                400,
                f"Failed to retry run {self.resource['run_id']}: run is in state {self.state}",
            )
        self.polls, self.canceled, self.final_state, self.failing_task = 0, False, "SUCCEEDED", None
        self.resource["finished_at"] = ""
        self.state = ""
        self.task_times.clear()

    def render(self) -> dict[str, Any]:
        """Bring the simulated state up to date and return the API view of the run."""
        state = self._current_state()
        timestamp = now()
        if state != self.state:
            self.state = state
            self.resource.setdefault("state_history", []).append(
                {"update_time": timestamp, "state": state}
            )
            if state in FINAL_RUN_STATES:
                self.resource["finished_at"] = timestamp
        self.resource["state"] = state
        failing_name = next(
            (name for key, name in self.tasks if key == self.failing_task), self.failing_task
        )
        self.resource["error"] = (
            {"code": 2, "message": f"task {failing_name} failed: {self.message}"}
            if state == "FAILED" and self.failing_task
            else None
        )
        self.resource["run_details"] = {"task_details": self._task_details(state)}
        return public(self.resource)

    def _resolve_failing_task(self, wanted: str | None) -> str:
        """Find the failing task by key or display name (default: last); add it if absent."""
        if wanted is None:
            if not self.tasks:
                self.tasks.append(("root", "root"))
            return self.tasks[-1][0]
        for key, display_name in self.tasks:
            if wanted in (key, display_name):
                return key
        self.tasks.append((wanted, wanted))
        return wanted

    def _current_state(self) -> str:
        if self.canceled:
            return "CANCELED"
        if self.polls == 0:
            return "PENDING"
        if self.polls < self.polls_to_finish:
            return "RUNNING"
        return self.final_state

    def _task_details(self, state: str) -> list[dict[str, Any]]:
        """Finished tasks, then the running/failed/canceled one; unstarted tasks are absent (as in KFP)."""
        total = len(self.tasks)
        failing_index = next(
            (i for i, (key, _) in enumerate(self.tasks) if key == self.failing_task), total
        )
        if state == "PENDING" or total == 0:
            return []
        if state in ("SUCCEEDED", "SKIPPED"):
            states = [state] * total
        elif state == "FAILED":
            states = ["SUCCEEDED"] * failing_index + ["FAILED"]
        else:
            done = min(self.polls * total // self.polls_to_finish, total - 1, failing_index)
            states = ["SUCCEEDED"] * done + ["CANCELED" if state == "CANCELED" else "RUNNING"]
        run_id = self.resource["run_id"]
        details = []
        for (key, display_name), task_state in zip(self.tasks, states, strict=False):
            started = self.task_times.setdefault((key, "start"), now())
            detail: dict[str, Any] = {
                "run_id": run_id,
                "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{key}")),
                "display_name": display_name,
                "create_time": started,
                "start_time": started,
                "state": task_state,
                "pod_name": f"{key}-{run_id[:8]}",
                "state_history": [{"update_time": started, "state": "RUNNING"}],
            }
            if task_state in FINAL_RUN_STATES:
                ended = self.task_times.setdefault((key, "end"), now())
                detail["end_time"] = ended
                detail["state_history"].append({"update_time": ended, "state": task_state})
            if task_state == "FAILED":
                detail["error"] = {"code": 2, "message": self.message}
            details.append(detail)
        return details


def validated_trigger(trigger: dict[str, Any]) -> dict[str, Any]:
    """Exactly one of a cron (5/6 fields or @descriptor) or a positive interval."""
    cron_schedule = trigger.get("cron_schedule") or {}
    periodic = trigger.get("periodic_schedule") or {}
    cron: str = cron_schedule.get("cron") or ""
    interval: Any = periodic.get("interval_second")
    if bool(cron) == bool(interval):
        raise ApiError(
            400,
            "Invalid input error: a recurring run needs exactly one of cron_schedule.cron "
            "or periodic_schedule.interval_second",
        )
    if cron:
        fields = cron.split()
        valid = cron.startswith("@") or (
            len(fields) in (5, 6) and all(_CRON_FIELD.match(f) for f in fields)
        )
        if not valid:
            raise ApiError(400, f"Invalid input error: invalid cron expression {cron!r}")
        return {"cron_schedule": public({**cron_schedule, "cron": cron})}
    try:
        seconds = int(interval)
    except (TypeError, ValueError) as error:
        raise ApiError(400, f"Invalid input error: invalid interval_second {interval!r}") from error
    if seconds <= 0:
        raise ApiError(400, "Invalid input error: interval_second must be positive")
    # int64 fields travel as JSON strings in protojson.
    return {"periodic_schedule": public({**periodic, "interval_second": str(seconds)})}


def validated_max_concurrency(raw: Any) -> int:
    """The backend allows 1..10 concurrent runs per recurring run."""
    try:
        value = 1 if raw in (None, "") else int(raw)
    except (TypeError, ValueError) as error:
        raise ApiError(400, f"Invalid input error: invalid max_concurrency {raw!r}") from error
    if not 1 <= value <= 10:
        raise ApiError(
            400,
            "Invalid input error: max concurrency of a recurring run should be between 1 and 10",
        )
    return value
