"""Hand-written kfp pipeline for the scale benchmark: a chain of lightweight tasks, compiled by kfp.

`TASKS` tasks in a row (a prepare task, then transforms), as a person would write it: two
components, the transform one reused for every step. The steps' settings travel as JSON
parameters, `STEPS` of them split over the tasks, so the package carries what skitflow's does.

    python benchmarks/baselines/compile_chain.py TASKS STEPS OUT.yaml
"""

import json
import sys

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

IMAGE = "ghcr.io/skitflow/skitflow:0.1.0"
# The settings of benchmarks/chains.py's step cycle, as the tasks would receive them.
CYCLE = [
    {"step": "strip", "columns": ["subject"]},
    {"step": "lowercase", "columns": ["subject"]},
    {"step": "fillna", "values": {"response_minutes": 0}},
    {"step": "filter_rows", "expr": "account_months >= 0"},
    {"step": "regex_replace", "columns": ["subject"], "pattern": "\\s+", "replacement": " "},
]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare(out: Output[Dataset], path: str, steps: str) -> int:
    """Read the CSV and apply the steps (not run here: only compiled)."""
    import json

    import pandas as pd

    frame = pd.read_csv(path)
    frame.to_parquet(out.path, index=False)
    return len(json.loads(steps)) + len(frame)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transform(data: Input[Dataset], out: Output[Dataset], steps: str) -> int:
    """Apply steps to a dataset (not run here: only compiled)."""
    import json
    import shutil

    shutil.copyfile(data.path, out.path)
    return len(json.loads(steps))


def build(tasks: int, steps: int):
    """The pipeline function for `tasks` tasks sharing `steps` step settings."""
    settings = [CYCLE[i % len(CYCLE)] for i in range(steps)]
    first = settings[: steps - tasks + 1] if tasks > 1 else settings
    rest = settings[len(first):]

    @dsl.pipeline(name=f"chain-{steps}-{tasks}")
    def chain(data: str = "examples/data/tickets.csv"):
        task = prepare(path=data, steps=json.dumps(first))
        for step in rest:
            task = transform(data=task.outputs["out"], steps=json.dumps([step]))

    return chain


if __name__ == "__main__":
    tasks, steps, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    compiler.Compiler().compile(build(tasks, steps), out)
