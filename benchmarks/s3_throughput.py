"""How fast the `s3` sink and the `s3` source move a big object, next to plain boto3.

Writes one CSV file of SIZE MiB (default 1024), starts a throw-away SeaweedFS (or uses the
server in the AWS_* environment with --use-env), then REPS times, alternating which goes first:

  upload    boto3 `upload_file` (its defaults)  vs  the `s3` sink (SHA-256 pass, multipart
            upload with per-part SHA-256, HEAD and checksum comparison)
  download  boto3 `download_file` (its defaults)  vs  the connector's download (the transfer
            the `s3` source does), and, for scale, the whole `s3` read
            (download + pyarrow CSV parse into an Arrow table, not pandas)

Prints every run, then the median MiB/s of each and the ratio skitflow / boto3.

    .venv/bin/python benchmarks/s3_throughput.py
    .venv/bin/python benchmarks/s3_throughput.py --size-mb 256 --reps 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MiB = 1024 * 1024


def make_csv(path: Path, size: int) -> None:
    """A CSV of about `size` bytes: ids, floats, short text (what a dataset looks like)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(7)
    rows = 1_000_000
    words = np.array(["refund", "login", "invoice", "crash", "upgrade", "password", "slow"])
    with open(path, "wb") as out:
        header = True
        while out.tell() < size:
            table = pa.table({
                "id": np.arange(rows, dtype=np.int64),
                "amount": rng.normal(100, 30, rows).round(2),
                "score": rng.random(rows),
                "channel": words[rng.integers(0, len(words), rows)],
                "subject": np.char.add(words[rng.integers(0, len(words), rows)], " issue"),
            })
            pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=header,
                                                            quoting_style="none"))
            header = False


@contextlib.contextmanager
def server(use_env: bool) -> Iterator[dict[str, str]]:
    if use_env:
        yield dict(os.environ)
        return
    from tests.services import start_s3_server

    with start_s3_server() as s3:
        yield {**os.environ, **s3.env()}


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--use-env", action="store_true", help="use the server in AWS_*")
    parser.add_argument("--bucket", default="skitflow-bench")
    args = parser.parse_args()

    from boto3.s3.transfer import TransferConfig

    from skitflow.connectors.s3 import S3, parse_uri
    from skitflow.connectors.s3_tables import read_table
    from skitflow.steps.base import ArtifactFile, RunContext
    from skitflow.steps.s3 import S3Sink

    work = Path(tempfile.mkdtemp(prefix="skitflow-s3-bench-"))
    data = work / "data.csv"
    started = time.perf_counter()
    make_csv(data, args.size_mb * MiB)
    size = data.stat().st_size
    print(f"data: {size / MiB:.0f} MiB CSV in {time.perf_counter() - started:.1f}s; "
          f"{os.cpu_count()} CPUs", flush=True)

    with server(args.use_env) as environ:
        connector = S3(environ)
        client = connector.client  # the same client configuration for boto3's own calls
        with contextlib.suppress(Exception):
            client.create_bucket(Bucket=args.bucket)
        ctx = RunContext("bench", "bench", "", str(work), environ, log=lambda _: None)
        artifact = ArtifactFile(str(data), "report", "csv")
        sink_settings = S3Sink.Settings(uri=f"s3://{args.bucket}/sink.csv")
        boto_config = TransferConfig(preferred_transfer_client="classic")
        source = parse_uri(f"s3://{args.bucket}/sink.csv")

        def boto_upload() -> None:
            client.upload_file(str(data), args.bucket, "boto.csv", Config=boto_config)

        def sink_upload() -> None:
            S3Sink().run(artifact, sink_settings, ctx)

        def boto_download() -> None:
            client.download_file(args.bucket, "boto.csv", str(work / "boto.out"),
                                 Config=boto_config)
            os.unlink(work / "boto.out")

        def connector_download() -> None:
            from skitflow.connectors.s3 import ObjectInfo

            connector.download(ObjectInfo(source, size), str(work / "ours.out"))
            os.unlink(work / "ours.out")

        def source_read() -> None:
            table = read_table(str(source), environ=environ, directory=str(work))
            assert table.num_rows > 0

        pairs = {
            "upload": (("boto3 upload_file", boto_upload), ("s3 sink", sink_upload)),
            "download": (("boto3 download_file", boto_download),
                         ("connector download", connector_download)),
        }
        results: dict[str, list[float]] = {}
        for rep in range(args.reps):
            for kind, pair in pairs.items():
                order = pair if rep % 2 == 0 else pair[::-1]
                for name, action in order:
                    seconds = timed(action)
                    results.setdefault(name, []).append(seconds)
                    print(f"  rep {rep + 1} {kind:8} {name:22} {seconds:6.2f}s "
                          f"{size / MiB / seconds:7.1f} MiB/s", flush=True)
            seconds = timed(source_read)
            results.setdefault("s3 read (parse)", []).append(seconds)
            print(f"  rep {rep + 1} read     {'s3 read (parse)':22} {seconds:6.2f}s "
                  f"{size / MiB / seconds:7.1f} MiB/s", flush=True)

    def rate(name: str) -> float:
        return size / MiB / statistics.median(results[name])

    print(f"\nmedian of {args.reps}, {size / MiB:.0f} MiB object:")
    for name in results:
        print(f"  {name:24} {rate(name):7.1f} MiB/s")
    print(f"  upload ratio   s3 sink / boto3:            {rate('s3 sink') / rate('boto3 upload_file'):.2f}")
    print(f"  download ratio connector / boto3:          "
          f"{rate('connector download') / rate('boto3 download_file'):.2f}")
    print(f"  read ratio     s3 (parse) / boto3: "
          f"{rate('s3 read (parse)') / rate('boto3 download_file'):.2f}")
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
