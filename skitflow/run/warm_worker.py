"""A warm worker for local runs: each task's own command, forked from a process that has already
imported kfp's executor, skitflow's runtime, pandas and pyarrow.

Starting a task's Python and importing its libraries costs most of a small task's time. The
worker is started once per `skitflow run` (`python -m skitflow.run.warm_worker SOCKET`), imports
those modules, and waits on a Unix socket. For each task the runner sends the command's argv,
environment and working directory (one connection per task, so tasks running in threads are
served concurrently), with the write end of the task's output pipe and its stdin. The worker
forks a guard (its own process group, killed with its whole group when the worker dies, like
`task_guard`), which forks the task: it does what kfp's `sh -ec` wrapper does (a `mktemp -d`
folder holding the component's source, `_KFP_RUNTIME=true`) and runs `kfp.dsl.executor_main`
as `python -m` would. The guard reports the exit status on the connection.

Only kfp's own lightweight-component wrapper, run by this interpreter, in the worker's working
directory and with the same interpreter settings in the environment (PYTHON*, locale, thread
pool variables), is run warm (:func:`warm_request`); anything else runs as before. The worker is
single-threaded when it forks: the threads its imports start (OpenBLAS's pool, jemalloc's
background thread) are stopped and restarted around fork by the libraries' own atfork handlers.
`SKITFLOW_WARM_WORKER=0` turns it off.

The model libraries (LATER) are imported by later stages, each forked by the one before and
taking over serving once its group is in, so data tasks never wait for them: first sklearn and
xgboost, then matplotlib. A task of a component that uses them (split, train, evaluate, ...:
`compile.components.MODEL_COMPONENTS`) waits for the stage it needs (`stage_needed`: the last
for the tasks that draw the report's figures) instead of importing them itself, which took
longer than the wait: a stage imports at idle priority, raised to normal once a task waits for
it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable
from typing import Any

from skitflow.compile.components import FIGURE_COMPONENTS, MODEL_COMPONENTS

#: set to 0 to run every task in a fresh interpreter
ENV_SWITCH = "SKITFLOW_WARM_WORKER"
#: what the worker imports before it serves tasks: what every compiled component imports (not
#: `kfp.dsl.executor_main` itself, which runs as `__main__`, nor any step's own module)
PRELOAD = ("argparse", "configparser", "yaml", "kfp", "kfp.dsl", "kfp.dsl.executor",
           "skitflow.run.runtime", "skitflow.errors", "skitflow.expressions",
           "skitflow.recipe.coerce", "skitflow.recipe.templating", "skitflow.steps.columns",
           "skitflow.steps.registry", "numpy", "pandas", "pyarrow", "pyarrow.parquet",
           "pyarrow.dataset")
#: imported by later stages, one group each, each taking over once its group is in (sklearn
#: alone can take seconds; xgboost then adds little): split, trainer and predict tasks find the
#: first group imported; the tasks in FIGURE_COMPONENTS also matplotlib (a quarter of a second)
LATER: tuple[tuple[str, ...], ...] = (
    ("sklearn", "sklearn.exceptions", "sklearn.linear_model", "sklearn.metrics",
     "sklearn.model_selection", "xgboost"),
    ("matplotlib.figure", "matplotlib.backends.backend_agg"),
)
#: kfp 2.17.3's wrapper for lightweight Python components (kfp/dsl/component_factory.py)
KFP_SCRIPT = textwrap.dedent('''\
                    program_path=$(mktemp -d)

                    printf "%s" "$0" > "$program_path/ephemeral_component.py"
                    _KFP_RUNTIME=true python3 -m kfp.dsl.executor_main \
                        --component_module_path \
                        "$program_path/ephemeral_component.py" \
                        "$@"
                ''')
EXECUTOR_MODULE = "kfp.dsl.executor_main"
#: environment read when an interpreter or its native libraries start: a task whose value
#: differs from the worker's runs in a fresh interpreter
STARTUP_PREFIXES = ("PYTHON", "LD_", "LC_", "LANG", "TZ", "OMP_", "KMP_", "GOMP_", "MKL_",
                    "OPENBLAS_", "GOTO", "BLIS_", "VECLIB_", "NUMEXPR_", "ARROW_", "JE_",
                    "MALLOC_", "PANDAS_", "SKLEARN_", "SCIPY_", "XGBOOST_", "_KFP_RUNTIME",
                    "KFP_")
#: Linux's limit on one argument (MAX_ARG_STRLEN), and a bound under its limit on all of them
MAX_ARG = 131072
MAX_EXEC = 1 << 20
#: seconds the first task waits for the worker's imports before it runs cold (and a model task
#: for its stage's, before it is served by an earlier stage)
READY_TIMEOUT = 30.0

_HEADER = struct.Struct("!I")


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip() not in {"0", "false", "no", "off"}


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_PREFIXES)}


def stage_needed(request: dict[str, Any]) -> int:
    """How many of LATER's groups the request's component imports: 0 for a data task (kfp's
    executor is told which function to run with `--function_to_execute NAME`)."""
    args = request["args"]
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--function_to_execute" and value in MODEL_COMPONENTS:
            return len(LATER) if value in FIGURE_COMPONENTS else 1
    return 0


def warm_request(full_command: list[str], env: dict[str, str],
                 worker_env: dict[str, str]) -> dict[str, Any] | None:
    """The request for a command the worker runs exactly as its shell wrapper would, or None."""
    if len(full_command) < 4 or full_command[:2] != ["sh", "-ec"]:
        return None
    if full_command[2] != KFP_SCRIPT.replace("python3", sys.executable):
        return None
    if not all(isinstance(part, str) and "\0" not in part for part in full_command):
        return None
    sizes = [len(os.fsencode(part)) for part in full_command]
    environ = sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
    if max(sizes) >= MAX_ARG or sum(sizes) + environ >= MAX_EXEC:
        return None  # exec would fail (E2BIG), or might: the cold path fails as it always did
    if _startup_env(env) != _startup_env(worker_env):
        return None
    return {"program": full_command[3], "args": full_command[4:], "env": env}


# -- the runner's side ---------------------------------------------------------------------------


class WarmProcess:
    """A task forked by the worker, as the runner sees it: the pid of its guard (the leader of
    its process group) and its exit status, read from the connection (Popen's `poll`/`wait`)."""

    def __init__(self, conn: socket.socket, pid: int, buffer: bytes, output: Any) -> None:
        self.pid = pid
        self.output = output
        self.returncode: int | None = None
        self._conn = conn
        self._buffer = buffer
        self._lock = threading.Lock()

    def _read_status(self, timeout: float | None) -> None:
        self._conn.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                chunk = self._conn.recv(64)
            except (TimeoutError, BlockingIOError):
                raise subprocess.TimeoutExpired("warm task", timeout or 0) from None
            except OSError:
                chunk = b""
            if not chunk:  # the guard was killed before it could report
                self.returncode = -signal.SIGKILL
                return
            self._buffer += chunk
        line = self._buffer.split(b"\n", 1)[0]
        self.returncode = int(line.split()[1])

    def wait(self, timeout: float | None = None) -> int:
        # another thread may be waiting without a timeout: then this one waits for the lock only
        # as long as it was asked to (the task is still running)
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise subprocess.TimeoutExpired("warm task", timeout or 0)
        try:
            if self.returncode is None:
                self._read_status(timeout)
                self._conn.close()
            assert self.returncode is not None
            return self.returncode
        finally:
            self._lock.release()

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


class WarmWorker:
    """The runner's handle on one worker process."""

    def __init__(self, preexec_fn: Callable[[], None] | None) -> None:
        self._dir = tempfile.mkdtemp(prefix="skitflow-warm-")
        self.path = os.path.join(self._dir, "socket")
        self.env = dict(os.environ)
        self.cwd = os.getcwd()
        self._ready = threading.Event()
        self._failed = False
        self._lock = threading.Lock()
        self._stages: list[int] = []  # the later stages' pids, in order, as they start
        self._boosted = 0  # stages raised to normal priority: a task waits for them
        #: per group of LATER: set when its stage serves, or never will
        self._later = [threading.Event() for _ in LATER]
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, self.path], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, process_group=0,
            env={**self.env, "_KFP_RUNTIME": "true"}, preexec_fn=preexec_fn)  # noqa: PLW1509
        threading.Thread(target=self._wait_ready, daemon=True).start()

    def _wait_ready(self) -> None:
        """Read the worker's reports: `ready`, then `stage PID` as each later stage starts and
        `later N` once the stage of LATER's N-th group serves; end of file (every stage closed
        the pipe) when the rest never will."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self._failed = line != b"ready\n"
        self._ready.set()
        for line in iter(self.process.stdout.readline, b""):
            with contextlib.suppress(ValueError, IndexError):
                word, number = line.split()
                if word == b"stage":
                    with self._lock:
                        self._stages.append(int(number))
                        if len(self._stages) <= self._boosted:
                            _normal_priority(int(number))
                elif word == b"later" and 1 <= int(number) <= len(self._later):
                    self._later[int(number) - 1].set()
        for event in self._later:
            event.set()

    def _wait_for_stage(self, level: int) -> None:
        """Wait (bounded) for the stage of LATER's `level`-th group; it and the stages before it
        import at idle priority until a task waits for them."""
        if not self._later[level - 1].is_set():
            with self._lock:
                self._boosted = max(self._boosted, level)
                for pid in self._stages[:level]:
                    _normal_priority(pid)
        self._later[level - 1].wait(READY_TIMEOUT)

    def submit(self, request: dict[str, Any]) -> WarmProcess | None:
        """Start a task; None when the worker cannot (the caller runs it cold)."""
        if not self._ready.wait(READY_TIMEOUT) or self._failed or self.process.poll() is not None:
            return None
        if os.getcwd() != self.cwd:
            return None
        level = stage_needed(request)
        if level:
            self._wait_for_stage(level)
        read_end, write_end = os.pipe()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            body = json.dumps(request).encode()
            data = _HEADER.pack(len(body)) + body
            sent = socket.send_fds(conn, [data], [write_end, 0])
            conn.sendall(data[sent:])  # a large request (an executor input) may go in parts
            os.close(write_end)
            write_end = -1
            buffer = b""
            while b"\n" not in buffer:
                chunk = conn.recv(64)
                if not chunk:
                    raise ConnectionError("the warm worker closed the connection")
                buffer += chunk
            line, rest = buffer.split(b"\n", 1)
            pid = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            conn.close()
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
            return None
        # as Popen(text=True) reads a task's output: the locale's encoding, universal newlines
        return WarmProcess(conn, pid, rest, os.fdopen(read_end, "r"))

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self._stages:  # killed with the stage before; gone before the run ends
            _wait_gone(pid)
        if self.process.stdout is not None:
            self.process.stdout.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def _normal_priority(pid: int) -> None:
    with contextlib.suppress(OSError):  # the same user's process: allowed (RLIMIT_NICE)
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


# -- the worker's side ---------------------------------------------------------------------------


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    """Wait until `pid` has exited (or is a zombie), at most `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while pid > 0 and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except (OSError, IndexError):
            return
        time.sleep(0.01)


def _prctl_death_signal(signum: int) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG


def _recv_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
    if len(data) < _HEADER.size:
        raise ConnectionError("short request")
    (size,) = _HEADER.unpack(data[:_HEADER.size])
    body = data[_HEADER.size:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("short request")
        body += chunk
    return json.loads(body), fds


def _run_task(request: dict[str, Any]) -> int:
    """In the forked task: what `sh -ec KFP_SCRIPT` and `python -m kfp.dsl.executor_main` do."""
    import atexit
    import runpy
    import traceback

    env = dict(request["env"])
    os.environ.clear()
    os.environ.update(env)
    try:  # program_path=$(mktemp -d); printf "%s" "$0" > "$program_path/ephemeral_component.py"
        program_dir = tempfile.mkdtemp(prefix="tmp.", dir=env.get("TMPDIR") or "/tmp")
        program = os.path.join(program_dir, "ephemeral_component.py")
        with open(program, "wb") as file:
            file.write(os.fsencode(request["program"]))
    except OSError as exc:
        os.write(2, f"sh: {exc}\n".encode())
        return 1
    os.environ["_KFP_RUNTIME"] = "true"
    import time

    time.tzset()
    if "numpy" in sys.modules:  # a fresh interpreter seeds numpy's global generator itself
        sys.modules["numpy"].random.seed()
    sys.argv = ["-m", "--component_module_path", program, *request["args"]]
    sys.path[0] = os.getcwd()
    code = 0
    try:
        runpy.run_module(EXECUTOR_MODULE, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        _flush(atexit)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    _flush(atexit)
    return code


def _flush(atexit: Any) -> None:
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def _guard(conn: socket.socket, request: dict[str, Any], fds: list[int], worker: int) -> None:
    """The forked guard: its own process group, killed with the worker; forks the task, reports
    its exit status as `task_guard` would return it, and exits."""
    os.setpgid(0, 0)
    _prctl_death_signal(signal.SIGTERM)
    if os.getppid() != worker:
        os._exit(1)
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    output, stdin = fds
    conn.sendall(f"pid {os.getpid()}\n".encode())
    child = os.fork()
    if child == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            conn.close()
            os.dup2(stdin, 0)
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.close(output)
            if stdin != 0:
                os.close(stdin)
            code = _run_task(request)
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(output)
    os.close(stdin)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:  # pragma: no cover
            continue
    code = os.waitstatus_to_exitcode(status)
    code = code if code >= 0 else 128 - code
    with contextlib.suppress(OSError):
        conn.sendall(f"exit {code}\n".encode())
    os._exit(code)


def _serve_until(listener: socket.socket, worker: int, handover: int | None,
                 keep: list[int]) -> None:
    """Accept tasks until `handover` (a pipe's read end) says the second stage took over; serve
    again if it dies (end of file). `keep`: descriptors a guard closes."""
    import select

    serving = True
    while True:
        watched = ([listener] if serving else []) + ([handover] if handover is not None else [])
        if not watched:
            return
        readable, _, _ = select.select(watched, [], [])
        if handover is not None and handover in readable:
            serving = os.read(handover, 1) == b""  # a byte: taken over; end of file: it died
            if serving:
                os.close(handover)
                handover = None
            continue
        try:
            conn, _ = listener.accept()
        except BlockingIOError:  # the other stage took this one
            continue
        conn.setblocking(True)
        try:
            request, fds = _recv_request(conn)
            if len(fds) != 2:
                raise ConnectionError("missing descriptors")
        except (OSError, ValueError):
            conn.close()
            continue
        if os.fork() == 0:
            listener.close()
            for fd in [*keep, *([handover] if handover is not None else [])]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            try:
                _guard(conn, request, fds, worker)
            finally:
                os._exit(1)
        conn.close()
        for fd in fds:
            os.close(fd)


def _next_stage(listener: socket.socket, groups: tuple[tuple[str, ...], ...], report: int,
                own: list[int]) -> int:
    """Fork a process that also imports `groups[0]` and then takes over serving (this stage
    stops accepting), and starts the stage of `groups[1:]` in turn: tasks never wait for these
    imports. It reports on `report`, the runner's pipe; `own`: this stage's descriptors, which
    the new one closes. Returns the pipe it signals on."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    child = os.fork()
    if child != 0:
        os.close(write_end)
        # idle priority, set here so that it is set before the runner can raise it
        with contextlib.suppress(OSError):
            os.sched_setscheduler(child, os.SCHED_IDLE, os.sched_param(0))
        with contextlib.suppress(OSError):
            os.write(report, f"stage {child}\n".encode())
        return read_end
    os.close(read_end)
    for fd in own:
        os.close(fd)
    _prctl_death_signal(signal.SIGKILL)  # dies with the stage before (its guards then kill theirs)
    if os.getppid() != parent:
        os._exit(0)
    import importlib

    try:  # imported on idle CPU only (the tasks running meanwhile are not slowed), then served
        for name in groups[0]:  # at the normal priority
            importlib.import_module(name)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except BaseException:  # noqa: BLE001 - the stage before keeps serving
        os._exit(0)
    os.write(write_end, b"r")  # before `later`: the stage before has stopped accepting by then
    with contextlib.suppress(OSError):
        os.write(report, f"later {len(LATER) - len(groups) + 1}\n".encode())
    handover = _next_stage(listener, groups[1:], report, [write_end]) if len(groups) > 1 else None
    os.close(report)
    _serve_until(listener, os.getpid(), handover, [write_end])
    os._exit(0)


def serve(path: str) -> None:
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    worker = os.getpid()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the guards see it and kill their tasks
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # guards are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o077)
    listener.bind(path)
    os.umask(old_mask)
    listener.listen(64)
    listener.setblocking(False)  # shared with the later stages: whoever accepts first serves
    os.write(1, b"ready\n")
    report = os.dup(1)  # the runner's pipe, for the stages' reports; tasks get /dev/null
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    handover = _next_stage(listener, LATER, report, []) if LATER else None
    os.close(report)
    _serve_until(listener, worker, handover, [])
    while True:  # a later stage serves; the guards' death signal is tied to it, its to this
        signal.pause()


if __name__ == "__main__":
    serve(sys.argv[1])
