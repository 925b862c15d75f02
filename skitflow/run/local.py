"""`skitflow run`: execute the compiled package on this machine with kfp's local runner.

The package that runs is the very file `skitflow compile` writes (loaded back with
`kfp.components.load_component_from_file`), so what runs here is what Kubeflow would run. kfp.local
prints its progress and the tasks' output; we read that stream to drive a live display, keep the
whole log in the run folder, and turn a task failure into one readable message.

Faults are part of the contract:
- each run gets its own folder, created atomically (two runs started together never share one);
- the cache keys local source files by their content (SHA-256), and a cached artifact whose
  checksum changed is a miss (`kfp_compat.patch_kfp_local`), so nothing stale or damaged is reused;
- a failed task stops only the tasks downstream of it; the summary says which failed and which
  were not run because of which failure;
- Ctrl-C or SIGTERM stops the running tasks and still writes summary.json (status
  "interrupted"); if the CLI is killed outright, its tasks die with it, and the temporary files
  they leave are swept at the start of the next run.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import itertools
import json
import logging
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skitflow.compile.build import Package
from skitflow.compile.emit import write_package
from skitflow.compile.kfp_compat import local_tasks_stopping
from skitflow.errors import EXIT_GATE_FAILED, Location, Problem, SkitflowError, StepFailed
from skitflow.recipe.models import kfp_arguments
from skitflow.run import task_processes
from skitflow.run.parity import parity_lines
from skitflow.run.runtime import FAILURE_MARKER
from skitflow.util.atomic import sweep_stale_temps, write_text
from skitflow.util.hashing import file_digest
from skitflow.util.notify import LOCAL_RUN_ENV

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTING = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"Task (\S+) cache hit")
_UPSTREAM_FAILED = re.compile(r"Skipping task '?([\w-]+)'?: upstream task\(s\) \[([^\]]*)\] failed")
_SKIPPED = re.compile(r"Skipping (?:conditional )?task '?([\w-]+)'?")
_TASK_LINE = re.compile(r"^\s*\[([\w-]+)\] (.*)$")


@dataclass
class TaskState:
    id: str
    #: pending | running | succeeded | failed | cached | skipped | not run | interrupted
    status: str = "pending"
    started: float | None = None
    seconds: float | None = None
    messages: list[str] = field(default_factory=list)
    rows: int | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    blocked_by: list[str] = field(default_factory=list)  # the failed tasks it waited for


@dataclass
class RunResult:
    recipe: str
    out_dir: Path
    run_dir: Path | None
    tasks: dict[str, TaskState]
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # every value the run used
    recipe_hash: str = ""
    started: str = ""  # ISO 8601, UTC
    interrupted: str | None = None  # the signal's name (SIGINT, SIGTERM) when the run was stopped
    notes: list[str] = field(default_factory=list)  # outcomes worth a line: "no rows: nothing to train"
    jobs: int = 1  # task processes allowed at once
    clock: float = 0.0  # time.monotonic() when the run started: task start offsets count from it
    #: each matrix branch's metrics and gate verdict, by branch label (empty without a matrix)
    branches: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failure(self) -> dict[str, Any] | None:
        """The first failure (the one the error message leads with)."""
        return self.failures[0] if self.failures else None

    @property
    def succeeded(self) -> bool:
        return (not self.failures and self.interrupted is None
                and all(t.status != "failed" for t in self.tasks.values()))

    @property
    def gate_failed(self) -> bool:
        """Every task ran, but the gate kept the model from its sinks (exit code 3)."""
        return self.succeeded and self.gate is not None and not self.gate.get("passed")

    @property
    def status(self) -> str:
        if self.interrupted:
            return "interrupted"
        return "succeeded" if self.succeeded else "failed"


Listener = Callable[[TaskState], None]


class _LogStream(io.TextIOBase):
    """Receives kfp.local's stdout: keeps it in run.log and turns lines into task events.

    Tasks run on threads (`--jobs`) and write their lines in pieces (kfp's indented print writes
    the indent first): each thread's pieces are gathered apart and only whole lines go out, one
    at a time, so no line is ever torn or mixed with another task's."""

    def __init__(self, log_file: io.TextIOBase, on_line: Callable[[str], None]) -> None:
        self._log = log_file
        self._on_line = on_line
        self._buffers: dict[int, str] = {}
        self._lock = threading.RLock()  # reentrant: a listener may log while a line is handled

    def write(self, text: str) -> int:
        key = threading.get_ident()
        with self._lock:
            buffer = self._buffers.pop(key, "") + text
            *lines, rest = buffer.split("\n")
            if rest:
                self._buffers[key] = rest
            for line in lines:
                self._log.write(line + "\n")
                self._on_line(_ANSI.sub("", line))
        return len(text)

    def close_lines(self) -> None:
        """Whatever was left without a newline (a killed task's last words) goes to run.log."""
        with self._lock:
            rests = list(self._buffers.values())
            self._buffers.clear()
            for rest in rests:
                self._log.write(rest + "\n")

    def flush(self) -> None:
        self._log.flush()

    def writable(self) -> bool:
        return True


class _Tracker:
    """Task states from the lines kfp.local and the skitflow runtime print."""

    def __init__(self, package: Package, listener: Listener | None) -> None:
        self.tasks = {task.id: TaskState(task.id) for task in package.plan.tasks}
        self.groups = _group_members(package.text)
        self.listener = listener
        self.failures: list[dict[str, Any]] = []
        self.locations = package.plan.locations

    def _update(self, task_id: str, **changes: Any) -> None:
        state = self.tasks.setdefault(task_id, TaskState(task_id))
        for key, value in changes.items():
            setattr(state, key, value)
        if self.listener:
            self.listener(state)

    def causes(self, name: str) -> list[str]:
        """The failed tasks that kept `name` (a task or a group of tasks) from running."""
        state = self.tasks.get(name)
        if state is not None:
            return [name] if state.status == "failed" else list(state.blocked_by)
        found = [c for member in self.groups.get(name, ()) for c in self.causes(member)]
        return list(dict.fromkeys(found)) or [name]

    def _skip(self, name: str, status: str, blocked_by: list[str]) -> None:
        """A skipped task, or every pending task of a skipped group (kfp names only the group)."""
        members = self.groups.get(name)
        if members is None:
            self._update(name, status=status, blocked_by=blocked_by)
            return
        for task_id in members:
            if task_id in self.tasks and self.tasks[task_id].status == "pending":
                self._update(task_id, status=status, blocked_by=blocked_by)

    def line(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith(FAILURE_MARKER):
            with contextlib.suppress(ValueError):
                record = json.loads(stripped[len(FAILURE_MARKER):])
                # the task names its step by place ("steps[3]"): the line it is on is ours to know
                if record.get("location") in self.locations:
                    record["at"], record["location"] = record["location"], self.locations[record["location"]]
                if not any(f.get("task") == record.get("task") for f in self.failures):
                    self.failures.append(record)
            return
        if match := _EXECUTING.search(line):
            self._update(match.group(1), status="running", started=time.monotonic())
        elif match := _FINISHED.search(line):
            state = self.tasks.get(match.group(1))
            seconds = time.monotonic() - state.started if state and state.started else None
            status = "succeeded" if match.group(2) == "SUCCESS" else "failed"
            if status == "failed" and local_tasks_stopping():  # a task of --jobs, stopped by Ctrl-C
                status = "interrupted"
            self._update(match.group(1), status=status, seconds=seconds)
        elif match := _CACHED.search(line):
            self._update(match.group(1).strip("'"), status="cached", seconds=0.0)
        elif match := _UPSTREAM_FAILED.search(line):
            upstream = re.findall(r"'([\w-]+)'", match.group(2))
            causes = list(dict.fromkeys(c for dep in upstream for c in self.causes(dep)))
            self._skip(match.group(1), "not run", causes)
        elif match := _SKIPPED.search(line):
            self._skip(match.group(1), "skipped", [])
        elif (match := _TASK_LINE.match(line)) and match.group(1) in self.tasks:
            self.tasks[match.group(1)].messages.append(match.group(2))
            if self.listener:
                self.listener(self.tasks[match.group(1)])

    def finish(self, completed: bool, interrupted: bool) -> None:
        """Statuses once kfp.local has returned (or was stopped), and a record per failure."""
        for state in self.tasks.values():
            if state.status == "running" and interrupted:
                state.status = "interrupted"
                state.seconds = time.monotonic() - state.started if state.started else None
            elif state.status == "pending":
                state.status = "skipped" if completed else "not run"
            if state.status == "failed" and not any(f.get("task") == state.id for f in self.failures):
                self.failures.append({"task": state.id, "step": None, "location": None,
                                      "error": "the task exited with an error"})


def _group_members(package_text: str) -> dict[str, list[str]]:
    """Each group task of the package (a condition or branch DAG) -> the task ids inside it."""
    import yaml

    spec = next(yaml.load_all(package_text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    components = spec.get("components", {})

    def leaves(tasks: dict[str, Any]) -> list[str]:
        found = []
        for name, task in tasks.items():
            inner = components.get(task.get("componentRef", {}).get("name"), {}).get("dag")
            found += leaves(inner.get("tasks", {})) if inner else [name]
        return found

    groups: dict[str, list[str]] = {}

    def walk(tasks: dict[str, Any]) -> None:
        for name, task in tasks.items():
            inner = components.get(task.get("componentRef", {}).get("name"), {}).get("dag")
            if inner:
                groups[name] = leaves(inner.get("tasks", {}))
                walk(inner.get("tasks", {}))

    walk(spec.get("root", {}).get("dag", {}).get("tasks", {}))
    return groups


class _LogHandler(logging.Handler):
    """kfp.local logs cache hits and skipped tasks outside its own logging context: they go to
    the run log and the tracker like everything else."""

    def __init__(self, stream: _LogStream) -> None:
        super().__init__(logging.INFO)
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        self._stream.write(record.getMessage() + "\n")


def new_run_folder(recipe_name: str, base: Path = Path("runs")) -> Path:
    """A new run folder `<base>/<recipe>-<time>[-n]`, created here: `mkdir` is atomic, so two runs
    started in the same second get two folders."""
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        candidate = base / (f"{recipe_name}-{stamp}" if n == 1 else f"{recipe_name}-{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


_UNKNOWN_RUN_ID = "\0run.id\0"


def local_source_files(package: Package, arguments: Mapping[str, Any]) -> list[str] | None:
    """The local files the package's sources read, with parameters and run templates resolved
    as the task will resolve them, and globs expanded; remote paths are left out (those sources
    are never cached). None when a path depends on something only the task knows (`run.id`)."""
    import datetime

    from skitflow.recipe.templating import ParamRef, resolve_runtime

    run = {"id": _UNKNOWN_RUN_ID, "name": package.plan.name,
           "date": datetime.datetime.now(datetime.UTC).date().isoformat()}
    found = []
    for task in package.plan.tasks:
        for call in task.calls:
            if call.kind != "source" or "path" not in call.settings:
                continue
            raw = call.settings["path"]
            try:
                path = resolve_runtime(raw.to_json() if isinstance(raw, ParamRef) else raw,
                                       arguments, run)
            except KeyError:
                return None
            if not isinstance(path, str) or _UNKNOWN_RUN_ID in path:
                return None
            if "://" in path and not path.lower().startswith("file://"):
                continue
            path = path.removeprefix("file://")
            found += [m for m in sorted(glob.glob(path, recursive=True)) if os.path.isfile(m)]
    return found


def source_fingerprint(package: Package, arguments: Mapping[str, Any]) -> str:
    """The content (SHA-256) of every local source file: the cache must not outlive the data it
    read. Size and mtime are not enough: an edit that keeps both was served stale. Each file is
    read once per run, streamed. A source whose path cannot be known before the run gets a
    fingerprint of its own each run, so its results are never reused."""
    files = local_source_files(package, arguments)
    if files is None:
        return "unkeyed-" + secrets.token_hex(8)
    parts = [f"{path}:{file_digest(path)}" for path in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def sweep_leftovers(out_dir: Path, cache_dir: Path | None) -> list[Path]:
    """Remove temporary files that killed runs and tasks left in the cache and in the run folders
    beside `out_dir` (those holding a package.yaml); files of live processes are kept."""
    roots: list[Path] = [cache_dir] if cache_dir is not None else []
    base = out_dir.parent
    if base.is_dir():
        roots += sorted(p for p in base.iterdir() if p.is_dir() and (p / "package.yaml").is_file())
    if out_dir.is_dir() and out_dir not in roots:
        roots.append(out_dir)
    return [path for root in roots for path in sweep_stale_temps(root)]


class RunInterrupted(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM: not an Exception, so nothing in kfp.local
    swallows it on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While a run is going, SIGINT and SIGTERM ask the tasks to stop and raise RunInterrupted;
    a second signal while stopping is ignored (stopping is bounded anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if seen:
            return
        seen.append(signum)
        task_processes.interrupt_tasks()  # sets the run's stop flag first: tasks ending now were stopped, not failed
        raise RunInterrupted(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_package(
    package: Package,
    arguments: Mapping[str, Any],
    out_dir: Path,
    *,
    recipe_file: str,
    cache_dir: Path | None = None,
    listener: Listener | None = None,
    jobs: int = 1,
    branch_labels: tuple[str, ...] = (),
) -> RunResult:
    """Run a compiled package locally; everything the run makes lands under `out_dir`.

    Returns when every task that could run has run (a failure stops only its downstream tasks),
    or when SIGINT/SIGTERM stopped the run (`RunResult.interrupted`); summary.json is written in
    every case. Up to `jobs` tasks run at once (independent tasks and matrix branches).
    `branch_labels`: the matrix branches' labels, to report each branch's metrics and gate.
    """
    from skitflow.compile.kfp_compat import import_kfp, local_run_identity, patch_kfp_local

    import_kfp()
    from kfp import components, local

    swept = sweep_leftovers(out_dir, cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    package_path = write_package(out_dir / "package.yaml", package.text)
    patch_kfp_local(run_subprocess=task_processes.run_task_process, jobs=jobs)
    task_processes.start_warm_worker()  # imports while kfp.local starts; SKITFLOW_WARM_WORKER=0: off
    os.environ[LOCAL_RUN_ENV] = "1"  # the exit task leaves notifying to the CLI (run/notify_local.py)
    tracker = _Tracker(package, listener)
    init: dict[str, Any] = {"runner": local.SubprocessRunner(use_venv=False),
                            "pipeline_root": str(out_dir.resolve()), "raise_on_error": False}
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    before = {p.name for p in out_dir.iterdir()}
    root = logging.getLogger()
    previous_level = root.level
    interrupted: str | None = None
    completed = False
    # run.log is a live log, flushed line by line (so it can be followed, and a killed run keeps
    # what it had); the files read as results (package.yaml, summary.json) are written atomically.
    with open(out_dir / "run.log", "w", encoding="utf-8", buffering=1) as log_file:
        stream = _LogStream(log_file, tracker.line)
        if swept:
            stream.write(f"skitflow: removed {len(swept)} temporary file(s) left by killed runs\n")
        handler = _LogHandler(stream)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with _stop_on_signals(), contextlib.redirect_stdout(stream), \
                    contextlib.redirect_stderr(stream):
                if cache_dir is not None:  # hashing a big source can take seconds: interruptible
                    init.update(enable_caching=True,
                                cache_root=str((cache_dir / source_fingerprint(package, arguments)).resolve()))
                local.init(**init)
                pipeline = components.load_component_from_file(str(package_path))
                try:
                    pipeline(**kfp_arguments(package.plan.parameters, dict(arguments)))
                except RuntimeError as exc:  # kfp.local reports a failed pipeline this way
                    tracker.failures.append({"task": None, "error": str(exc)})
                completed = True
        except RunInterrupted as exc:
            interrupted = str(exc)
            task_processes.stop_tasks()
            stream.write(f"skitflow: run interrupted by {interrupted}\n")
        finally:
            task_processes.stop_warm_worker()
            root.removeHandler(handler)
            root.setLevel(previous_level)
            stream.close_lines()
        tracker.finish(completed, interrupted is not None)
        result = RunResult(package.name, out_dir, _run_dir(out_dir, package.name, before),
                           tracker.tasks, time.monotonic() - started, tracker.failures,
                           parameters=_used_parameters(package, arguments),
                           recipe_hash=package.plan.recipe_hash, started=started_at,
                           interrupted=interrupted, jobs=jobs, clock=started)
        _collect_outputs(result, branch_labels)
        result.notes = run_notes(package, result)
        for line in outcome_lines(result):
            stream.write(f"skitflow: {line}\n")
    summary = summary_dict(result)
    # Who this run was, as kfp.local named it (the values tasks using `run.*` received), and
    # what of the package's Kubernetes settings this machine ignored or imitated.
    summary["run"] = local_run_identity(init["pipeline_root"])
    summary["local_parity"] = parity_lines(package.plan, os.environ)
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    return result


def run_notes(package: Package, result: RunResult) -> list[str]:
    """Outcomes that are results, not failures: a source with `on_empty: skip` that had no rows."""
    from skitflow.run.runtime import NO_ROWS

    return [f"{NO_ROWS} (`{task.id}` read no rows; the tasks after it were skipped)"
            for task in package.plan.tasks
            if task.on_empty == "skip" and result.tasks.get(task.id) is not None
            and result.tasks[task.id].rows == 0]


def outcome_lines(result: RunResult) -> list[str]:
    """What failed, what did not run and why: for run.log and the CLI."""
    lines = [f"run {result.status}", *result.notes]
    for failure in result.failures:
        if failure.get("task"):
            step = f" (step `{failure['step']}`)" if failure.get("step") else ""
            lines.append(f"failed: task `{failure['task']}`{step}: {failure.get('error')}")
    for state in result.tasks.values():
        if state.status == "not run" and state.blocked_by:
            causes = ", ".join(f"`{c}`" for c in state.blocked_by)
            lines.append(f"not run: task `{state.id}`, because {causes} failed")
        elif state.status in ("interrupted", "not run"):
            lines.append(f"{state.status}: task `{state.id}`")
    return lines


def _run_dir(out_dir: Path, name: str, before: set[str]) -> Path | None:
    """The folder kfp.local made for this run: the new `<pipeline>-<time>` folder in `out_dir`."""
    runs = sorted(p for p in out_dir.iterdir()
                  if p.is_dir() and p.name.startswith(f"{name}-") and p.name not in before)
    return runs[-1] if runs else None


def _collect_outputs(result: RunResult, branch_labels: tuple[str, ...] = ()) -> None:
    """Row counts, artifact paths, metrics and the gate from each task's executor output; with a
    matrix, each branch's metrics and gate as well (`RunResult.branches`)."""
    if result.run_dir is None:
        return
    found: dict[str, dict[str, Any]] = {}  # task id -> its metrics and gate
    for task_id, state in result.tasks.items():
        try:  # absent for tasks that did not finish; torn if a task was killed writing it
            data = json.loads((result.run_dir / task_id / "executor_output.json").read_text())
        except (OSError, ValueError):
            continue
        for name, holder in data.get("artifacts", {}).items():
            for artifact in holder.get("artifacts", []):
                uri = artifact.get("uri", "")
                state.artifacts[name] = uri
                if name == "metrics":  # the model's metrics; the gate's numbers are in `gate`
                    found.setdefault(task_id, {})["metrics"] = {
                        k: float(v) for k, v in artifact.get("metadata", {}).items()
                        if isinstance(v, int | float) and k != "rows" and not k.startswith("gate_")}
                if name == "report" and isinstance(artifact.get("metadata", {}).get("gate"), dict):
                    found.setdefault(task_id, {})["gate"] = {"task": task_id, **artifact["metadata"]["gate"]}
        state.outputs = dict(data.get("parameterValues", {}))
        if "rows" in state.outputs:
            state.rows = int(state.outputs["rows"])
    # Top level: the last task's, as the plan orders them (with `select:` the select task, so the
    # winner's) ...
    for entry in found.values():
        result.metrics = entry.get("metrics", result.metrics)
        result.gate = entry.get("gate", result.gate)
    for task_id, entry in found.items():
        label = _branch_of(task_id, branch_labels)
        if label is not None:
            result.branches.setdefault(label, {"metrics": {}, "gate": None}).update(
                {"task": task_id, **entry})
    # ... but a matrix without `select:` publishes each branch's model past its own gate: a
    # branch whose gate refused its model is the verdict (exit 3), and its metrics go with it.
    refused = [b for b in result.branches.values() if b.get("gate") and not b["gate"].get("passed")]
    if refused and result.gate is not None and result.gate.get("passed"):
        result.gate, result.metrics = refused[0]["gate"], refused[0]["metrics"]


def _branch_of(task_id: str, labels: tuple[str, ...]) -> str | None:
    """The matrix branch a task belongs to: its name ends with the branch's label."""
    matches = [label for label in labels if task_id.endswith(f"-{label}")]
    return max(matches, key=len) if matches else None


def _used_parameters(package: Package, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter with the value this run used: given, or its default."""
    declared = package.plan.parameters
    return {name: arguments.get(name, parameter.default) for name, parameter in declared.items()}


def summary_dict(result: RunResult) -> dict[str, Any]:
    def task(state: TaskState) -> dict[str, Any]:
        entry: dict[str, Any] = {"status": state.status, "rows": state.rows, "artifacts": state.artifacts,
                 "seconds": None if state.seconds is None else round(state.seconds, 3),
                 # when it started, in seconds after the run did (tasks overlap with --jobs)
                 "start": None if state.started is None else round(state.started - result.clock, 3)}
        if state.blocked_by:
            entry["blocked_by"] = state.blocked_by
        return entry

    return {
        "recipe": result.recipe,
        "status": result.status,
        "started": result.started,
        "parameters": result.parameters,
        "recipe_hash": result.recipe_hash,
        "succeeded": result.succeeded,
        "interrupted": result.interrupted,
        "seconds": round(result.seconds, 3),
        "jobs": result.jobs,
        "run_dir": str(result.run_dir) if result.run_dir else None,
        "failure": result.failure,
        "failures": result.failures,
        "finished": [t.id for t in result.tasks.values() if t.status in ("succeeded", "cached")],
        "not_run": {t.id: t.blocked_by for t in result.tasks.values() if t.status == "not run"},
        "metrics": result.metrics,
        "gate": result.gate,
        **({"branches": result.branches} if result.branches else {}),
        **({"notes": result.notes} if result.notes else {}),
        "tasks": {t.id: task(t) for t in result.tasks.values()},
    }


def _failure_problem(failure: Mapping[str, Any], result: RunResult, recipe_file: str) -> Problem:
    task = failure.get("task") or "?"
    step = failure.get("step")
    location = None
    if failure.get("location") and failure["location"].count(":") >= 2:
        _, line, column = failure["location"].rsplit(":", 2)
        location = Location(recipe_file, int(line), int(column))
    what = f"step `{step}` in task `{task}`" if step else f"task `{task}`"
    blocked = [t.id for t in result.tasks.values() if task in t.blocked_by]
    message = f"{what} failed: {failure.get('error') or 'the task exited with an error'}"
    if blocked:
        message += f" (not run because of it: {', '.join(f'`{b}`' for b in blocked)})"
    return Problem(message, location, failure.get("hint"))


def failure_error(result: RunResult, recipe_file: str) -> StepFailed:
    """One readable message per failed task, each pointing at its step's line in the recipe;
    tasks that did not depend on a failure ran anyway."""
    failures = [f for f in result.failures if f.get("task")] or result.failures or [
        {"task": next((t.id for t in result.tasks.values() if t.status == "failed"), "?")}]
    hint = f"the full log is in {result.out_dir / 'run.log'}; finished tasks are cached, so a " \
        "rerun starts from the failed task"
    problems = [_failure_problem(f, result, recipe_file) for f in failures]
    first = problems[0]
    error = StepFailed(first.message, first.location,
                       f"{first.hint}; {hint}" if first.hint else hint)
    if len(problems) > 1:  # keep the first one first: it is the one the user acts on
        error.problems = [error.problems[0], *problems[1:]]
    return error


def gate_failed_error(result: RunResult) -> SkitflowError:
    """A run whose gate refused the model: not an error of a step, a verdict (exit code 3)."""
    gate = result.gate or {}
    return SkitflowError(
        f"the gate refused the model, so it was not written to its sinks: {gate.get('reason')}",
        hint=f"the report (report.html) and summary.json in {result.out_dir} show the scores",
        exit_code=EXIT_GATE_FAILED,
    )


def interrupted_error(result: RunResult) -> SkitflowError:
    finished = [t.id for t in result.tasks.values() if t.status in ("succeeded", "cached")]
    return SkitflowError(
        f"run interrupted by {result.interrupted}; finished: {', '.join(finished) or 'none'}",
        hint=f"summary.json in {result.out_dir} lists every task; finished tasks are cached, so a "
        "rerun starts where this one stopped",
        exit_code=128 + signal.Signals[result.interrupted or "SIGINT"].value,
    )
