"""Where the time goes: import costs, cProfile of the CLI, and each task of the local run.

    python benchmarks/profiling.py                   # all parts, local-run tasks on 1,000,000 rows
    python benchmarks/profiling.py --only imports,cli
    python benchmarks/profiling.py --rows 100000     # smaller task profiles

Writes benchmarks/results/raw/profiles/: *.prof (open with `python -m pstats` or snakeviz) and
summary.md (also printed). The findings drawn from it are in benchmarks/FINDINGS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import LOCAL_RUN, PYTHON, RAW, ROOT, SEED, SKITFLOW, dataset, run  # noqa: E402

OUT = RAW / "profiles"

# -- import costs -------------------------------------------------------------------------------

# Each stage is timed in a fresh process, in this order (a module already loaded costs nothing).
STAGES = {
    "compile": [
        ("typer", "import typer"),
        ("rich.console", "import rich.console"),
        ("pydantic (models)", "import pydantic.main"),
        ("kfp (with kfp.client)", "import kfp"),
        ("kfp.kubernetes (secrets, timeouts...)", "import kfp.kubernetes"),
        ("skitflow.cli", "import skitflow.cli"),
        ("skitflow.api (recipe, plan, steps)", "import skitflow.api"),
        ("load + plan + compile seed", "from skitflow.api import compile_recipe; "
                                       f"compile_recipe({SEED!r})"),
    ],
    "compile, kfp.client skipped": [
        ("typer", "import typer"),
        ("rich.console", "import rich.console"),
        ("pydantic (models)", "import pydantic.main"),
        ("kfp (_KFP_RUNTIME=true during `import kfp`)",
         "import os; os.environ['_KFP_RUNTIME'] = 'true'; import kfp; del os.environ['_KFP_RUNTIME']"),
        ("kfp.kubernetes (secrets, timeouts...)", "import kfp.kubernetes"),
        ("skitflow.cli", "import skitflow.cli"),
        ("skitflow.api (recipe, plan, steps)", "import skitflow.api"),
        ("load + plan + compile seed", "from skitflow.api import compile_recipe; "
                                       f"compile_recipe({SEED!r})"),
    ],
    "baseline compile (compile_seed.py)": [
        ("kfp (with kfp.client)", "import kfp"),
        ("kfp.kubernetes", "import kfp.kubernetes"),
        ("define and compile the pipeline",
         "import runpy, sys; sys.argv = ['x', 'benchmarks/results/raw/profiles/baseline-seed.yaml']; "
         "runpy.run_path('benchmarks/baselines/compile_seed.py', run_name='__main__')"),
    ],
    "validate": [
        ("typer", "import typer"),
        ("rich.console", "import rich.console"),
        ("skitflow.cli (commands)", "import skitflow.cli"),
        ("pydantic (models)", "import pydantic.main"),
        ("skitflow.recipe.loader (recipe models, yaml)", "import skitflow.recipe.loader"),
        ("skitflow.steps.registry (all step modules)", "import skitflow.steps.registry"),
        ("skitflow.plan.planner", "import skitflow.plan.planner"),
        ("load + plan seed", "from skitflow.recipe.loader import load_recipe_file; "
                             "from skitflow.plan.planner import build_plan; "
                             "from skitflow.steps.registry import default_registry; "
                             f"build_plan(load_recipe_file({SEED!r}, partial=True), default_registry())"),
    ],
    "task (inside `skitflow run`, _KFP_RUNTIME=true)": [
        ("kfp executor", "import kfp.dsl.executor_main"),
        ("skitflow.run.runtime (+ every step module)", "from skitflow import runtime"),
        ("registry (entry points)", "from skitflow.steps.registry import default_registry; default_registry()"),
        ("pandas", "import pandas"),
        ("pyarrow.parquet", "import pyarrow.parquet"),
        ("sklearn (split, evaluate)", "import sklearn.model_selection, sklearn.metrics"),
        ("xgboost (train, evaluate)", "import xgboost"),
        ("matplotlib (evaluate report)", "import matplotlib.figure, matplotlib.backends.backend_agg"),
    ],
}

_LAPS = """
import json, sys, time
laps, started = [], time.perf_counter()
for code in json.loads(sys.argv[1]):
    exec(code, {})
    now = time.perf_counter()
    laps.append(now - started)
    started = now
print(json.dumps(laps))
"""


def import_costs(repeat: int = 5) -> str:
    """Median milliseconds of each stage, over `repeat` fresh processes per path."""
    from run import ENV

    lines = []
    for path, stages in STAGES.items():
        env = dict(ENV, _KFP_RUNTIME="true") if path.startswith("task") else ENV
        codes = json.dumps([code for _, code in stages])
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            done = subprocess.run([PYTHON, "-c", _LAPS, codes], capture_output=True, text=True,
                                  env=env, cwd=ROOT, check=True)
            runs.append((json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started))
        lines += ["", f"### {path}", "", "| stage | ms (median) |", "|---|--:|"]
        for index, (label, _) in enumerate(stages):
            lines.append(f"| {label} | {statistics.median(r[0][index] for r in runs) * 1000:.0f} |")
        lines.append(f"| whole process (start-up and exit included) | "
                     f"{statistics.median(r[1] for r in runs) * 1000:.0f} |")
    return "\n".join(["## Import costs (fresh process per run)", *lines])


# -- cProfile of CLI commands ---------------------------------------------------------------------


def top(prof: Path, limit: int = 20, sort: str = "cumulative", pattern: str = "") -> str:
    """The `limit` first entries of a profile, paths shortened (pattern: a regex on the path)."""
    stream = io.StringIO()
    stats = pstats.Stats(str(prof), stream=stream).sort_stats(sort)
    stats.print_stats(*([pattern] if pattern else []), limit)
    text = stream.getvalue()
    text = text[text.find("   ncalls"):].rstrip()
    for prefix in (str(ROOT / ".venv" / "lib") + "/python3.11/site-packages/", str(ROOT) + "/",
                   sys.base_prefix + "/lib/python3.11/"):
        text = text.replace(prefix, "")
    return text


# Where skitflow's own work and the libraries it drives show up (import machinery left out).
WORK = r"(skitflow/(?!cli/__init__)|kfp/(compiler|dsl|local)/|yaml/__init__|json_format|pandas/io|xgboost/(sklearn|core)|sklearn/(metrics|model_selection)/_|matplotlib/backends)"


def cli_profiles() -> str:
    """cProfile of `skitflow compile`, `validate` and the parent process of `skitflow run`."""
    OUT.mkdir(parents=True, exist_ok=True)
    chain = RAW / "work" / "profile"
    from chains import write_chain

    isolated = write_chain(chain, 100, True)
    fusion_data = dataset(100_000)
    fused_run = write_chain(chain, 5, True, str(fusion_data))
    commands = {
        "compile-seed": ["compile", SEED, "-o", str(OUT / "seed.yaml")],
        "compile-100-isolated": ["compile", str(isolated), "-o", str(OUT / "chain.yaml")],
        "validate-seed": ["validate", SEED],
        "run-parent-5-isolated": ["run", str(fused_run), "--no-cache", "--out", str(chain / "run")],
    }
    parts = ["## cProfile of CLI commands (cumulative, top entries)"]
    for name, args in commands.items():
        prof = OUT / f"{name}.prof"
        run([PYTHON, "-m", "cProfile", "-o", str(prof), "-m", "skitflow", *args],
            OUT / f"{name}.log")
        parts += ["", f"### skitflow {' '.join(args[:2])}", "", "Most time (own code):", "",
                  "```", top(prof, 12, "tottime"), "```", "", "Cumulative, skitflow and the "
                  "libraries it drives:", "", "```", top(prof, 18, pattern=WORK), "```"]
    return "\n".join(parts)


_TASK = """
import cProfile, json, sys, time
from skitflow import runtime

class Artifact:
    def __init__(self, path, metadata=None):
        self.path, self.metadata = path, dict(metadata or {})
    def log_metric(self, name, value):
        self.metadata[name] = value
    def log_confusion_matrix(self, labels, matrix):
        self.metadata["confusion"] = {"labels": labels, "matrix": matrix}

task, spec, args, params, prof = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:5]), sys.argv[5]
artifacts = [Artifact(path, {"format": "parquet"}) for path in args]
profile = cProfile.Profile()
started = time.perf_counter()
profile.runcall(getattr(runtime, task), *artifacts, spec, params)
print("BENCH-SECONDS", time.perf_counter() - started)
profile.dump_stats(prof)
"""


def _specs(package: Path) -> dict[str, str]:
    """Each task's spec, by the runtime function its executor runs (prepare, split, train...)."""
    import yaml

    spec = next(yaml.safe_load_all(package.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    components = spec["components"]
    found = {}
    for task in spec["root"]["dag"]["tasks"].values():
        parameters = task.get("inputs", {}).get("parameters", {})
        if "spec" not in parameters:
            continue
        executor = components[task["componentRef"]["name"]]["executorLabel"]
        args = executors[executor]["container"]["args"]
        function = args[args.index("--function_to_execute") + 1]
        found.setdefault(function, parameters["spec"]["runtimeValue"]["constant"])
    return found


def task_profiles(rows: int) -> str:
    """cProfile of the prepare, split, train and evaluate tasks of the local run, one process each."""
    data = dataset(rows)
    work = RAW / "work" / "profile" / "local-run"
    run([*SKITFLOW, "compile", LOCAL_RUN, "-o", str(work / "package.yaml"), "--target", "local"], work / "compile.log")
    specs = _specs(work / "package.yaml")
    a = work / "artifacts"
    a.mkdir(parents=True, exist_ok=True)
    plan = [  # task function, its spec, its artifacts, the pipeline parameters it uses
        ("prepare", specs["prepare"], [a / "prepared"], {"data": str(data)}),
        ("split", specs["split"], [a / "prepared", a / "train", a / "test"], {}),
        ("train", specs["train"], [a / "train", a / "model"], {}),
        ("evaluate", specs["evaluate"],
         [a / "model", a / "test", a / "metrics", a / "classification", a / "report"],
         {"min_f1": 0.5}),
    ]
    parts = [f"## Tasks of the local run, in-process ({rows:,} rows)"]
    for task, spec, paths, params in plan:
        prof = OUT / f"task-{task}.prof"
        log = OUT / f"task-{task}.log"
        run([PYTHON, "-c", _TASK, task, spec, json.dumps([str(p) for p in paths]),
             json.dumps(params), str(prof)], log)
        seconds = next(float(line.split()[1]) for line in log.read_text().splitlines()
                       if line.startswith("BENCH-SECONDS"))
        parts += ["", f"### {task}: {seconds:.2f} s in the task function", "", "```",
                  top(prof, 22, pattern=WORK), "```", "", "```", top(prof, 10, "tottime"), "```"]
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="imports,cli,tasks",
                        help="comma-separated: imports, cli, tasks")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the task profiles")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    parts = [f"# Profiles ({time.strftime('%Y-%m-%d %H:%M')})"]
    wanted = {p.strip() for p in args.only.split(",")}
    if "imports" in wanted:
        parts.append(import_costs())
    if "cli" in wanted:
        parts.append(cli_profiles())
    if "tasks" in wanted:
        parts.append(task_profiles(args.rows))
    text = "\n\n".join(parts) + "\n"
    (OUT / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
