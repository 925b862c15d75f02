"""The local runner's task processes: each task's own command, guarded so it dies with the runner.

kfp.local starts each task with a plain `Popen`, so a killed CLI left its tasks running. Here each
task's command runs under `task_guard`, in a process group of its own; `PR_SET_PDEATHSIG` makes
the kernel signal the guard when the runner dies (even by SIGKILL), and the guard kills the group
(kfp's `sh -ec` starts Python as a child, which a death signal on the shell alone would miss).
The running tasks can also be stopped on Ctrl-C or SIGTERM (`interrupt_tasks`, `stop_tasks`).
`kfp_compat.patch_kfp_local` installs `run_task_process` in place of kfp.local's own.

While a run holds a warm worker (`start_warm_worker`), a task whose command is kfp's own
lightweight-component wrapper is forked from it instead (`warm_worker`: the same command, input
and environment, without starting and importing Python again); it is guarded and stopped the
same way. Anything the worker cannot run exactly as the command would, runs as above.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from skitflow.compile.kfp_compat import local_tasks_stopping, stop_local_tasks
from skitflow.run import warm_worker

#: seconds a task gets to stop after SIGINT before it is killed
STOP_GRACE_SECONDS = 5.0


class _Task(Protocol):
    """A running task: a guarded `Popen`, or a task forked by the warm worker."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


_running: set[_Task] = set()
_running_lock = threading.Lock()
#: tasks run on threads with `--jobs`: one task's line is printed whole, never mixed with another's
_print_lock = threading.Lock()
_worker: warm_worker.WarmWorker | None = None


def start_warm_worker() -> None:
    """Start the run's warm worker (from the main thread: the worker's death signal follows the
    thread that started it); a no-op when `SKITFLOW_WARM_WORKER=0` or one is running."""
    global _worker
    if _worker is None and warm_worker.enabled() and sys.platform.startswith("linux"):
        try:
            _worker = warm_worker.WarmWorker(_terminate_with_parent())
        except OSError:
            _worker = None


def stop_warm_worker() -> None:
    """Stop the warm worker (tasks it started and still running are killed with it)."""
    global _worker
    worker, _worker = _worker, None
    if worker is not None:
        worker.stop()


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
    if local_tasks_stopping():  # the run is being stopped: this task does not start
        return 128 + signal.SIGINT
    worker = _worker
    if worker is not None:
        request = warm_worker.warm_request(full_command, {**os.environ, **(env_vars or {})},
                                           worker.env)
        warm = worker.submit(request) if request is not None else None
        if warm is not None:
            return _follow(warm, warm.output)
    env = {**os.environ, **env_vars} if env_vars else None
    guarded = [sys.executable, "-I", "-S", _GUARD, *full_command]
    with subprocess.Popen(guarded, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, env=env, process_group=0,
                          preexec_fn=_terminate_with_parent()) as process:  # noqa: PLW1509
        assert process.stdout is not None
        return _follow(process, process.stdout)


def _follow(process: _Task, output: Any) -> int:
    """Print the task's output line by line and return its exit status; stop it if the runner is
    interrupted meanwhile."""
    with _running_lock:
        _running.add(process)
        # a task whose start was under way on another thread when the run was stopped (a warm
        # task's hand-over): stopped at once
        late = local_tasks_stopping()
    try:
        if late:
            _stop([process])
        with output:
            for line in iter(output.readline, ""):
                with _print_lock:
                    print(line, end="")
        with _print_lock:
            print("\n")
        return process.wait()
    except BaseException:
        _stop([process])
        raise
    finally:
        with _running_lock:
            _running.discard(process)


def _signal_group(process: _Task, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def interrupt_tasks() -> None:
    """Ask every running task to stop (SIGINT to its process group) and kill the ones still
    running after the grace period; returns at once, so it is safe in a signal handler (tasks of
    a ParallelFor run in threads the main thread cannot stop itself)."""
    with _running_lock:
        stop_local_tasks()  # the run's one stop flag: no task starts after this
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


def _stop(processes: list[_Task]) -> None:
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
        stop_local_tasks()  # the run's one stop flag: no task starts after this
        running = list(_running)
    _stop(running)
