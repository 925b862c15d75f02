"""Faults around `skitflow run`: stale or damaged cache entries, concurrent runs, killed and
interrupted runs, leftovers, failing sinks beside independent ones, and the one atomic writer.

The unit tests exercise the real helpers (and kfp.local's real cache class); the end-to-end ones,
marked `slow`, run the CLI as a subprocess on tiny generated CSVs with the `file` sink. The
hanging task of the kill/interrupt tests is an `s3` sink pointed at a socket on 127.0.0.1 that
accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skitflow.util import atomic
from skitflow.util.atomic import atomic_folder, atomic_path, sweep_stale_temps, write_text
from skitflow.util.hashing import file_digest, tree_digest

REPO = Path(__file__).resolve().parent.parent


# ---- helpers --------------------------------------------------------------------------------


def skitflow(*args: object, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skitflow", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def dead_pid() -> int:
    """The id of a process that has just exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def temp_leftovers(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.tmp"))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # [state, ppid, ...]


def kill_tree(process: subprocess.Popen) -> None:
    """Kill a test's process and everything below it, and reap it (cleanup after a fault test)."""
    for pid in descendants(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
    process.communicate()


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, read from /proc (no psutil)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


# ---- the atomic writer ----------------------------------------------------------------------


def test_atomic_write_replaces_whole_files_and_fsyncs_file_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "deep" / "summary.json"
    assert write_text(target, "first") == target
    write_text(target, "second")
    assert target.read_text() == "second"
    assert synced.count(str(tmp_path / "deep")) == 2  # the folder, after each rename
    assert len([s for s in synced if ".summary.json." in s]) == 2  # each temp file before it
    assert temp_leftovers(tmp_path) == []


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "data.parquet"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".data.parquet.")
        assert f".{os.getpid()}." in temporary.name  # the sweeper can tell who wrote it
        temporary.write_bytes(b"half")
        raise OSError("disk full")
    assert target.read_bytes() == b"old"
    assert temp_leftovers(tmp_path) == []


def test_atomic_write_without_overwrite_keeps_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("keep me")
    with pytest.raises(FileExistsError):
        atomic.write_bytes(target, b"new", overwrite=False)
    assert target.read_text() == "keep me"
    atomic.write_bytes(tmp_path / "fresh.json", b"new", overwrite=False)
    assert (tmp_path / "fresh.json").read_bytes() == b"new"
    assert temp_leftovers(tmp_path) == []


def test_atomic_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        written = write_text(tmp_path / "package.yaml", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == 0o640


def test_atomic_folder_swaps_and_restores_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "site"
    target.mkdir()
    (target / "old.html").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as temporary:
        temporary.mkdir()
        (temporary / "half.html").write_text("half")
        raise RuntimeError("copy failed")
    assert sorted(p.name for p in target.iterdir()) == ["old.html"]
    with atomic_folder(target) as temporary:
        temporary.mkdir()
        (temporary / "new.html").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_no_other_module_writes_files_by_hand() -> None:
    """One atomic writer: no temp-and-rename copies elsewhere in the package."""
    offenders = []
    for path in (REPO / "skitflow").rglob("*.py"):
        if path.name == "atomic.py" or "connectors" in path.parts:
            continue
        text = path.read_text()
        if "os.replace(" in text or "mkstemp(" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


# ---- sweeping leftovers ---------------------------------------------------------------------


def test_stale_temps_of_dead_processes_are_swept_live_ones_kept(tmp_path: Path) -> None:
    from skitflow.run.local import sweep_leftovers

    runs, cache = tmp_path / "runs", tmp_path / "cache"
    old_run = runs / "r-1"
    (old_run / "r-2026/csv-dropna").mkdir(parents=True)
    (old_run / "package.yaml").write_text("# PIPELINE DEFINITION")
    dead = dead_pid()
    stale = [old_run / "r-2026/csv-dropna" / f".out.{dead}.tmp",  # as the issue saw them
             cache / "abc" / f".0123.json.{dead}.0a1b2c3d.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = old_run / f".summary.json.{sleeper.pid}.0a1b2c3d.tmp"
        live.write_text("being written")
        mine = cache / f".entry.{os.getpid()}.0a1b2c3d.tmp"
        mine.write_text("being written")
        not_a_run = tmp_path / "runs" / "notes"  # no package.yaml: not a run folder, not touched
        not_a_run.mkdir()
        (not_a_run / f".draft.{dead}.tmp").write_text("user's")
        removed = sweep_leftovers(runs / "r-2", cache)
        assert sorted(removed) == sorted(stale)
        assert not any(p.exists() for p in stale)
        assert live.exists() and mine.exists() and (not_a_run / f".draft.{dead}.tmp").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sweep_stale_temps(tmp_path / "missing") == []


# ---- run folders ----------------------------------------------------------------------------


def test_run_folders_are_created_exclusively_even_in_the_same_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skitflow.run import local

    monkeypatch.setattr(local.time, "strftime", lambda fmt: "20260101-120000")
    made: list[Path] = []
    lock = threading.Lock()

    def make() -> None:
        folder = local.new_run_folder("tickets", tmp_path / "runs")
        with lock:
            made.append(folder)

    threads = [threading.Thread(target=make) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 12 and all(folder.is_dir() for folder in made)
    assert tmp_path / "runs" / "tickets-20260101-120000" in made
    assert tmp_path / "runs" / "tickets-20260101-120000-12" in made


# ---- cache keys and verification ------------------------------------------------------------

TINY = """\
apiVersion: skitflow/v1
name: tiny
source:
  csv: {path: data.csv}
steps:
  - dropna: {}
sinks:
  - file: {path: out.csv, format: csv}
"""


def edit_keeping_size_and_mtime(path: Path, text: str) -> None:
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_the_source_fingerprint_follows_content_not_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skitflow.api import compile_recipe
    from skitflow.run.local import local_source_files, source_fingerprint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("x,y\n1,a\n2,b\n")
    (tmp_path / "tiny.yaml").write_text(TINY)
    package = compile_recipe(tmp_path / "tiny.yaml")
    assert local_source_files(package, {}) == ["data.csv"]
    first = source_fingerprint(package, {})
    assert source_fingerprint(package, {}) == first
    edit_keeping_size_and_mtime(tmp_path / "data.csv", "x,y\n1,a\n3,b\n")
    assert source_fingerprint(package, {}) != first


def test_templated_source_paths_are_fingerprinted_as_the_task_resolves_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skitflow.api import compile_recipe
    from skitflow.run.local import local_source_files, source_fingerprint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.csv").write_text("x,y\n1,a\n")
    (tmp_path / "b.csv").write_text("x,y\n2,b\n")
    (tmp_path / "whole.yaml").write_text(TINY.replace(
        "name: tiny\n", "name: whole\nparameters:\n  data: {type: str, default: a.csv}\n").replace(
        "path: data.csv", "path: '{{ params.data }}'"))
    (tmp_path / "part.yaml").write_text(TINY.replace(
        "name: tiny\n", "name: part\nparameters:\n  day: {type: str, default: a}\n").replace(
        "path: data.csv", "path: '{{ params.day }}.csv'"))
    for recipe in ("whole.yaml", "part.yaml"):
        package = compile_recipe(tmp_path / recipe)
        value = "b.csv" if recipe == "whole.yaml" else "b"
        name = "data" if recipe == "whole.yaml" else "day"
        assert local_source_files(package, {name: value}) == ["b.csv"]
        assert source_fingerprint(package, {name: value}) != source_fingerprint(package, {name: "a" if name == "day" else "a.csv"})
    (tmp_path / "by-run.yaml").write_text(TINY.replace("path: data.csv", "path: 'in/{{ run.id }}.csv'"))
    package = compile_recipe(tmp_path / "by-run.yaml")
    assert local_source_files(package, {}) is None  # only the task knows the path: never reused
    assert source_fingerprint(package, {}) != source_fingerprint(package, {})


def test_digests_are_sha256_of_content_and_of_whole_trees(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == "sha256:" + hashlib.sha256(data).hexdigest()
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_text("1")
    (tree / "sub" / "b").write_text("2")
    first = tree_digest(tree)
    (tree / "sub" / "b").write_text("3")
    assert tree_digest(tree) != first
    (tree / "sub" / "b").write_text("2")
    assert tree_digest(tree) == first
    (tree / "sub" / "b").rename(tree / "sub" / "c")
    assert tree_digest(tree) != first


@pytest.fixture
def verified_cache(tmp_path: Path) -> Iterator[object]:
    from skitflow.compile.kfp_compat import import_kfp, patch_kfp_local

    import_kfp()
    patch_kfp_local()
    from kfp.local import cache

    yield cache.LocalCache(str(tmp_path / "cache"))


def test_a_cached_artifact_that_changed_is_a_miss(tmp_path: Path, verified_cache) -> None:
    from kfp import dsl

    artifact_file = tmp_path / "run1" / "out"
    artifact_file.parent.mkdir()
    artifact_file.write_bytes(b"PAR1" + b"rows" * 1000 + b"PAR1")
    original = artifact_file.read_bytes()
    outputs = {"out": dsl.Dataset(name="out", uri=str(artifact_file), metadata={"rows": 3}),
               "rows": 3}
    verified_cache.put("k1", outputs)
    hit = verified_cache.get("k1")
    assert hit is not None and hit["rows"] == 3 and hit["out"].uri == str(artifact_file)

    artifact_file.write_bytes(original[: len(original) // 2])  # truncated
    assert verified_cache.get("k1") is None
    artifact_file.write_bytes(original[:-4] + b"XXXX")  # same size, other bytes
    assert verified_cache.get("k1") is None
    artifact_file.write_bytes(original)
    assert verified_cache.get("k1") is not None
    artifact_file.unlink()
    assert verified_cache.get("k1") is None
    # an entry written without checksums (by plain kfp.local) is never trusted
    (tmp_path / "cache" / "k2.json").write_text(json.dumps({"rows": 3}))
    assert verified_cache.get("k2") is None
    (tmp_path / "cache" / "k3.json").write_text('{"skitflow": 1, "outp')  # torn by hand
    assert verified_cache.get("k3") is None
    assert temp_leftovers(tmp_path / "cache") == []


# ---- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cache_never_serves_stale_or_damaged_results(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n1,a\n2,b\n")
    (tmp_path / "tiny.yaml").write_text(TINY)

    def run(name: str) -> dict:
        result = skitflow("run", "tiny.yaml", "--out", name, "--cache-dir", "cache", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return summary(tmp_path / name)

    run("run1")
    # an edit that keeps the size, with the mtime put back, must be read
    edit_keeping_size_and_mtime(tmp_path / "data.csv", "x,y\n1,a\n3,b\n")
    second = run("run2")
    assert second["tasks"]["csv-dropna"]["status"] == "succeeded"
    assert (tmp_path / "out.csv").read_text() == "x,y\n1,a\n3,b\n"

    # the cached dataset is truncated behind the cache's back: a miss, never published
    artifact = Path(second["tasks"]["csv-dropna"]["artifacts"]["out"])
    artifact.write_bytes(artifact.read_bytes()[:40])
    (tmp_path / "out.csv").unlink()
    third = run("run3")
    assert third["tasks"]["csv-dropna"]["status"] == "succeeded"
    assert (tmp_path / "out.csv").read_text() == "x,y\n1,a\n3,b\n"

    fourth = run("run4")  # unchanged data and intact artifacts are still reused
    assert fourth["tasks"]["csv-dropna"]["status"] == "cached"
    assert (tmp_path / "out.csv").read_text() == "x,y\n1,a\n3,b\n"


@pytest.mark.slow
def test_concurrent_runs_get_their_own_folders_and_share_one_consistent_cache(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    (tmp_path / "tiny.yaml").write_text(TINY.replace("out.csv", "'out/{{ run.id }}.csv'"))
    # a leftover of a killed earlier run, to be swept by whichever run starts first
    old = tmp_path / "runs" / "tiny-old"
    old.mkdir(parents=True)
    (old / "package.yaml").write_text("# PIPELINE DEFINITION")
    leftover = old / f".out.{dead_pid()}.tmp"
    leftover.write_text("half")

    command = [sys.executable, "-m", "skitflow", "run", "tiny.yaml", "--cache-dir", "cache"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out + err
    folders = sorted(p for p in (tmp_path / "runs").iterdir() if p.name != "tiny-old")
    assert len(folders) == 2, folders
    for folder in folders:
        assert summary(folder)["status"] == "succeeded"
        assert (folder / "package.yaml").read_text().startswith("# PIPELINE DEFINITION")
        assert "Pipeline" in (folder / "run.log").read_text()
    assert not leftover.exists()
    entries = sorted((tmp_path / "cache").rglob("*.json"))
    assert entries, "the tasks' results were cached"
    for entry in entries:
        assert set(json.loads(entry.read_text())) == {"skitflow", "outputs", "checksums"}
    assert temp_leftovers(tmp_path / "cache") == []


INDEPENDENT = """\
apiVersion: skitflow/v1
name: sinks
source:
  csv: {path: data.csv}
steps:
  - dropna: {}
split:
  train_test: {test_size: 0.5, seed: 1}
sinks:
  - file: {path: out/a.csv, format: csv}
  - file: {path: out/b.csv, format: csv, overwrite: false}
  - file: {path: out/c.csv, format: csv}
  - file: {path: out/test.csv, format: csv}
    input: test
"""


@pytest.mark.slow
def test_a_failing_sink_fails_the_run_but_independent_sinks_still_run(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.csv").write_text("keep me")
    (tmp_path / "sinks.yaml").write_text(INDEPENDENT)
    result = skitflow("run", "sinks.yaml", "--out", "run", "--no-cache", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "step `file` in task `file-dataset-2` failed" in result.stderr
    assert "Traceback" not in result.stderr
    report = summary(tmp_path / "run")
    assert report["status"] == "failed" and report["succeeded"] is False
    assert [f["task"] for f in report["failures"]] == ["file-dataset-2"]
    assert report["tasks"]["file-dataset-2"]["status"] == "failed"
    for task in ("file-dataset", "file-dataset-3", "file-test", "split-train-test"):
        assert report["tasks"][task]["status"] == "succeeded", task
    assert (tmp_path / "out" / "b.csv").read_text() == "keep me"
    assert len((tmp_path / "out" / "a.csv").read_text().splitlines()) == 21
    assert len((tmp_path / "out" / "c.csv").read_text().splitlines()) == 21
    assert len((tmp_path / "out" / "test.csv").read_text().splitlines()) == 11
    log = (tmp_path / "run" / "run.log").read_text()
    assert "skitflow: failed: task `file-dataset-2` (step `file`)" in log


@pytest.mark.slow
def test_tasks_downstream_of_a_failure_are_named_with_the_failure(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n1,a\n2,b\n")
    (tmp_path / "bad.yaml").write_text(TINY.replace("dropna: {}", "cast: {mapping: {y: int}}")
                                       + "  - file: {path: out2.csv, format: csv}\n")
    result = skitflow("run", "bad.yaml", "--out", "run", "--no-cache", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    report = summary(tmp_path / "run")
    assert report["tasks"]["csv-cast"]["status"] == "failed"
    assert report["not_run"] == {"file-dataset": ["csv-cast"], "file-dataset-2": ["csv-cast"]}
    assert report["tasks"]["file-dataset"]["blocked_by"] == ["csv-cast"]
    log = (tmp_path / "run" / "run.log").read_text()
    assert "skitflow: not run: task `file-dataset`, because `csv-cast` failed" in log
    assert "not run because of it: `file-dataset`, `file-dataset-2`" in result.stderr
    assert not (tmp_path / "out.csv").exists()


HANGING = """\
apiVersion: skitflow/v1
name: hang
source:
  csv: {path: data.csv}
steps:
  - dropna: {}
sinks:
  - file: {path: out/first.csv, format: csv}
  - s3: {uri: "s3://bucket/never.csv"}
"""


@pytest.fixture
def hanging_run(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """`skitflow run` whose last task (an s3 sink) waits on a server that never answers; yields
    once that task runs."""
    (tmp_path / "data.csv").write_text("x,y\n1,a\n2,b\n")
    (tmp_path / "hang.yaml").write_text(HANGING)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing is ever read or answered
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}
    cli = subprocess.Popen([sys.executable, "-m", "skitflow", "run", "hang.yaml", "--out", "run",
                            "--no-cache"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert cli.stdout is not None
        for line in cli.stdout:
            if "s3-dataset running" in line:
                break
        else:
            pytest.fail(f"the s3 task never started: {cli.stderr.read() if cli.stderr else ''}")
        deadline = time.monotonic() + 30
        while not descendants(cli.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield cli
    finally:
        kill_tree(cli)
        silent.close()


@pytest.mark.slow
def test_sigkill_of_the_cli_leaves_no_task_process_running(hanging_run: subprocess.Popen) -> None:
    tasks = descendants(hanging_run.pid)
    assert tasks and any(alive(pid) for pid in tasks)
    hanging_run.send_signal(signal.SIGKILL)
    hanging_run.wait(10)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in tasks if alive(pid)] == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_tasks_and_writes_an_interrupted_summary(
    hanging_run: subprocess.Popen, tmp_path: Path, signum: int
) -> None:
    tasks = descendants(hanging_run.pid)
    hanging_run.send_signal(signum)
    _, err = hanging_run.communicate(timeout=30)
    assert hanging_run.returncode == 128 + signum, err
    assert f"run interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
    report = summary(tmp_path / "run")
    assert report["status"] == "interrupted"
    assert report["interrupted"] == signal.Signals(signum).name
    # the two sinks are independent: kfp.local may start either first
    assert report["finished"][0] == "csv-dropna"
    assert set(report["finished"]) <= {"csv-dropna", "file-dataset"}
    assert report["tasks"]["s3-dataset"]["status"] == "interrupted"
    assert (tmp_path / "out" / "first.csv").exists() == ("file-dataset" in report["finished"])
    assert [pid for pid in tasks if alive(pid)] == []
    assert "skitflow: run interrupted by" in (tmp_path / "run" / "run.log").read_text()
