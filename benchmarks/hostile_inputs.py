"""The hostile-input table: each reproducer of issue 9 through the real CLI.

    python benchmarks/hostile_inputs.py [--skitflow CHECKOUT] [--timeout 10] [--markdown]

For each case of tests/hostile.py: the exit code of `python -m skitflow validate` (or `compile`),
its wall time, its peak RSS (from wait4), whether it printed a traceback, and the first line of
its message. Children run under a 1 GiB address-space cap and the timeout, so a runaway case
shows up as MemoryError / timeout instead of taking the machine. `--skitflow` measures another
checkout (e.g. `git worktree add /tmp/fuzz-before layout`) on the same inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _hostile_module():
    spec = importlib.util.spec_from_file_location("skitflow_hostile", HERE / "tests" / "hostile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _summary(outcome) -> str:
    if outcome.timed_out:
        return "killed at the timeout"
    if "Traceback" in outcome.stderr:
        last = [line for line in outcome.stderr.splitlines() if line.strip()][-1:]
        return "traceback: " + (last[0].strip()[:90] if last else "?")
    lines = [line for line in outcome.stderr.splitlines() if line.startswith(("error:", "  -->"))]
    return " ".join(lines[:2])[:120] or (outcome.stdout.strip().splitlines() or [""])[0][:120]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skitflow", type=Path, default=HERE, help="checkout to measure")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    hostile = _hostile_module()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in [*hostile.REPRODUCERS, *hostile.MUST_PASS]:
            outcome = hostile.run_hostile(case, Path(folder), args.timeout, args.skitflow.resolve())
            rows.append({
                "case": case.id, "bytes": len(case.data), "expected_exit": case.exit_code,
                "exit": "timeout" if outcome.timed_out else outcome.exit_code,
                "seconds": round(outcome.seconds, 2), "peak_rss_mib": round(outcome.peak_rss_mib, 1),
                "located": hostile.LOCATION.search(outcome.stderr) is not None,
                "message": _summary(outcome),
            })
    if args.markdown:
        print("| case | bytes | exit | s | peak MiB | located | message |")
        print("|---|---:|---:|---:|---:|---|---|")
        for r in rows:
            message = r["message"].replace("|", "\\|").replace("`", "'")
            print(f"| {r['case']} | {r['bytes']} | {r['exit']} | {r['seconds']} | "
                  f"{r['peak_rss_mib']} | {'yes' if r['located'] else 'no'} | {message} |")
    else:
        print(json.dumps(rows, indent=2))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
