"""The local runner's task processes: each task's own command, guarded so it dies with the runner.

kfp.local starts each task with a plain `Popen`, so a killed CLI left its tasks running. Here each
task's command runs under `task_guard`, in a process group of its own; `PR_SET_PDEATHSIG` makes
the kernel signal the guard when the runner dies (even by SIGKILL), and the guard kills the group
(kfp's `sh -ec` starts Python as a child, which a death signal on the shell alone would miss).
The running tasks can also be stopped on Ctrl-C or SIGTERM (`interrupt_tasks`, `stop_tasks`).
`kfp_compat.patch_kfp_local` installs `run_task_process` in place of kfp.local's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

#: seconds a task gets to stop after SIGINT before it is killed
STOP_GRACE_SECONDS = 5.0

_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()
#: tasks run on threads with `--jobs`: one task's line is printed whole, never mixed with another's
_print_lock = threading.Lock()


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
