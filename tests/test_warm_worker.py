"""The warm worker runs a task's own kfp command as a fresh interpreter would, and only that.

Each behaviour is checked in both modes (forked from the worker, and a fresh interpreter under
`task_guard`): the output, exit status and error lines must be the same; only where the task ran
differs (the worker has pyarrow imported before the component's module is loaded).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from skitflow.compile.kfp_compat import set_local_jobs
from skitflow.run import task_processes, warm_worker

REPO = Path(__file__).resolve().parent.parent

PROGRAM = '''
import os, sys, time
print("preloaded", "pyarrow" in sys.modules, flush=True)
def ok():
    print("env", os.environ.get("TASK_VAR"), "argv0", os.path.basename(sys.argv[0]),
          "path0", sys.path[1] == os.getcwd(), "kfp_runtime", os.environ.get("_KFP_RUNTIME"))
def fails():
    raise ValueError("the task broke")
def exits():
    sys.exit(7)
def sleeps():
    print("sleeping", flush=True)
    time.sleep(60)
'''


def kfp_command(function: str, tmp_path: Path, program: str = PROGRAM) -> list[str]:
    """The command kfp.local runs for a lightweight component (its `python3` replaced by this
    interpreter, as `SubprocessRunner(use_venv=False)` does)."""
    executor_input = {"inputs": {}, "outputs": {"outputFile": str(tmp_path / "output.json")}}
    return ["sh", "-ec", warm_worker.KFP_SCRIPT.replace("python3", sys.executable), program,
            "--executor_input", json.dumps(executor_input), "--function_to_execute", function]


@pytest.fixture(autouse=True)
def a_run_accepts_tasks() -> Iterator[None]:
    """Each test is a run of its own: one that stopped its tasks leaves the next able to start
    (a run resets the stop flag when it sets its jobs)."""
    set_local_jobs(1)
    yield
    set_local_jobs(1)


@pytest.fixture(params=["warm", "cold"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    if request.param == "warm":
        monkeypatch.setenv(warm_worker.ENV_SWITCH, "1")
        task_processes.start_warm_worker()
        assert task_processes._worker is not None
    try:
        yield request.param
    finally:
        task_processes.stop_warm_worker()


def run(command: list[str], capsys: pytest.CaptureFixture[str],
        env: dict[str, str] | None = None) -> tuple[int, str]:
    code = task_processes.run_task_process(command, env)
    return code, capsys.readouterr().out


def test_the_wrapper_is_the_one_compiled_packages_use(tmp_path: Path) -> None:
    from skitflow.api import compile_recipe

    package = yaml.safe_load(compile_recipe(REPO / "examples" / "tickets.yaml").text)
    commands = {tuple(executor["container"]["command"][:3])
                for executor in package["deploymentSpec"]["executors"].values()}
    assert commands == {("sh", "-ec", warm_worker.KFP_SCRIPT)}


def test_a_task_runs_with_its_own_environment_and_argv(mode: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(kfp_command("ok", tmp_path), capsys, {"TASK_VAR": "mine"})
    assert code == 0, out
    assert f"preloaded {mode == 'warm'}" in out
    assert "env mine argv0 executor_main.py path0 True kfp_runtime true" in out
    assert "Wrote executor output file" in out


def test_a_failing_task_reports_the_same_status_and_error(mode: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(kfp_command("fails", tmp_path), capsys)
    assert code == 1
    assert out.rstrip().splitlines()[-1] == "ValueError: the task broke"
    assert "Traceback (most recent call last):" in out
    code, out = run(kfp_command("exits", tmp_path), capsys)
    assert code == 7


def test_an_interrupted_task_stops_with_the_same_status(mode: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(
        task_processes.run_task_process(kfp_command("sleeps", tmp_path))))
    worker.start()
    deadline = time.monotonic() + 60
    while "sleeping" not in capsys.readouterr().out and time.monotonic() < deadline:
        time.sleep(0.05)  # readouterr drains; the line arrives once the task sleeps
    started = time.monotonic()
    task_processes.interrupt_tasks()
    worker.join(30)
    assert result == [128 + signal.SIGINT]
    assert time.monotonic() - started < task_processes.STOP_GRACE_SECONDS


def test_commands_the_worker_cannot_run_exactly_run_cold(mode: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    command = kfp_command("ok", tmp_path)
    changed = [*command[:2], command[2].replace('"$@"', '"$@"\necho after'), *command[3:]]
    code, out = run(changed, capsys)
    assert code == 0 and "preloaded False" in out and out.rstrip().endswith("after")
    code, out = run(command, capsys, {"OMP_NUM_THREADS": "1"})  # read when libraries load
    assert code == 0 and "preloaded False" in out


def test_warm_request_recognises_only_the_exact_wrapper() -> None:
    command = ["sh", "-ec", warm_worker.KFP_SCRIPT.replace("python3", sys.executable), "src",
               "--function_to_execute", "f"]
    env = dict(os.environ)
    assert warm_worker.warm_request(command, env, env) == {
        "program": "src", "args": ["--function_to_execute", "f"], "env": env}
    assert warm_worker.warm_request(["bash", *command[1:]], env, env) is None
    assert warm_worker.warm_request([*command[:2], warm_worker.KFP_SCRIPT, *command[3:]],
                                    env, env) is None  # python3 from PATH, not this interpreter
    assert warm_worker.warm_request(command, {**env, "PYTHONHASHSEED": "1"}, env) is None
    assert warm_worker.warm_request(command, {**env, "SOME_TASK_SETTING": "1"}, env) is not None


def test_the_switch_turns_the_worker_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(warm_worker.ENV_SWITCH, "0")
    task_processes.start_warm_worker()
    assert task_processes._worker is None


def test_tasks_started_from_several_threads_run_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Each request has its own connection and fork: three sleeping tasks run together, and
    interrupting them stops all three."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv(warm_worker.ENV_SWITCH, "1")
    task_processes.start_warm_worker()
    try:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            task_processes.run_task_process(kfp_command("sleeps", tmp_path)))) for _ in range(3)]
        for thread in threads:
            thread.start()
        seen = ""
        deadline = time.monotonic() + 60
        while seen.count("sleeping") < 3 and time.monotonic() < deadline:
            seen += capsys.readouterr().out
            time.sleep(0.05)
        assert seen.count("preloaded True") == 3
        task_processes.interrupt_tasks()
        for thread in threads:
            thread.join(30)
        assert results == [128 + signal.SIGINT] * 3
    finally:
        task_processes.stop_warm_worker()


def test_a_task_that_ignores_sigint_is_killed_after_the_grace_period(
        mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(task_processes, "STOP_GRACE_SECONDS", 1.0)
    program = PROGRAM.replace('print("sleeping"', 'import signal; signal.signal(signal.SIGINT, '
                              'signal.SIG_IGN); print("sleeping"')
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(
        task_processes.run_task_process(kfp_command("sleeps", tmp_path, program))))
    thread.start()
    deadline = time.monotonic() + 60
    while "sleeping" not in capsys.readouterr().out and time.monotonic() < deadline:
        time.sleep(0.05)
    task_processes.interrupt_tasks()
    thread.join(20)
    assert result == [-signal.SIGKILL]


RUNNER = """
import json, sys, threading
from skitflow.run import task_processes
task_processes.start_warm_worker()
command = json.loads(sys.argv[1])
threading.Thread(target=task_processes.run_task_process, args=(command,)).start()
"""


def test_a_killed_runner_takes_its_warm_tasks_with_it(tmp_path: Path) -> None:
    """SIGKILL of the runner: the worker gets its death signal, the guards theirs, and each
    guard kills its task's process group; nothing is left running."""
    from tests.test_run_faults import alive, descendants, kill_tree

    env = {**os.environ, "PYTHONPATH": str(REPO), warm_worker.ENV_SWITCH: "1"}
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(kfp_command("sleeps", tmp_path))],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        seen = []
        for line in runner.stdout:
            seen.append(line)
            if "sleeping" in line:
                break
        assert "preloaded True\n" in seen  # the task was forked from the worker
        tasks = descendants(runner.pid)
        assert len(tasks) >= 3  # the worker, the task's guard and the task
        runner.kill()
        runner.wait(10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in tasks if alive(pid)] == []
    finally:
        kill_tree(runner)


#: PROGRAM saying which of LATER's libraries the task found imported, and its scheduling
STAGED_PROGRAM = PROGRAM.replace(
    'print("preloaded"', 'print("later", "xgboost" in sys.modules, "figures", "matplotlib.figure" '
    'in sys.modules, "policy", os.sched_getscheduler(0), os.nice(0))\nprint("preloaded"',
) + "def train():\n    ok()\ndef evaluate():\n    ok()\n"


@pytest.fixture
def warm(monkeypatch: pytest.MonkeyPatch) -> Iterator[warm_worker.WarmWorker]:
    """A started warm worker whose tasks import skitflow from this checkout."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv(warm_worker.ENV_SWITCH, "1")
    task_processes.start_warm_worker()
    try:
        assert task_processes._worker is not None
        yield task_processes._worker
    finally:
        task_processes.stop_warm_worker()


def children(pid: int) -> list[int]:
    from tests.test_run_faults import _stat_fields

    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()
            and (fields := _stat_fields(int(entry))) and int(fields[1]) == pid]


def test_the_second_stage_takes_over_and_the_first_serves_again_if_it_dies(
        warm: warm_worker.WarmWorker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deadline = time.monotonic() + 120
    out = ""
    while "later True" not in out and time.monotonic() < deadline:
        code, out = run(kfp_command("ok", tmp_path, STAGED_PROGRAM), capsys)
        assert code == 0 and "preloaded True" in out
        time.sleep(0.5)
    assert "later True" in out and f"policy {os.SCHED_OTHER} {os.nice(0)}" in out  # the runner's
    stages = children(warm.process.pid)
    assert len(stages) == 1
    os.kill(stages[0], signal.SIGKILL)  # the third stage, its child, dies with it
    time.sleep(0.5)
    code, out = run(kfp_command("ok", tmp_path, STAGED_PROGRAM), capsys)
    assert code == 0 and "preloaded True" in out and "later False figures False" in out


def test_a_model_task_waits_for_the_stage_with_the_model_libraries_and_a_data_task_does_not(
        warm: warm_worker.WarmWorker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Started at once after the worker: `train` (a MODEL_COMPONENTS function) finds xgboost
    imported, because it waited for the second stage; `evaluate` also finds matplotlib, because
    it waited for the third; `ok`, a data task, is served at once."""
    assert "train" in warm_worker.MODEL_COMPONENTS and "ok" not in warm_worker.MODEL_COMPONENTS
    assert "evaluate" in warm_worker.FIGURE_COMPONENTS and "train" not in warm_worker.FIGURE_COMPONENTS
    code, out = run(kfp_command("ok", tmp_path, STAGED_PROGRAM), capsys)
    assert code == 0 and "preloaded True" in out and "later False" in out
    code, out = run(kfp_command("train", tmp_path, STAGED_PROGRAM), capsys)
    assert code == 0 and "later True" in out and "env None" in out
    code, out = run(kfp_command("evaluate", tmp_path, STAGED_PROGRAM), capsys)
    assert code == 0 and "later True figures True" in out and "env None" in out


def test_the_third_stage_takes_over_and_the_second_serves_again_if_it_dies(
        warm: warm_worker.WarmWorker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each stage is forked by the one before; killing the last leaves the one before serving,
    with its own modules (xgboost) and without the last one's (matplotlib)."""
    code, out = run(kfp_command("evaluate", tmp_path, STAGED_PROGRAM), capsys)
    assert code == 0 and "later True figures True" in out
    second = children(warm.process.pid)
    assert len(second) == 1
    third = children(second[0])
    assert len(third) == 1 and third == warm._stages[1:]
    os.kill(third[0], signal.SIGKILL)
    time.sleep(0.5)
    code, out = run(kfp_command("ok", tmp_path, STAGED_PROGRAM), capsys)
    assert code == 0 and "later True figures False" in out


def test_a_large_request_arrives_whole(mode: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Arguments over the 1 MB the worker reads at first go over the socket in parts."""
    command = [*kfp_command("ok", tmp_path), *(["--padding", "x" * 100_000] * 9)]
    code, out = run(command, capsys)
    assert code == 0 and f"preloaded {mode == 'warm'}" in out


def test_commands_exec_would_refuse_run_cold_and_fail_as_before(
        mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = PROGRAM + "# " + "x" * 200_000 + "\n"  # one argument over Linux's 128 KiB limit
    with pytest.raises(OSError, match="Argument list too long"):
        task_processes.run_task_process(kfp_command("ok", tmp_path, program))


def test_a_run_refused_after_the_worker_started_leaves_no_worker_behind(tmp_path: Path) -> None:
    """`skitflow run` starts the worker before it compiles; a refused parameter (exit 2) stops it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path), warm_worker.ENV_SWITCH: "1"}
    result = subprocess.run([sys.executable, "-m", "skitflow", "run", "examples/tickets.yaml",
                             "-p", "test_size=lots", "--out", str(tmp_path / "run")], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert "test_size" in result.stderr and "Traceback" not in result.stderr
    time.sleep(0.2)
    assert not list(tmp_path.glob("skitflow-warm-*"))
    workers = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and str(tmp_path).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                workers.append(entry)
    assert workers == []
