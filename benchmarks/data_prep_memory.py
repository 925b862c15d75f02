"""Peak memory and wall time of the data-prep task against hand-written pandas (issue 15).

The benchmark recipe's data prep (CSV -> drop_duplicates, dropna, filter_rows, strip, lowercase ->
Parquet) as a data-prep-only recipe run by `skitflow run` (the compiled package's task runtime
through kfp.local), streamed (the default) and on all rows at once (SKITFLOW_STREAM_ROWS=0, the
path before streaming), against the same work in one pandas script. Each side runs in its own
process; peak memory is the largest resident set of it or any process it waited for
(getrusage(RUSAGE_CHILDREN).ru_maxrss, what a per-task memory limit sees), wall is the whole
command. The datasets are generated once under benchmarks/results/raw/data (git-ignored).

    python benchmarks/data_prep_memory.py --rows 1000000,3000000
    python benchmarks/data_prep_memory.py --rows 10000000 --sides streamed,pandas
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "examples"))

COLUMNS = ["ticket_id", "created_at", "subject", "channel", "priority", "customer_age",
           "account_months", "num_previous_tickets", "response_minutes", "label"]
RECIPE = f"""\
apiVersion: skitflow/v1
name: bench-data-prep
parameters:
  data: {{type: str}}
  out_dir: {{type: str}}
source:
  csv:
    path: "{{{{ params.data }}}}"
    columns: [{", ".join(COLUMNS)}]
steps:
  - drop_duplicates: {{subset: [ticket_id]}}
  - dropna: {{columns: [label, subject]}}
  - filter_rows: {{expr: "account_months >= 1 and customer_age < 80"}}
  - strip: {{columns: [subject]}}
  - lowercase: {{columns: [subject]}}
sinks:
  - file: {{path: "{{{{ params.out_dir }}}}/dataset.parquet", format: parquet}}
"""
GIB = 2 ** 30


def pandas_twin(data: str, out: str) -> None:
    """The same data prep by hand (as benchmarks/baselines/local_run.py prepares its data)."""
    frame = pd.read_csv(data, usecols=COLUMNS)[COLUMNS]
    frame = frame.drop_duplicates(subset=["ticket_id"]).dropna(subset=["label", "subject"])
    frame = frame[(frame["account_months"] >= 1) & (frame["customer_age"] < 80)]
    frame = frame.reset_index(drop=True)
    frame["subject"] = frame["subject"].str.strip().str.lower()
    frame.to_parquet(out, engine="pyarrow", index=False, compression="snappy")


def dataset(rows: int) -> Path:
    path = BENCH / "results" / "raw" / "data" / f"tickets-{rows}.csv"
    if not path.exists():
        from make_dataset import generate_classification_csv

        generate_classification_csv(path, rows, seed=7)
    return path


def measured(cmd: list[str], env: dict[str, str]) -> dict:
    """Run `cmd` from a fresh process that reports its wall time and its children's peak RSS."""
    probe = ("import json,resource,subprocess,sys,time;t=time.perf_counter();"
             "rc=subprocess.run(sys.argv[1:]).returncode;w=time.perf_counter()-t;"
             "print('MEASURED '+json.dumps({'rc':rc,'wall_s':w,"
             "'peak_kb':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
    result = subprocess.run([sys.executable, "-c", probe, *cmd], env=env, capture_output=True,
                            text=True)
    line = next((x for x in result.stdout.splitlines() if x.startswith("MEASURED ")), None)
    if line is None or json.loads(line[9:])["rc"] != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return dict(json.loads(line[9:]))


def side(name: str, data: Path, work: Path) -> dict:
    # tasks in fresh interpreters: a task forked by the warm worker is not a waited-for child of
    # the measured command, so RUSAGE_CHILDREN would not see its memory
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SKITFLOW_WARM_WORKER": "0"}
    out = work / name
    if name == "pandas":
        cmd = [sys.executable, __file__, "--twin", str(data), str(out / "dataset.parquet")]
        out.mkdir(parents=True)
    else:
        if name == "in-memory":
            env["SKITFLOW_STREAM_ROWS"] = "0"
        recipe = work / "data-prep.yaml"
        recipe.write_text(RECIPE)
        cmd = [sys.executable, "-m", "skitflow", "run", str(recipe), "--no-cache",
               "--out", str(out / "run"), "-p", f"data={data}", "-p", f"out_dir={out}"]
    result = measured(cmd, env)
    if name != "pandas":
        summary = json.loads((out / "run" / "summary.json").read_text())
        result["task_s"] = {k: v["seconds"] for k, v in summary["tasks"].items()}
    result["dataset"] = str(out / "dataset.parquet")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,3000000")
    parser.add_argument("--sides", default="streamed,in-memory,pandas")
    parser.add_argument("--twin", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.twin:
        pandas_twin(*args.twin)
        return 0
    sides = args.sides.split(",")
    report = []
    for rows in (int(r) for r in args.rows.split(",")):
        data = dataset(rows)
        with tempfile.TemporaryDirectory(prefix="data-prep-") as tmp:
            results = {name: side(name, data, Path(tmp)) for name in sides}
            if "pandas" in results:  # both sides must publish the same rows
                expected = pd.read_parquet(results["pandas"]["dataset"])
                for result in results.values():
                    pd.testing.assert_frame_equal(pd.read_parquet(result["dataset"]), expected)
                    result["same_rows"] = True
        line = {"rows": rows, "csv_bytes": data.stat().st_size}
        for name, result in results.items():
            line[name] = {k: v for k, v in result.items() if k != "dataset"}
            line[name]["peak_mib"] = round(result["peak_kb"] / 1024, 1)
            if "pandas" in results and name != "pandas":
                line[name]["wall_ratio"] = round(result["wall_s"] / results["pandas"]["wall_s"], 3)
                line[name]["peak_ratio"] = round(result["peak_kb"] / results["pandas"]["peak_kb"], 3)
            line[name]["fits_2_gib"] = result["peak_kb"] * 1024 <= 2 * GIB
        report.append(line)
        print("DATA-PREP " + json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
