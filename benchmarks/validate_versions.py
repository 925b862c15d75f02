"""`skitflow validate` of two versions of skitflow, and the floor of any pydantic validation.

    python benchmarks/validate_versions.py --base c015bdf        # medians of 30 rounds
    python benchmarks/validate_versions.py --base HEAD~3 --rounds 50 --recipe examples/tickets.yaml

The machine's speed moves from minute to minute (the floor alone measured 0.093 s and 0.156 s on
the same machine within two hours), so a change to validate is judged by what each version costs
*beside the floor*, measured in one alternation: each round runs the base revision (a git
worktree of it in a temporary folder), this checkout and the floor (yaml, pydantic's BaseModel
and importlib.metadata imported, one model built, the recipe parsed), in alternating order. Both
versions run `skitflow.cli.main` with the same interpreter, bytecode cached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness import PYDANTIC_FLOOR  # noqa: E402

#: the console script's own code, with the checkout to import skitflow from put first
MAIN = ("import os, sys; sys.path.insert(0, os.environ['SKITFLOW_SOURCE']); "
        "sys.argv = ['skitflow', 'validate', sys.argv[1]]; from skitflow.cli import main; main()")


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare with (git rev)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--recipe", default="recipes/seed-workflow.yaml")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as in an installed skitflow
    work = Path(tempfile.mkdtemp(prefix="skitflow-validate-versions-"))
    base = work / "base"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT,
                   check=True)
    try:
        for source in (base, ROOT):
            subprocess.run([sys.executable, "-m", "compileall", "-q", "skitflow"], cwd=source,
                           env=env, check=True)
        sides = {
            "base": ([sys.executable, "-c", MAIN, args.recipe], {**env, "SKITFLOW_SOURCE": str(base)}),
            "checkout": ([sys.executable, "-c", MAIN, args.recipe], {**env, "SKITFLOW_SOURCE": str(ROOT)}),
            "floor": ([sys.executable, "-c", PYDANTIC_FLOOR, args.recipe], env),
        }
        for command, side_env in sides.values():  # warm the caches
            timed(command, side_env)
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for index in range(args.rounds):
            for name in names if index % 2 else reversed(names):
                seconds[name].append(timed(*sides[name]))
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        print(json.dumps({
            "base": args.base, "recipe": args.recipe, "rounds": args.rounds,
            "median_s": {name: round(value, 4) for name, value in medians.items()},
            "beside_floor_ms": {name: round((medians[name] - medians["floor"]) * 1000, 1)
                                for name in ("base", "checkout")},
            "loadavg_after": list(os.getloadavg()),
        }, indent=2))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
