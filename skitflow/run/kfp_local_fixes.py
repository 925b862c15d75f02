"""Fixes for gaps in kfp.local 2.17.3, applied only inside `skitflow run`; the package is unchanged.

1. Conditions on task outputs: kfp names such a channel `pipelinechannel--<task>-<output>`, but
   kfp.local's condition evaluator only recognises `<task>--<output>` and otherwise looks for a
   pipeline input, so every `dsl.If` on a task output (our data conditions and gates) was False.
2. `dsl.OneOf` over artifacts: a dsl.If/dsl.Else group's output selects from one producer per
   branch; kfp.local refuses any selector list longer than one. We take the branch that ran.
3. Independent tasks after a failure: a package without control flow goes to kfp.local's simple
   orchestrator (`dag_orchestrator.run_dag`), which returns at the first failed task, so sinks
   that do not depend on it never ran. Kubeflow runs them; kfp.local's enhanced orchestrator does
   too (it skips only the tasks downstream of a failure, and logs which), so every package runs
   there.
4. Task processes die with the runner: kfp.local starts each task with a plain `Popen`, so a
   killed CLI left its tasks running. Each task's own command now runs under `task_guard`, in a
   process group of its own; `PR_SET_PDEATHSIG` makes the kernel signal the guard when the runner
   dies (even by SIGKILL), and the guard kills the group (kfp's `sh -ec` starts Python as a
   child, which a death signal on the shell alone would miss). The running tasks can also be
   stopped on Ctrl-C or SIGTERM (`interrupt_tasks`, `stop_tasks`).
5. A verified cache: kfp.local's cache trusts any cached artifact file that still exists. Entries
   now record each local artifact's SHA-256 when the task finishes, and an artifact whose content
   no longer matches (edited, truncated) makes the entry a miss, so the task runs again. Entries
   are written atomically (temp file, fsync, rename): concurrent runs sharing a cache never see a
   partial entry.

`apply()` is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from skitflow.util.atomic import write_text
from skitflow.util.hashing import tree_digest

#: seconds a task gets to stop after SIGINT before it is killed
STOP_GRACE_SECONDS = 5.0


def apply() -> None:
    _fix_conditions_and_oneof()
    _run_independent_tasks_after_a_failure()
    _start_tasks_that_die_with_the_runner()
    _verify_cached_artifacts()


def _fix_conditions_and_oneof() -> None:
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag
    from kfp.local.orchestrator import orchestrator_utils

    evaluator = dag.ConditionEvaluator
    if not getattr(evaluator._resolve_pipeline_channel, "_skitflow", False):
        original = evaluator._resolve_pipeline_channel

        def resolve(channel_ref: str, io_store: Any) -> Any:
            name = channel_ref.replace("pipelinechannel--", "")
            for cut in [i for i, char in enumerate(name) if char == "-"][::-1]:
                try:
                    return io_store.get_task_output(name[:cut], name[cut + 1:])
                except (ValueError, KeyError):
                    continue
            return original(channel_ref, io_store)

        resolve._skitflow = True  # type: ignore[attr-defined]
        evaluator._resolve_pipeline_channel = staticmethod(resolve)

    utils = orchestrator_utils.OrchestratorUtils
    if not getattr(utils.get_dag_output_artifacts, "_skitflow", False):

        def get_dag_output_artifacts(cls: Any, dag_outputs_spec: Any, io_store: Any) -> dict[str, Any]:
            outputs = {}
            for key, spec in dag_outputs_spec.artifacts.items():
                for selector in spec.artifact_selectors:  # one per branch: the one that ran
                    try:
                        outputs[key] = io_store.get_task_output(
                            selector.producer_subtask, selector.output_artifact_key)
                        break
                    except ValueError:
                        continue
                else:
                    raise ValueError(f"no branch produced the output artifact `{key}`")
            return outputs

        get_dag_output_artifacts._skitflow = True  # type: ignore[attr-defined]
        utils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)


def _run_independent_tasks_after_a_failure() -> None:
    from kfp.local.orchestrator import dag_orchestrator
    from kfp.local.orchestrator import enhanced_dag_orchestrator as enhanced

    dag_orchestrator.run_dag = enhanced.run_enhanced_dag


# ---- task processes -------------------------------------------------------------------------

_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()


_GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_guard.py")


def _terminate_with_parent() -> Callable[[], None] | None:
    """A preexec function: the child gets SIGTERM when this process dies (Linux prctl); the task
    guard turns that into SIGKILL for the task's whole process group."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the runner died between fork and prctl
            os._exit(1)

    return in_child


def run_task_process(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    """kfp.local's `run_local_subprocess`: the task's own command, the same output, but under
    `task_guard` in a process group of its own that dies with the runner, and stopped (not left
    running) if the runner is interrupted."""
    env = {**os.environ, **env_vars} if env_vars else None
    guarded = [sys.executable, "-I", "-S", _GUARD, *full_command]
    with subprocess.Popen(guarded, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, env=env, process_group=0,
                          preexec_fn=_terminate_with_parent()) as process:  # noqa: PLW1509
        with _running_lock:
            _running.add(process)
        try:
            assert process.stdout is not None
            for line in iter(process.stdout.readline, ""):
                print(line, end="")
            print("\n")
            return process.wait()
        except BaseException:
            _stop([process])
            raise
        finally:
            with _running_lock:
                _running.discard(process)


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def interrupt_tasks() -> None:
    """Ask every running task to stop (SIGINT to its process group) and kill the ones still
    running after the grace period; returns at once, so it is safe in a signal handler (tasks of
    a ParallelFor run in threads the main thread cannot stop itself)."""
    with _running_lock:
        running = list(_running)
    for process in running:
        _signal_group(process, signal.SIGINT)

    def kill_the_rest() -> None:
        for process in running:
            if process.poll() is None:
                _signal_group(process, signal.SIGKILL)

    timer = threading.Timer(STOP_GRACE_SECONDS, kill_the_rest)
    timer.daemon = True
    timer.start()


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    """SIGINT, then SIGKILL after the grace period; returns when each task has exited."""
    for process in processes:
        _signal_group(process, signal.SIGINT)
    for process in processes:
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def stop_tasks() -> None:
    """Stop every task still running (bounded by the grace period)."""
    with _running_lock:
        running = list(_running)
    _stop(running)


def _start_tasks_that_die_with_the_runner() -> None:
    from kfp.local import subprocess_task_handler

    subprocess_task_handler.run_local_subprocess = run_task_process


# ---- verified cache -------------------------------------------------------------------------


def _local_artifact_paths(outputs: dict[str, Any]) -> list[str]:
    from kfp import dsl

    paths = []
    for value in outputs.values():
        for item in value if isinstance(value, list) else [value]:
            uri = getattr(item, "uri", "") if isinstance(item, dsl.Artifact) else ""
            if uri and "://" not in uri and os.path.exists(uri):
                paths.append(uri)
    return paths


def _verified_cache_class() -> type:
    from kfp.local import cache

    class VerifiedCache(cache.LocalCache):  # type: ignore[misc]
        """kfp.local's cache, with each local artifact's checksum recorded and checked."""

        _skitflow = True

        def put(self, key: str, outputs: dict[str, Any]) -> None:
            entry = {
                "skitflow": 1,
                "outputs": self._serialize_outputs(outputs),
                "checksums": {path: tree_digest(path) for path in _local_artifact_paths(outputs)},
            }
            write_text(self._entry_path(key), json.dumps(entry, sort_keys=True))

        def get(self, key: str) -> dict[str, Any] | None:
            path = self._entry_path(key)
            try:
                with open(path, encoding="utf-8") as handle:
                    entry = json.load(handle)
            except FileNotFoundError:
                return None
            except (OSError, ValueError) as exc:
                logging.info(f"Cache entry {key[:12]} unreadable ({exc}); running the task again.")
                return None
            if not isinstance(entry, dict) or entry.get("skitflow") != 1:
                return None  # written without checksums: nothing to verify it by
            for uri, digest in entry.get("checksums", {}).items():
                if not os.path.exists(uri) or tree_digest(uri) != digest:
                    logging.info(f"Cache entry {key[:12]} rejected: {uri} changed after its task "
                                 "wrote it; running the task again.")
                    return None
            try:
                return self._deserialize_outputs(entry["outputs"])
            except cache._MissingArtifactError:
                return None

    return VerifiedCache


def _verify_cached_artifacts() -> None:
    from kfp.local import cache

    if not getattr(cache.LocalCache, "_skitflow", False):
        cache.LocalCache = _verified_cache_class()
        cache.reset_local_cache_singleton()
