"""`skitflow run`: execute the compiled package on this machine with kfp's local runner.

The package that runs is the very file `skitflow compile` writes (loaded back with
`kfp.components.load_component_from_file`), so what runs here is what Kubeflow would run. kfp.local
prints its progress and the tasks' output; we read that stream to drive a live display, keep the
whole log in the run folder, and turn a task failure into one readable message.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skitflow.compile.build import Package
from skitflow.compile.emit import write_atomically
from skitflow.errors import Location, StepFailed
from skitflow.run import kfp_local_fixes
from skitflow.run.parity import parity_lines
from skitflow.run.runtime import FAILURE_MARKER

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTING = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"Task (\S+) cache hit")
_SKIPPED = re.compile(r"Skipping (?:conditional )?task '?([\w-]+)'?")
_TASK_LINE = re.compile(r"^\s*\[([\w-]+)\] (.*)$")


@dataclass
class TaskState:
    id: str
    status: str = "pending"  # pending | running | succeeded | failed | cached | skipped
    started: float | None = None
    seconds: float | None = None
    messages: list[str] = field(default_factory=list)
    rows: int | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    recipe: str
    out_dir: Path
    run_dir: Path | None
    tasks: dict[str, TaskState]
    seconds: float
    failure: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None and all(t.status != "failed" for t in self.tasks.values())


Listener = Callable[[TaskState], None]


class _LogStream(io.TextIOBase):
    """Receives kfp.local's stdout: keeps it in run.log and turns lines into task events."""

    def __init__(self, log_file: io.TextIOBase, on_line: Callable[[str], None]) -> None:
        self._log = log_file
        self._on_line = on_line
        self._buffer = ""

    def write(self, text: str) -> int:
        self._log.write(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._on_line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def writable(self) -> bool:
        return True


class _Tracker:
    """Task states from the lines kfp.local and the skitflow runtime print."""

    def __init__(self, package: Package, listener: Listener | None) -> None:
        self.tasks = {task.id: TaskState(task.id) for task in package.plan.tasks}
        self.listener = listener
        self.failure: dict[str, Any] | None = None

    def _update(self, task_id: str, **changes: Any) -> None:
        state = self.tasks.setdefault(task_id, TaskState(task_id))
        for key, value in changes.items():
            setattr(state, key, value)
        if self.listener:
            self.listener(state)

    def line(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith(FAILURE_MARKER):
            with contextlib.suppress(ValueError):
                self.failure = self.failure or json.loads(stripped[len(FAILURE_MARKER):])
            return
        if match := _EXECUTING.search(line):
            self._update(match.group(1), status="running", started=time.monotonic())
        elif match := _FINISHED.search(line):
            state = self.tasks.get(match.group(1))
            seconds = time.monotonic() - state.started if state and state.started else None
            status = "succeeded" if match.group(2) == "SUCCESS" else "failed"
            self._update(match.group(1), status=status, seconds=seconds)
        elif match := _CACHED.search(line):
            self._update(match.group(1).strip("'"), status="cached", seconds=0.0)
        elif match := _SKIPPED.search(line):
            self._update(match.group(1), status="skipped")
        elif (match := _TASK_LINE.match(line)) and match.group(1) in self.tasks:
            self.tasks[match.group(1)].messages.append(match.group(2))
            if self.listener:
                self.listener(self.tasks[match.group(1)])


class _LogHandler(logging.Handler):
    """kfp.local logs cache hits and skipped tasks outside its own logging context."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._on_line = on_line

    def emit(self, record: logging.LogRecord) -> None:
        self._on_line(_ANSI.sub("", record.getMessage()))


def default_out_dir(recipe_name: str, base: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = base / f"{recipe_name}-{stamp}", 2
    while candidate.exists():
        candidate, n = base / f"{recipe_name}-{stamp}-{n}", n + 1
    return candidate


def source_fingerprint(package: Package) -> str:
    """Size and mtime of local source files (globs expanded): the cache must not outlive the
    data it read."""
    import glob

    parts = []
    for task in package.plan.tasks:
        for call in task.calls:
            path = call.settings.get("path") if call.kind == "source" else None
            if not isinstance(path, str) or "{{" in path or "://" in path:
                continue
            for match in sorted(glob.glob(path, recursive=True)):
                stat = os.stat(match)
                parts.append(f"{match}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def run_package(
    package: Package,
    arguments: Mapping[str, Any],
    out_dir: Path,
    *,
    recipe_file: str,
    cache_dir: Path | None = None,
    listener: Listener | None = None,
) -> RunResult:
    """Run a compiled package locally; everything the run makes lands under `out_dir`."""
    from skitflow.compile.kfp_compat import import_kfp

    import_kfp()
    from kfp import components, local

    out_dir.mkdir(parents=True, exist_ok=True)
    package_path = write_atomically(out_dir / "package.yaml", package.text)
    kfp_local_fixes.apply()
    tracker = _Tracker(package, listener)
    init: dict[str, Any] = {"runner": local.SubprocessRunner(use_venv=False),
                            "pipeline_root": str(out_dir.resolve()), "raise_on_error": False}
    if cache_dir is not None:
        init.update(enable_caching=True,
                    cache_root=str((cache_dir / source_fingerprint(package)).resolve()))
    started = time.monotonic()
    root = logging.getLogger()
    handler = _LogHandler(tracker.line)
    previous_level = root.level
    with open(out_dir / "run.log", "w", encoding="utf-8") as log_file:
        stream = _LogStream(log_file, tracker.line)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                local.init(**init)
                pipeline = components.load_component_from_file(str(package_path))
                try:
                    pipeline(**arguments)
                except RuntimeError as exc:  # kfp.local reports a failed pipeline this way
                    tracker.failure = tracker.failure or {"task": None, "error": str(exc)}
        finally:
            root.removeHandler(handler)
            root.setLevel(previous_level)
    result = RunResult(package.name, out_dir, _run_dir(out_dir, package.name), tracker.tasks,
                       time.monotonic() - started, tracker.failure)
    _collect_outputs(result)
    summary = summary_dict(result)
    # Who this run was, as kfp.local named it (the values tasks using `run.*` received), and
    # what of the package's Kubernetes settings this machine ignored or imitated.
    summary["run"] = kfp_local_fixes.run_identity(init["pipeline_root"])
    summary["local_parity"] = parity_lines(package.plan, os.environ)
    write_atomically(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    return result


def _run_dir(out_dir: Path, name: str) -> Path | None:
    runs = sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name.startswith(f"{name}-"))
    return runs[-1] if runs else None


def _collect_outputs(result: RunResult) -> None:
    """Row counts, artifact paths, metrics and the gate from each task's executor output."""
    if result.run_dir is None:
        return
    for task_id, state in result.tasks.items():
        output_file = result.run_dir / task_id / "executor_output.json"
        if not output_file.exists():
            continue
        data = json.loads(output_file.read_text())
        for name, holder in data.get("artifacts", {}).items():
            for artifact in holder.get("artifacts", []):
                uri = artifact.get("uri", "")
                state.artifacts[name] = uri
                if name == "metrics":
                    result.metrics = {k: float(v) for k, v in artifact.get("metadata", {}).items()
                                      if isinstance(v, int | float) and k != "rows"}
        state.outputs = dict(data.get("parameterValues", {}))
        if "rows" in state.outputs:
            state.rows = int(state.outputs["rows"])
        if "passed" in state.outputs:
            result.gate = {"task": task_id, "passed": bool(state.outputs["passed"]),
                           "score": state.outputs.get("score")}
    for state in result.tasks.values():
        if state.status == "pending":
            state.status = "skipped" if result.succeeded else "not run"


def summary_dict(result: RunResult) -> dict[str, Any]:
    return {
        "recipe": result.recipe,
        "succeeded": result.succeeded,
        "seconds": round(result.seconds, 3),
        "run_dir": str(result.run_dir) if result.run_dir else None,
        "failure": result.failure,
        "metrics": result.metrics,
        "gate": result.gate,
        "tasks": {
            t.id: {"status": t.status, "seconds": None if t.seconds is None else round(t.seconds, 3),
                   "rows": t.rows, "artifacts": t.artifacts}
            for t in result.tasks.values()
        },
    }


def failure_error(result: RunResult, recipe_file: str) -> StepFailed:
    """One readable message for a failed run, pointing at the step's line in the recipe."""
    failure = result.failure or {}
    task = failure.get("task") or next((t.id for t in result.tasks.values() if t.status == "failed"), "?")
    step = failure.get("step")
    location = None
    if failure.get("location"):
        _, line, column = failure["location"].rsplit(":", 2)
        location = Location(recipe_file, int(line), int(column))
    what = f"step `{step}` in task `{task}`" if step else f"task `{task}`"
    error = failure.get("error") or "the task exited with an error"
    hint = f"the full log is in {result.out_dir / 'run.log'}; finished tasks are cached, so a " \
        "rerun starts from the failed task"
    if failure.get("hint"):
        hint = f"{failure['hint']}; {hint}"
    return StepFailed(f"{what} failed: {error}", location, hint)
