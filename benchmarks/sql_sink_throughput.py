"""How fast the `sql` sink writes a large dataset, next to `pandas.DataFrame.to_sql`.

Makes a Parquet dataset of ROWS rows (default 1,000,000; 8 columns: integers, floats, text,
timestamps, booleans), then writes it REPS times into PostgreSQL with each writer, each write in a
fresh child process so that its peak memory (ru_maxrss) is its own, into a table dropped first.
The pandas writers read the Parquet file into a DataFrame first (they need one); that read is
counted, as the sink's reading is. Prints every run, then medians and the ratios.

    .venv/bin/python benchmarks/sql_sink_throughput.py                # starts a throw-away PostgreSQL
    .venv/bin/python benchmarks/sql_sink_throughput.py --rows 200000 --reps 3
    DATABASE_URL=postgresql+psycopg://... .venv/bin/python benchmarks/sql_sink_throughput.py --use-env

Writers:
  skitflow       the `sql` sink, mode append (Parquet row groups -> Arrow CSV -> COPY, one transaction)
  to_sql         DataFrame.to_sql(method=None, chunksize=50,000): executemany per chunk
  to_sql-multi   DataFrame.to_sql(method="multi", chunksize=8,000): multi-row INSERTs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHUNKSIZE = 50_000
MULTI_CHUNKSIZE = 8_000  # 8 columns x 8,000 rows stays under PostgreSQL's 65,535 parameters
WRITERS = ("skitflow", "to_sql", "to_sql-multi")


def make_dataset(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    i = np.arange(rows, dtype="int64")
    channels = np.array(["email", "chat", "phone", "web"])
    frame = pd.DataFrame({
        "id": i,
        "customer_id": (i % 9973).astype("int32"),
        "amount": i * 0.25,
        "channel": channels[i % 4],
        "subject": [f"ticket {n}: cannot log in after update" for n in range(rows)],
        "created_at": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(i, unit="s"),
        "urgent": i % 7 == 0,
        "score": np.where(i % 11 == 0, np.nan, i / rows),
    })
    frame.to_parquet(path, index=False, row_group_size=CHUNKSIZE)


# --------------------------------------------------------------------------- child: one write


def child(writer: str, dataset: str, table: str) -> None:
    """Write the dataset once with `writer`; print wall time and memory as JSON."""
    import pandas as pd
    import pyarrow  # noqa: F401 - loaded by every writer, so the baseline is the same
    import sqlalchemy as sa

    from skitflow.steps.base import ArtifactFile, RunContext
    from skitflow.steps.sql_sink import SqlSink

    url = os.environ["DATABASE_URL"]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if writer == "skitflow":
        settings = SqlSink.Settings(table=table, chunksize=CHUNKSIZE)
        ctx = RunContext("bench", "bench-run", "2024-01-01", "/tmp", os.environ,
                         log=lambda _: None)
        SqlSink().run(ArtifactFile(dataset, "dataset", "parquet"), settings, ctx)
    else:
        frame = pd.read_parquet(dataset)
        engine = sa.create_engine(url)
        multi = writer == "to_sql-multi"
        with engine.begin() as conn:
            frame.to_sql(table, conn, index=False, method="multi" if multi else None,
                         chunksize=MULTI_CHUNKSIZE if multi else CHUNKSIZE)
        engine.dispose()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"writer": writer, "seconds": seconds, "peak_mib": peak / 1024,
                      "write_mib": (peak - baseline) / 1024}))


# --------------------------------------------------------------------------- parent


def _sql(url: str, statement: str) -> list[tuple]:
    import psycopg
    import sqlalchemy as sa

    u = sa.make_url(url)
    with psycopg.connect(host=u.host, port=u.port, dbname=u.database, user=u.username,
                         password=u.password, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def run_child(writer: str, url: str, dataset: Path, rows: int) -> dict:
    table = f"bench_{writer.replace('-', '_')}"
    _sql(url, f"DROP TABLE IF EXISTS {table}")
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, "--child", writer, str(dataset), table],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{writer} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (count, total), = _sql(url, f"SELECT count(*), sum(id) FROM {table}")
    assert count == rows and total == rows * (rows - 1) // 2, f"{writer} wrote {count} rows"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--use-env", action="store_true",
                        help="use DATABASE_URL instead of starting PostgreSQL")
    parser.add_argument("--child", nargs=3, metavar=("WRITER", "DATASET", "TABLE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=2, metavar=("DATASET", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.make:
        make_dataset(Path(args.make[0]), int(args.make[1]))
        return

    from sql_throughput import database  # the sibling benchmark's throw-away PostgreSQL

    with tempfile.TemporaryDirectory(prefix="skitflow-bench-") as folder, \
            database(args.use_env) as url:
        dataset = Path(folder) / "rows.parquet"
        # In a child: Linux carries a parent's peak RSS into its children's ru_maxrss.
        subprocess.run([sys.executable, __file__, "--make", str(dataset), str(args.rows)],
                       check=True)
        print(f"{args.rows:,} rows x 8 columns, Parquet {dataset.stat().st_size / 2**20:.0f} MiB",
              flush=True)
        results: dict[str, list[dict]] = {w: [] for w in WRITERS}
        for rep in range(args.reps):
            order = WRITERS if rep % 2 == 0 else tuple(reversed(WRITERS))
            for writer in order:
                result = run_child(writer, url, dataset, args.rows)
                results[writer].append(result)
                print(f"rep {rep + 1} {writer:13s} {result['seconds']:7.2f}s  peak "
                      f"{result['peak_mib']:6.0f} MiB (write +{result['write_mib']:.0f} MiB)",
                      flush=True)
    print(f"\nmedians of {args.reps} reps:")
    median = {w: {k: statistics.median(x[k] for x in results[w])
                  for k in ("seconds", "peak_mib", "write_mib")} for w in WRITERS}
    for writer in WRITERS:
        m = median[writer]
        print(f"  {writer:13s} {m['seconds']:7.2f}s  {args.rows / m['seconds']:>10,.0f} rows/s  "
              f"peak {m['peak_mib']:6.0f} MiB  write +{m['write_mib']:5.0f} MiB")
    ours = median["skitflow"]
    for other in WRITERS[1:]:
        base = median[other]
        print(f"skitflow / {other}: rows/s x{base['seconds'] / ours['seconds']:.1f}, "
              f"peak memory x{ours['peak_mib'] / base['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
