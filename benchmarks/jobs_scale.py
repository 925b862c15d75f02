"""Wall time of a 4-branch local run with `--jobs 1` (the baseline: one task at a time, as
before `--jobs`) and `--jobs 2`, run alternately, 3 reps each; medians and their ratio.

    PYTHONPATH=. python benchmarks/jobs_scale.py [--reps 3] [--jobs 2]

The load average is printed with the numbers: on a shared machine it decides what parallel tasks
can gain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = """\
apiVersion: skitflow/v1
name: jobs-scale
matrix:
  depth: [2, 3, 4, 5]
source:
  csv: {path: "calls.csv", columns: [call_id, text, intent, duration]}
split:
  train_test: {test_size: 0.25, stratify: intent}
trainer:
  xgboost: {target: intent, features: [duration], params: {n_estimators: 5, max_depth: "{{ matrix.depth }}"}}
evaluator:
  classification: {target: intent}
  gate: {metric: f1_macro, min: 0.0}
"""


def _run(folder: Path, jobs: int, n: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "skitflow", "run", "r.yaml", "--out", f"out-{jobs}-{n}",
                           "--no-cache", "--jobs", str(jobs)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"--jobs {jobs} failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = ["call_id,text,intent,duration"] + [
            f"{i},x,{'abc'[i % 3]},{float(i % 17)}" for i in range(120)]
        (folder / "calls.csv").write_text("\n".join(rows) + "\n")
        (folder / "r.yaml").write_text(RECIPE)
        times: dict[int, list[float]] = {1: [], args.jobs: []}
        loads = [os.getloadavg()]
        for n in range(args.reps):  # alternate, so a change in the machine's load hits both
            for jobs in (1, args.jobs):
                times[jobs].append(_run(folder, jobs, n))
                loads.append(os.getloadavg())
                print(f"rep {n + 1}: --jobs {jobs}: {times[jobs][-1]:.1f}s (load {loads[-1][0]:.2f})",
                      flush=True)
    one, many = statistics.median(times[1]), statistics.median(times[args.jobs])
    print(f"cores: {os.cpu_count()}; load average (1 min) from {min(load[0] for load in loads):.2f} "
          f"to {max(load[0] for load in loads):.2f}")
    print("| run | median s | all s |")
    print("|---|---|---|")
    for jobs in (1, args.jobs):
        print(f"| --jobs {jobs} | {statistics.median(times[jobs]):.1f} | "
              + ", ".join(f"{t:.1f}" for t in times[jobs]) + " |")
    print(f"ratio --jobs {args.jobs} / --jobs 1: {many / one:.2f} (speed-up {one / many:.2f}x)")


if __name__ == "__main__":
    main()
