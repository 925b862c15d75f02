"""Per-task overhead of `skitflow run`: a chain of 1 vs 6 isolated transforms, warm worker vs cold.

    python benchmarks/task_overhead.py                 # medians of 5, alternating cold and warm
    python benchmarks/task_overhead.py --repeat 3 --rows 1000

A chain recipe (benchmarks/chains.py) with N isolated transforms runs N+1 tasks (the source and
each transform); (time(6) - time(1)) / 5 is the cost of one more task. The baseline is the same
runner with `SKITFLOW_WARM_WORKER=0` (every task a fresh interpreter, as before), run alternately
in the same process; the ratio is warm / cold. Caching is off. The load average is printed with
the numbers (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from chains import chain_recipe  # noqa: E402


def _run(recipe: Path, out: Path, warm: bool) -> float:
    env = {**os.environ, "SKITFLOW_WARM_WORKER": "1" if warm else "0",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "skitflow", "run", str(recipe), "--no-cache",
                           "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--long", type=int, default=6, help="isolated transforms in the long chain")
    args = parser.parse_args()
    times: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="skitflow-overhead-") as tmp:
        recipes = {}
        for steps in (1, args.long):
            recipes[steps] = Path(tmp) / f"chain-{steps}.yaml"
            recipes[steps].write_text(chain_recipe(steps, isolate=True,
                                                   data=str(ROOT / "examples/data/tickets.csv")))
        load_before = os.getloadavg()
        for index in range(args.repeat):
            for mode in ("cold", "warm"):  # alternating, so load changes hit both alike
                for steps, recipe in recipes.items():
                    out = Path(tmp) / f"run-{mode}-{steps}-{index}"
                    times.setdefault((mode, steps), []).append(_run(recipe, out, mode == "warm"))
        load_after = os.getloadavg()
    medians = {f"{mode}-{steps}": statistics.median(v) for (mode, steps), v in times.items()}
    extra = args.long - 1
    per_task = {mode: (medians[f"{mode}-{args.long}"] - medians[f"{mode}-1"]) / extra
                for mode in ("cold", "warm")}
    report = {"medians_s": {k: round(v, 3) for k, v in medians.items()},
              "per_extra_task_s": {k: round(v, 3) for k, v in per_task.items()},
              "ratio_warm_over_cold": round(per_task["warm"] / per_task["cold"], 3),
              "repeat": args.repeat, "tasks": [2, args.long + 1],
              "loadavg_before": load_before, "loadavg_after": load_after, "cpus": os.cpu_count()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
