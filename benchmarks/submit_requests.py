"""How many requests and how long `skitflow submit` takes, against the KFP test server.

Measures, through the real CLI and kfp.Client over HTTP on 127.0.0.1:

- a first submit (pipeline, version, experiment and run all new) and an unchanged re-submit;
- what a burst of 503s on the run POST costs in retries and wall time, with the default
  backoff (0.5 s doubling) unless --backoff is given.

    .venv/bin/python benchmarks/submit_requests.py [--trials 5] [--burst 3] [--backoff 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RECIPE = REPO / "tests" / "recipes" / "valid" / "parameter-condition.yaml"


def _invoke(args: list[str]) -> tuple[int, str, float]:
    from typer.testing import CliRunner

    from skitflow.cli.app import app

    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stderr, time.perf_counter() - started


def _summary(requests: list) -> str:
    counts = Counter(f"{r.method} {_route(r.path)}" for r in requests)
    return ", ".join(f"{n}x {k}" if n > 1 else k for k, n in counts.items())


def _route(path: str) -> str:
    """/apis/v2beta1/pipelines/<uuid>/versions -> pipelines/{id}/versions."""
    parts = path.removeprefix("/apis/v2beta1/").split("/")
    return "/".join("{id}" if len(p) == 36 and p.count("-") == 4 else p for p in parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--burst", type=int, default=3, help="503s in a row on POST /runs")
    parser.add_argument("--backoff", type=float, default=None, help="SKITFLOW_RETRY_BACKOFF")
    options = parser.parse_args()

    import kfp

    from tests.kfp_server import running_kfp_server

    folder = tempfile.mkdtemp(prefix="skitflow-bench-")
    kfp.Client._LOCAL_KFP_CONTEXT = os.path.join(folder, "context.json")  # keep ~/.config out
    for name in ("KFP_HOST", "KFP_NAMESPACE", "KFP_EXPERIMENT", "KFP_TOKEN", "KFP_COOKIE",
                 "KF_PIPELINES_SA_TOKEN_PATH"):
        os.environ.pop(name, None)
    if options.backoff is not None:
        os.environ["SKITFLOW_RETRY_BACKOFF"] = str(options.backoff)
    os.chdir(folder)

    with running_kfp_server() as warm:  # imports kfp, compiles once: not measured
        _invoke(["submit", str(RECIPE), "--host", warm.url])

    first_times, again_times = [], []
    first_log, again_log = [], []
    for _ in range(options.trials):
        with running_kfp_server() as server:
            code, err, seconds = _invoke(["submit", str(RECIPE), "--host", server.url])
            assert code == 0, err
            first_times.append(seconds)
            first_log = list(server.state.requests)
            mark = len(server.state.requests)
            code, err, seconds = _invoke(["submit", str(RECIPE), "--host", server.url])
            assert code == 0, err
            again_times.append(seconds)
            again_log = server.state.requests[mark:]
            assert len(server.state.pipeline_versions) == 1 and len(server.state.runs) == 2

    with running_kfp_server() as server:
        _invoke(["submit", str(RECIPE), "--host", server.url, "--no-run"])
        mark = len(server.state.requests)
        server.faults.add(r"/runs$", status=503, times=options.burst, method="POST")
        code, err, burst_seconds = _invoke(["submit", str(RECIPE), "--host", server.url])
        burst_log = server.state.requests[mark:]
        assert code == 0, err
        retries = err.count("retrying in")
        statuses = Counter(r.status for r in burst_log)
        assert len(server.state.runs) == 1

    print(f"recipe: {RECIPE.relative_to(REPO)}, {options.trials} trials, median wall time "
          "(in-process CLI incl. compile)")
    print(f"first submit:      {len(first_log)} requests, {statistics.median(first_times) * 1000:.0f} ms"
          f"  [{_summary(first_log)}]")
    print(f"unchanged resubmit: {len(again_log)} requests, "
          f"{statistics.median(again_times) * 1000:.0f} ms  [{_summary(again_log)}]")
    backoff = os.environ.get("SKITFLOW_RETRY_BACKOFF", "0.5 (default)")
    print(f"503 burst of {options.burst} on POST /runs: {retries} retries, {len(burst_log)} requests "
          f"({statuses[503]}x 503), {burst_seconds:.2f} s with backoff {backoff} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
