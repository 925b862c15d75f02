"""Compile time and package size of matrix recipes of 2, 16 and 128 branches (growth should be linear).

    PYTHONPATH=. python benchmarks/matrix_scale.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = """\
apiVersion: skitflow/v1
name: matrix-scale
matrix:
  client: [{clients}]
source:
  csv: {{path: "data/{{{{ matrix.client }}}}.csv", columns: [call_id, text, intent, duration]}}
steps:
  - dropna: {{columns: [intent]}}
sinks:
  - file: {{path: "out/{{{{ matrix.client }}}}/model.json"}}
    input: model
split:
  train_test: {{test_size: 0.25, stratify: intent}}
trainer:
  xgboost: {{target: intent, features: [duration]}}
evaluator:
  classification: {{target: intent}}
  gate: {{metric: f1_macro, min: 0.5}}
"""


def main() -> None:
    print("| branches | tasks | compile s (whole process) | package bytes | bytes per branch |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for branches in (2, 16, 128):
            path = Path(folder) / f"m{branches}.yaml"
            path.write_text(RECIPE.format(clients=", ".join(f"c{i}" for i in range(branches))))
            out = Path(folder) / f"m{branches}.package.yaml"
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "skitflow", "compile", str(path), "--target", "local", "-o", str(out)],
                               check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                best = min(best, time.perf_counter() - started)
            size = out.stat().st_size
            tasks = branches * 5
            print(f"| {branches} | {tasks} | {best:.2f} | {size:,} | {size // branches:,} |")


if __name__ == "__main__":
    main()
