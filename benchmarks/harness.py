"""Measuring whole processes: wall time and peak memory of a command and everything it starts.

Each command runs as a subprocess under `/usr/bin/time -v` when it exists (else plain, with
`os.wait4`). Its peak memory is the kernel's maxrss for the command *and its waited-for
descendants*: the largest resident set of any single process in the tree, not the sum of
processes alive at the same time. Where a command runs tasks in child processes (`skitflow run`),
`sample_tree=True` also polls /proc every 0.1 s and records the peak of the summed RSS of the
whole tree (shared pages are counted once per process, so it errs high).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

#: The least any pydantic validation of a recipe costs, as `python -c PYDANTIC_FLOOR RECIPE`:
#: yaml, pydantic's BaseModel and importlib.metadata (pydantic's plugin loader imports it, as does
#: the step registry's scan) imported, one model built, the recipe parsed.
PYDANTIC_FLOOR = ("import sys, yaml, importlib.metadata\nfrom pydantic import BaseModel\n"
                  "class One(BaseModel):\n    x: int\nOne(x=1); yaml.safe_load(open(sys.argv[1]))")
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class Sample:
    """One run of one command."""

    wall_s: float
    peak_kb: int | None  # maxrss: the largest single process of the tree
    tree_peak_kb: int | None = None  # sampled peak of the summed RSS of the tree
    cpu_s: float | None = None  # user + system time of the whole tree
    extra: dict = field(default_factory=dict)  # what the benchmark read from the run's outputs


class CommandFailed(RuntimeError):
    pass


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree_rss_kb(root: int) -> int:
    """Summed resident set of `root` and all its descendants, now."""
    children, total, todo = _children_map(), 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * _PAGE_KB
        except (OSError, IndexError, ValueError):
            continue
    return total


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb = pid, interval, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(self.pid))
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak_kb


def measure(cmd: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None, sample_tree: bool = False) -> Sample:
    """Run `cmd` to completion; its output goes to `log`. Raises CommandFailed on a non-zero exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    time_file = log.with_suffix(".time")
    argv = [GNU_TIME, "-v", "-o", str(time_file), *cmd] if GNU_TIME else list(cmd)
    with open(log, "w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        sampler = _TreeSampler(process.pid) if sample_tree else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    tree = sampler.stop() if sampler else None
    if process.returncode != 0:
        raise CommandFailed(f"exit {process.returncode}: {' '.join(cmd)} (log: {log})")
    peak = int(usage.ru_maxrss)  # KiB on Linux
    if GNU_TIME:
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
        peak = int(found.group(1)) if found else peak
    return Sample(round(wall, 4), peak, tree, round(usage.ru_utime + usage.ru_stime, 3))


@dataclass
class Comparison:
    """Alternating runs of two commands (skitflow and its baseline, by default) and their medians."""

    a: list[Sample]
    b: list[Sample]
    names: tuple[str, str] = ("skitflow", "baseline")

    def median(self, side: str, attr: str) -> float | None:
        samples = self.a if side == self.names[0] else self.b
        values = [v for v in (getattr(s, attr) for s in samples) if v is not None]
        return statistics.median(values) if values else None

    def ratio(self, attr: str) -> float | None:
        """Median of the first side over median of the second."""
        a, b = self.median(self.names[0], attr), self.median(self.names[1], attr)
        return round(a / b, 3) if a is not None and b else None

    def to_json(self) -> dict:
        sides = {}
        for name, samples in zip(self.names, (self.a, self.b), strict=True):
            sides[name] = {
                "median_wall_s": self.median(name, "wall_s"),
                "median_peak_kb": self.median(name, "peak_kb"),
                "median_tree_peak_kb": self.median(name, "tree_peak_kb"),
                "median_cpu_s": self.median(name, "cpu_s"),
                "samples": [asdict(s) for s in samples],
            }
        return {**sides, "wall_ratio": self.ratio("wall_s"), "peak_ratio": self.ratio("peak_kb")}


Runner = Callable[[int], Sample]


def alternate(a: Runner, b: Runner, repeat: int, warmup: int = 0,
              names: tuple[str, str] = ("skitflow", "baseline")) -> Comparison:
    """Run both sides `repeat` times, alternating which goes first, after untimed warm-up runs.

    Each runner gets the repetition number (negative for warm-ups) and returns its Sample.
    """
    for index in range(warmup):
        a(-1 - index)
        b(-1 - index)
    result = Comparison([], [], names)
    for index in range(repeat):
        if index % 2 == 0:
            result.a.append(a(index))
            result.b.append(b(index))
        else:
            result.b.append(b(index))
            result.a.append(a(index))
    return result


def machine_facts() -> dict:
    """Cores, memory, CPU, Python and the library versions the results depend on."""
    def first(path: str, prefix: str) -> str:
        try:
            text = Path(path).read_text()
        except OSError:
            return ""
        return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                     if line.startswith(prefix)), "")

    model = first("/proc/cpuinfo", "model name")
    mem_kb = int((first("/proc/meminfo", "MemTotal").split() or ["0"])[0])
    versions = {}
    for package in ("kfp", "pandas", "xgboost", "pyarrow", "numpy", "scikit-learn", "pydantic",
                    "typer"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "memory_tool": "GNU time -v (maxrss)" if GNU_TIME else "os.wait4 rusage (maxrss)",
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def clean(path: Path) -> None:
    """Remove a file or folder if it is there."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
