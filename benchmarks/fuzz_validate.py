"""Fuzz the validate path with mutated real recipes and count how each mutant ends.

    PYTHONPATH=$PWD python benchmarks/fuzz_validate.py --mutants 5000 [--seed 1] [--compile]

Each mutant (tests/mutants.py: line edits, indentation, scalar swaps, truncation, byte flips,
anchors and aliases, tags) is written to a file and goes through what `skitflow validate` does:
`load_recipe_file(partial=True)` then `build_plan`. It ends as one of:

- valid: a plan (with --compile, the plan is compiled too; a failure there counts as not clean);
- clean: a SkitflowError with exit code 2 whose every problem has a file:line:col;
- unlocated: a SkitflowError with exit code 2 where some problem has no line:col;
- not clean: any other exception (a traceback for the user), or a compile failure.

The mutants depend only on the seed, so two versions of skitflow can be compared on the same
ones: point PYTHONPATH at the other checkout and keep this script and tests/mutants.py from here.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _mutants_module():
    """tests/mutants.py of this checkout, whatever skitflow PYTHONPATH points at."""
    spec = importlib.util.spec_from_file_location("skitflow_mutants", HERE / "tests" / "mutants.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="compile every valid mutant too")
    parser.add_argument("--show", type=int, default=3, help="examples printed per failure kind")
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args()

    import skitflow
    from skitflow.errors import SkitflowError
    from skitflow.plan.planner import build_plan
    from skitflow.recipe.loader import load_recipe_file
    from skitflow.steps.registry import default_registry

    compile_plan = None
    if args.compile:
        from skitflow.compile.build import compile_plan

    mutants = _mutants_module()
    seeds = [(p.relative_to(HERE).as_posix(), p.read_text(encoding="utf-8"))
             for p in mutants.seed_recipes(HERE)]
    rng = random.Random(args.seed)
    registry = default_registry()
    counts: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    slowest = (0.0, "")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.mutants):
            name, text = rng.choice(seeds)
            data = mutants.mutate(text, rng)
            path = Path(folder) / f"m{index % 50}.yaml"
            path.write_bytes(data)
            begin = time.perf_counter()
            outcome, detail = "valid", ""
            try:
                plan = build_plan(load_recipe_file(path, {"HOME": "/home/u"}, partial=True), registry)
                if compile_plan is not None:
                    compile_plan(plan)
            except SkitflowError as exc:
                if exc.exit_code != 2:
                    outcome, detail = "not clean", f"exit {exc.exit_code}: {exc.summary()[:300]}"
                elif all(p.location for p in exc.problems) and exc.problems:
                    outcome = "clean"
                else:
                    outcome, detail = "unlocated", exc.summary()[:300]
            except Exception as exc:  # noqa: BLE001 - what we are counting
                outcome = "not clean"
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                detail = f"{type(exc).__name__}: {str(exc)[:200]} ({Path(frame.filename).name}:{frame.lineno})"
                kinds[f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"] += 1
            elapsed = time.perf_counter() - begin
            if elapsed > slowest[0]:
                slowest = (elapsed, name)
            counts[outcome] += 1
            if outcome in ("not clean", "unlocated") and len(examples[outcome]) < args.show:
                examples[outcome].append(f"{name} -> {detail}\n{data.decode('utf-8', 'replace')[:600]}")
    wall = time.perf_counter() - started
    total = args.mutants
    report = {
        "skitflow": str(Path(skitflow.__file__).parent),
        "mutants": total, "seed": args.seed, "compile": args.compile,
        **{k: counts[k] for k in ("valid", "clean", "unlocated", "not clean")},
        "wall_s": round(wall, 1), "slowest_s": round(slowest[0], 3),
        "not_clean_kinds": dict(kinds.most_common(10)),
    }
    for kind, shown in examples.items():
        for example in shown:
            print(f"--- {kind}: {example}\n", file=sys.stderr)
    print(json.dumps(report, indent=2))
    for key in ("valid", "clean", "unlocated", "not clean"):
        print(f"{key:>10}: {counts[key]:6d} ({100 * counts[key] / total:.2f} %)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
