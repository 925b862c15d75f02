"""Hostile inputs (issue 9's reproducers and a few more) and a way to run the real CLI on them.

Shared by tests/test_hostile.py and benchmarks/hostile_inputs.py; standard library only.
Each child runs under a 1 GiB address-space cap, so a runaway input fails instead of taking the
machine's memory, and reports its own peak RSS (VmHWM from /proc) when it exits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAD = "apiVersion: skitflow/v1\nname: hostile\n"
SOURCE = "source:\n  csv: {path: data.csv}\n"
BASE = HEAD + SOURCE
ADDRESS_SPACE_CAP = 1024 * 1024 * 1024
#: A secret the children see in their environment; it must never reach their output.
SECRET_ENV = {"SKITFLOW_HOSTILE_API_TOKEN": "hunter2-hostile-secret-value"}
LOCATION = re.compile(r"--> (?P<file>[^\s:]+):(?P<line>\d+):(?P<column>\d+)")


def _billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: ~330 bytes that expand to 9**9 strings."""
    lines = ["a: &a lol"]
    names = "abcdefghij"
    for level in range(1, levels + 1):
        name, prev = names[level], names[level - 1]
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _when(expression: str) -> str:
    return (BASE + "steps: [{dropna: {}}]\nsplit:\n  train_test: {test_size: 0.2}\n"
            f"  when: '{expression}'\n")


def _split(extra: str) -> str:
    return BASE + "split:\n  train_test: {test_size: 0.2}\n" + extra


@dataclass(frozen=True)
class Hostile:
    id: str
    data: bytes
    expect: str  # a phrase of the error message
    command: str = "validate"
    exit_code: int = 2


def _h(id: str, text: str | bytes, expect: str, **kw) -> Hostile:
    return Hostile(id, text if isinstance(text, bytes) else text.encode("utf-8"), expect, **kw)


REPRODUCERS: list[Hostile] = [
    # YAML tags that would construct objects or change types, wherever they are written.
    _h("tag-int-x", BASE + "description: !!int x\n", "YAML tag `!!int`"),
    _h("tag-float-x", BASE + "description: !!float x\n", "YAML tag `!!float`"),
    _h("tag-int-colon-L", BASE + "description: !!int :L\n", "YAML tag `!!int`"),
    _h("tag-timestamp-empty", BASE + "description: !!timestamp\n", "YAML tag `!!timestamp`"),
    _h("tag-inside-a-key", BASE + "defaults:\n  node_selector: {? {s: !!int x} : a}\n",
       "YAML tag `!!int`"),
    _h("tag-on-a-mapping", BASE + "defaults: !!map {caching: true}\n", "YAML tag `!!map` on a mapping"),
    _h("tag-on-a-list", BASE + "steps: !!seq [{dropna: {}}]\n", "YAML tag `!!seq` on a list"),
    _h("tag-on-a-key", BASE + "!!str description: x\n", "YAML tag `!!str`"),
    _h("tag-python-object", BASE + "description: !!python/object/apply:os.system [echo pwned]\n",
       "YAML tag `!!python/object/apply:os.system`"),
    _h("tag-binary-path", HEAD + "source:\n  csv: {path: !!binary aGVsbG8=}\n", "YAML tag `!!binary`"),
    # Aliases: recursive, undefined, and a 9-level billion laughs (~300 bytes).
    _h("recursive-alias", BASE + "x: &A\n  t: *A\n", "recursive alias `*A`"),
    _h("undefined-alias", BASE + "description: *nowhere\n", "unknown alias `*nowhere`"),
    _h("billion-laughs", _billion_laughs(), "more than 10,000 YAML values"),
    # Nesting, size, encoding, tabs, emptiness.
    _h("nested-500-lists", BASE + "description: " + "[" * 500 + "]" * 500 + "\n",
       "nested more than 100 levels deep"),
    _h("nested-500-mappings", BASE + "description: " + "{a: " * 500 + "1" + "}" * 500 + "\n",
       "nested more than 100 levels deep"),
    _h("file-over-256-KiB", BASE + "description: '" + "x" * (300 * 1024) + "'\n",
       "larger than 256 KiB"),
    _h("values-over-the-limit", BASE + "description: [" + ", ".join(["1"] * 15_000) + "]\n",
       "more than 10,000 YAML values"),
    _h("not-utf-8", BASE.encode() + b"description: caf\xe9\n", "not UTF-8 text"),
    _h("tab-indentation", HEAD + "source:\n\tcsv: {path: data.csv}\n",
       "tabs are not allowed in YAML indentation"),
    _h("empty-file", "# nothing but a comment\n", "the recipe is empty"),
    _h("control-character", BASE + "description: a\x07b\n", "is not allowed in YAML"),
    _h("nul-inside-a-template", HEAD + "source:\n csv:\n  s: [\"{{''}}\\0params.e\\0\"]\n",
       "control character"),
    _h("bad-implicit-date", BASE + "schedule: {cron: '0 0 * * * *', start: 2024-13-45}\n",
       "not a valid one"),
    # Values that used to pass validate and fail in compile (exit 1).
    _h("memory-2Gx", BASE + "defaults: {resources: {memory: 2Gx}}\n", "not a memory amount"),
    _h("cpu-lots", BASE + "defaults: {resources: {cpu: lots}}\n", "not a CPU amount"),
    # Templates: escapes to the environment and unbounded work (helper `secrets`).
    _h("template-env-environ", BASE + 'description: "{{ env._environ }}"\n', "template"),
    _h("template-env-dict", BASE + 'description: "{{ env.__dict__ }}"\n', "template"),
    _h("template-params-class", BASE + 'description: "{{ params.__class__ }}"\n', "template"),
    _h("template-self", BASE + 'description: "{{ self }}"\n', "template"),
    _h("template-huge-power", BASE + 'description: "{{ 9**(9**9) }}"\n', "template"),
    _h("template-huge-string", BASE + "description: \"{{ 'a' * 10**10 }}\"\n", "template"),
    # The expression language (helper `expr`).
    _h("when-3000-unary-minus", _when("-" * 3000 + "rows > 1"), "when"),
]

#: Recipes that must succeed (exit 0), with the command that proves it.
MUST_PASS: list[Hostile] = [
    _h("parameter-without-default-after-one-with",
       BASE + "parameters: {a: {type: int, default: 1}, b: {type: int}}\n"
       "steps:\n  - sample: {n: '{{ params.a }}'}\n  - sample: {n: '{{ params.b }}'}\n",
       "compiled", command="compile", exit_code=0),
]


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float
    timed_out: bool


#: Runs `python -m skitflow ARGS` under the address-space cap and writes the process's own peak
#: RSS (VmHWM) at exit. wait4's ru_maxrss would include the forking test process's memory.
_CHILD = """
import atexit, resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
def _peak():
    with open("/proc/self/status") as status, open({peak!r}, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(_peak)
runpy.run_module("skitflow", run_name="__main__", alter_sys=True)
"""


def run_cli(args: list[str], cwd: Path, timeout: float = 10.0, skitflow: Path = REPO) -> Outcome:
    """`python -m skitflow ARGS` in a child; its exit code, output, wall time and peak RSS.

    `skitflow` is the checkout whose package runs (another one to compare versions). The peak is
    0 when the child was killed before it could report it.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(skitflow),
           "HOME": str(cwd), "LANG": "C.UTF-8", "COLUMNS": "200", **SECRET_ENV}
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak_kib"
        out, err = Path(scratch) / "out", Path(scratch) / "err"
        code = _CHILD.format(cap=ADDRESS_SPACE_CAP, peak=str(peak))
        started = time.perf_counter()
        with out.open("wb") as stdout, err.open("wb") as stderr:
            try:
                proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                                      stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                      timeout=timeout, check=False)
                exit_code, timed_out = proc.returncode, False
            except subprocess.TimeoutExpired:
                exit_code, timed_out = -9, True
        seconds = time.perf_counter() - started
        peak_mib = int(peak.read_text()) / 1024 if peak.exists() else 0.0
        return Outcome(exit_code, out.read_text("utf-8", "replace"), err.read_text("utf-8", "replace"),
                       seconds, peak_mib, timed_out)


def run_hostile(case: Hostile, folder: Path, timeout: float = 10.0, skitflow: Path = REPO) -> Outcome:
    """Write the case to FOLDER/<id>.yaml and run its command on it from FOLDER."""
    path = folder / f"{case.id}.yaml"
    path.write_bytes(case.data)
    args = [case.command, path.name]
    if case.command == "compile":
        args += ["--target", "local", "-o", str(folder / f"{case.id}.package.yaml")]
    return run_cli(args, folder, timeout, skitflow)
