"""Simulated run lifecycles and recurring-run validation.

No pipeline ever executes: a run advances one step per ``GET /runs/{id}``
(PENDING at creation, RUNNING, then its final state after ``polls_to_finish``
polls). ``run_details.task_details`` is filled the way the persistence agent and
the API server fill it from the Argo workflow of a KFP v2 run
(``toModelTasks``/``toApiPipelineTaskDetail`` in ``backend/src/apiserver/server/
api_converter.go``): one task per workflow node, so besides each pipeline task
there are the workflow's entry node, ``root-driver`` and the ``root`` DAG, a
``<task>-driver`` pod before every task, the ``<task>`` executor node with its
``executor`` pod (``system-container-executor``/``-impl``), and a sub-DAG with
its ``<name>-driver`` for every condition (``condition-1``, ``condition-branches-1``).
Each node carries its state, ``pod_name``, ``child_tasks`` (pod names) and
``parent_task_id`` (the enclosing DAG's node). Container tasks "start" and
"finish" in dependency order as the run is polled; in an if/elif/else group the
first branch runs and the others are SKIPPED. Outcomes other than SUCCEEDED are
scripted with :class:`RunScript`.

A task detail's ``outputs`` (``map<string, ArtifactList>``, ``ArtifactList.artifact_ids`` int64
ML Metadata IDs, written as strings by protojson) is empty by default, as the 2.5 API server
leaves it for tasks converted from Argo nodes (``toModelTask``'s ``util.NodeStatus`` case has
"TODO: parse input and output artifacts"); a test that wants a backend which records outputs
adds them with ``ServerState.add_output_artifact`` and they appear on the task once it succeeded.
"""

from __future__ import annotations

import re
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from .common import ApiError, now, public
from .specs import TaskNode

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
    tree: tuple[TaskNode, ...]
    polls_to_finish: int
    workflow: str = "pipeline"
    final_state: str = "SUCCEEDED"
    failing_task: str | None = None
    message: str = ""
    polls: int = 0
    canceled: bool = False
    state: str = ""
    task_times: dict[tuple[tuple[str, ...], str], str] = field(default_factory=dict)
    #: output artifact IDs by task key and output name (ServerState.add_output_artifact)
    outputs: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        resource: dict[str, Any],
        tree: tuple[TaskNode, ...],
        polls_to_finish: int,
        script: RunScript | None,
        pipeline_name: str = "pipeline",
    ) -> SimulatedRun:
        """A new run; a matching script decides its outcome (default: SUCCEEDED)."""
        # Argo names the workflow `<pipeline name>-<5 random characters>`.
        workflow = f"{pipeline_name or 'pipeline'}-{resource['run_id'].replace('-', '')[:5]}"
        run = cls(resource, tuple(tree), polls_to_finish, workflow)
        if script is not None:
            script.used += 1
            run.final_state = script.final_state
            run.message = script.message
            run.polls_to_finish = script.polls or polls_to_finish
            if script.final_state == "FAILED":
                run.failing_task = run._resolve_failing_task(script.failing_task)
        return run

    @property
    def tasks(self) -> list[tuple[str, str]]:
        """The container tasks that run, in order, as (key, display name)."""
        return [(node.key, node.key) for node in _running_leaves(self.tree)]

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
        """Find the failing container task by key (default: the last); add it if absent."""
        leaves = _running_leaves(self.tree)
        if wanted is None:
            if not leaves:
                self.tree = (*self.tree, TaskNode("root-task"))
                return "root-task"
            return leaves[-1].key
        if any(leaf.key == wanted for leaf in leaves):
            return wanted
        self.tree = (*self.tree, TaskNode(wanted))
        return wanted

    def _current_state(self) -> str:
        if self.canceled:
            return "CANCELED"
        if self.polls == 0:
            return "PENDING"
        if self.polls < self.polls_to_finish:
            return "RUNNING"
        return self.final_state

    def _leaf_states(self, state: str) -> dict[str, str]:
        """The state of each container task that has started; unstarted ones are absent."""
        keys = [key for key, _ in self.tasks]
        total = len(keys)
        failing_index = keys.index(self.failing_task) if self.failing_task in keys else total
        if state == "PENDING" or total == 0:
            return {}
        if state in ("SUCCEEDED", "SKIPPED"):
            states = [state] * total
        elif state == "FAILED":
            states = ["SUCCEEDED"] * failing_index + ["FAILED"]
        else:
            done = min(self.polls * total // self.polls_to_finish, total - 1, failing_index)
            states = ["SUCCEEDED"] * done + ["CANCELED" if state == "CANCELED" else "RUNNING"]
        return dict(zip(keys, states, strict=False))

    def _task_details(self, state: str) -> list[dict[str, Any]]:
        """One task detail per workflow node that exists at this poll, sorted by node ID.

        The API server sorts the workflow's node IDs before converting them, so the order
        says nothing about the order tasks ran in: clients must not rely on it.
        """
        leaf_states = self._leaf_states(state)
        if not leaf_states:
            return []
        nodes: list[dict[str, Any]] = []
        root_state = "FAILED" if state == "FAILED" else None
        entry = self._node(nodes, (), self.workflow, "DAG", "", root_state)
        driver = self._node(nodes, ("root-driver",), "root-driver", "system-dag-driver",
                            entry["task_id"], "SUCCEEDED")
        root = self._node(nodes, ("root",), "root", "DAG", entry["task_id"], root_state)
        entry["children"] = [driver["pod_name"]]
        driver["children"] = [root["pod_name"]]
        root["children"], root["state"] = self._dag(nodes, ("root",), self.tree, root, leaf_states)
        entry["state"] = entry["state"] or root["state"]
        nodes.sort(key=lambda n: n["node_id"])
        return [self._detail(node) for node in nodes]

    def _dag(self, nodes: list[dict[str, Any]], path: tuple[str, ...], children: tuple[TaskNode, ...],
             parent: dict[str, Any], leaf_states: dict[str, str]) -> tuple[list[str], str]:
        """Add the nodes of a DAG's started tasks; return their driver pods and the DAG's state."""
        pods: list[str] = []
        states: list[str] = []
        group = path[-1].startswith("condition-branches-")
        first_started = False
        for index, child in enumerate(children):
            started = any(leaf.key in leaf_states for leaf in child.leaves())
            first_started = first_started or (index == 0 and started)
            branch_skipped = group and index > 0  # its driver found the condition false
            if not started and not (branch_skipped and first_started):
                states.append("PENDING")
                continue
            child_path = (*path, child.key)
            driver = self._node(nodes, (*child_path, "driver"), f"{child.key}-driver",
                                "system-dag-driver" if child.dag else "system-container-driver",
                                parent["task_id"], "SUCCEEDED")
            template = "DAG" if child.dag else "system-container-executor"
            if branch_skipped:
                node = self._node(nodes, child_path, child.key, template, parent["task_id"], "SKIPPED")
            elif child.dag:
                node = self._node(nodes, child_path, child.key, "DAG", parent["task_id"], None)
                node["children"], node["state"] = self._dag(nodes, child_path, child.children, node,
                                                            leaf_states)
            else:
                node = self._node(nodes, child_path, child.key, template, parent["task_id"],
                                  leaf_states[child.key], failed=leaf_states[child.key] == "FAILED")
                node["outputs"] = self.outputs.get(child.key, {})
                pod = self._node(nodes, (*child_path, "executor"), "executor", "system-container-impl",
                                 node["task_id"], node["state"], failed=node["failed"])
                node["children"] = [pod["pod_name"]]
            driver["children"] = [node["pod_name"]]
            pods.append(driver["pod_name"])
            states.append(node["state"])
        return pods, _dag_state(states)

    def _node(self, nodes: list[dict[str, Any]], path: tuple[str, ...], display_name: str,
              template: str, parent_task_id: str, state: str | None, *, failed: bool = False
              ) -> dict[str, Any]:
        run_id = self.resource["run_id"]
        digest = zlib.crc32("/".join((run_id, *path)).encode())
        node_id = f"{self.workflow}-{digest}"
        node = {
            "node_id": node_id,
            # Pods are named `<workflow>-<template>-<hash>` (Argo POD_NAMES v2); other nodes by ID.
            "pod_name": node_id if template == "DAG" else f"{self.workflow}-{template}-{digest}",
            "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{'/'.join(path)}")),
            "display_name": display_name,
            "parent_task_id": parent_task_id,
            "state": state,
            "children": [],
            "path": path,
            "failed": failed,
        }
        nodes.append(node)
        return node

    def _detail(self, node: dict[str, Any]) -> dict[str, Any]:
        state, path = node["state"], node["path"]
        started = self.task_times.setdefault((path, "start"), now())
        detail: dict[str, Any] = {
            "run_id": self.resource["run_id"],
            "task_id": node["task_id"],
            "display_name": node["display_name"],
            "create_time": started,
            "start_time": started,
            "state": state,
            "pod_name": node["pod_name"],
            "parent_task_id": node["parent_task_id"],
            "child_tasks": [{"pod_name": pod} for pod in node["children"]],
            "state_history": [{"update_time": started, "state": "RUNNING"}],
        }
        if state == "SKIPPED":
            detail["state_history"] = [{"update_time": started, "state": "SKIPPED"}]
        elif state in FINAL_RUN_STATES:
            ended = self.task_times.setdefault((path, "end"), now())
            detail["end_time"] = ended
            detail["state_history"].append({"update_time": ended, "state": state})
        if node.get("outputs") and state == "SUCCEEDED":
            # PipelineTaskDetail.outputs: map<string, ArtifactList{repeated int64 artifact_ids}>
            detail["outputs"] = {name: {"artifact_ids": list(ids)}
                                 for name, ids in node["outputs"].items()}
        if node["failed"]:
            detail["error"] = {"code": 2, "message": self.message}
        return public(detail)


def _running_leaves(tree: tuple[TaskNode, ...]) -> list[TaskNode]:
    """The container tasks that run: every one, except in the later branches of an if/else group."""
    found: list[TaskNode] = []
    for node in tree:
        if not node.dag:
            found.append(node)
        elif node.key.startswith("condition-branches-"):
            found.extend(_running_leaves(node.children[:1]))
        else:
            found.extend(_running_leaves(node.children))
    return found


def _dag_state(states: list[str]) -> str:
    """A DAG node's state from its tasks' states (PENDING: not started yet)."""
    for wanted in ("FAILED", "CANCELED"):
        if wanted in states:
            return wanted
    if "RUNNING" in states or "PENDING" in states:
        return "RUNNING"
    return "SUCCEEDED"


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
