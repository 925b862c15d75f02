"""How fast the `sql` source reads a large table, next to plain `pandas.read_sql`.

Loads ROWS rows (default 1,000,000) into PostgreSQL with COPY, then reads them back REPS times
with each reader, alternating the order, each read in a fresh child process so that its peak
memory (ru_maxrss) is its own. Prints every run, then medians and the ratios.

    .venv/bin/python benchmarks/sql_throughput.py                 # starts a throw-away PostgreSQL
    .venv/bin/python benchmarks/sql_throughput.py --rows 200000 --reps 3
    DATABASE_URL=postgresql+psycopg://... .venv/bin/python benchmarks/sql_throughput.py --use-env

Readers:
  skitflow        the `sql` source (server-side cursor, chunks of 50,000 rows, Arrow columns)
  pandas          pandas.read_sql(query, connection): everything fetched, then one DataFrame
  pandas-chunked  pandas.read_sql(..., chunksize=50,000) and pandas.concat (for reference)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TABLE = "bench_rows"
QUERY = f"SELECT * FROM {TABLE}"
CHUNKSIZE = 50_000
READERS = ("skitflow", "pandas", "pandas-chunked")


# --------------------------------------------------------------------------- child: one read


def child(reader: str) -> None:
    """Read the table once with `reader`; print wall time and memory as JSON."""
    import pandas as pd
    import pyarrow  # noqa: F401 - loaded by both readers, so the baseline is the same
    import sqlalchemy as sa

    from skitflow.steps.base import RunContext
    from skitflow.steps.sql import SqlSource

    url = os.environ["DATABASE_URL"]
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if reader == "skitflow":
        settings = SqlSource.Settings(query=QUERY, chunksize=CHUNKSIZE)
        ctx = RunContext("bench", "bench", "", "/tmp", os.environ, log=lambda _: None)
        frame = SqlSource().run(settings, ctx)
    else:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            if reader == "pandas":
                frame = pd.read_sql(sa.text(QUERY), conn)
            else:
                frame = pd.concat(pd.read_sql(sa.text(QUERY), conn, chunksize=CHUNKSIZE),
                                  ignore_index=True)
        engine.dispose()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "reader": reader,
        "seconds": seconds,
        "rows": len(frame),
        "peak_mib": peak / 1024,
        "read_mib": (peak - baseline) / 1024,
        "frame_mib": frame.memory_usage(deep=True).sum() / 2**20,
        "id_sum": int(frame["id"].sum()),
        "dtypes": {str(k): str(v) for k, v in frame.dtypes.items()},
    }))


# --------------------------------------------------------------------------- parent


@contextlib.contextmanager
def database(use_env: bool) -> Iterator[str]:
    if use_env:
        yield os.environ["DATABASE_URL"]
        return
    sys.path.insert(0, str(REPO))
    from tests.services import start_postgres_server

    with start_postgres_server() as server:
        yield server.url


def load(url: str, rows: int) -> float:
    """Create the table and COPY `rows` rows into it; returns the seconds it took."""
    import psycopg
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    started = time.perf_counter()
    with psycopg.connect(host=parsed.host, port=parsed.port, dbname=parsed.database,
                         user=parsed.username, password=parsed.password) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, customer_id integer, "
            "amount double precision, price numeric(10, 2), channel text, subject text, "
            "created_at timestamptz, urgent boolean)"
        )
        channels = ("email", "chat", "phone", "web")
        with conn.cursor().copy(
            f"COPY {TABLE} (id, customer_id, amount, price, channel, subject, created_at, urgent) "
            "FROM STDIN"
        ) as copy:
            for i in range(rows):
                copy.write_row((
                    i, i % 9973, i * 0.25, f"{i % 10000}.{i % 100:02d}", channels[i % 4],
                    f"ticket {i}: cannot log in after update", "2024-01-01 00:00:00+00",
                    i % 7 == 0,
                ))
        conn.execute(f"ANALYZE {TABLE}")
    return time.perf_counter() - started


def run_child(reader: str, url: str) -> dict:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, "--child", reader], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{reader} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--use-env", action="store_true",
                        help="use DATABASE_URL instead of starting PostgreSQL")
    parser.add_argument("--child", choices=READERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    with database(args.use_env) as url:
        print(f"loading {args.rows:,} rows with COPY ...", flush=True)
        print(f"loaded in {load(url, args.rows):.1f}s", flush=True)
        results: dict[str, list[dict]] = {r: [] for r in READERS}
        for rep in range(args.reps):
            order = READERS if rep % 2 == 0 else tuple(reversed(READERS))
            for reader in order:
                result = run_child(reader, url)
                results[reader].append(result)
                print(f"rep {rep + 1} {reader:15s} {result['seconds']:6.2f}s  peak "
                      f"{result['peak_mib']:7.0f} MiB (read +{result['read_mib']:.0f} MiB)",
                      flush=True)
    first = {r: results[r][0] for r in READERS}
    assert len({v["rows"] for v in first.values()}) == 1, "readers disagree on the row count"
    assert len({v["id_sum"] for v in first.values()}) == 1, "readers disagree on the data"
    print(f"\n{args.rows:,} rows x {len(first['skitflow']['dtypes'])} columns, "
          f"{args.reps} reps, medians:")
    median = {r: {k: statistics.median(x[k] for x in results[r])
                  for k in ("seconds", "peak_mib", "read_mib")} for r in READERS}
    for reader in READERS:
        m = median[reader]
        print(f"  {reader:15s} {m['seconds']:6.2f}s  {args.rows / m['seconds']:>10,.0f} rows/s  "
              f"peak {m['peak_mib']:6.0f} MiB  read +{m['read_mib']:5.0f} MiB  "
              f"frame {first[reader]['frame_mib']:.0f} MiB")
    base = median["pandas"]
    ours = median["skitflow"]
    print(f"skitflow / pandas.read_sql: time x{ours['seconds'] / base['seconds']:.2f}, "
          f"peak memory x{ours['peak_mib'] / base['peak_mib']:.2f}, "
          f"memory of the read x{ours['read_mib'] / base['read_mib']:.2f}")
    print("dtypes skitflow:", first["skitflow"]["dtypes"])
    print("dtypes pandas:  ", first["pandas"]["dtypes"])


if __name__ == "__main__":
    main()
