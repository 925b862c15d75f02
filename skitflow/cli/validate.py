"""`skitflow validate`: check recipes without importing kfp (or typer: `skitflow.cli.main` calls
this directly for a plain `skitflow validate FILE...`)."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING

from skitflow.cli.common import echo, print_warnings
from skitflow.errors import Problem, SkitflowError

if TYPE_CHECKING:
    from skitflow.plan.planner import Plan
    from skitflow.recipe.loader import LoadedRecipe


def validate_recipes(recipes: list[Path]) -> None:
    """Validate every recipe in RECIPES, print one line per valid one; raise for the rest."""
    from skitflow.cli.common import find_recipes
    from skitflow.plan.planner import build_plan
    from skitflow.recipe.loader import load_recipe_file
    from skitflow.steps.registry import default_registry

    problems = []
    files = find_recipes(recipes)
    for file in files:
        try:
            loaded = load_recipe_file(file, partial=True)
            plan = build_plan(loaded, default_registry())
        except SkitflowError as exc:
            problems.extend(exc.problems)
            continue
        print_warnings([*plan.warnings, *missing_local_sources(loaded, plan)])
        branches = f", {plan.branches} matrix branches" if plan.branches > 1 else ""
        if plan.loop is not None:
            branches = f", branches: {plan.loop.describe()}"
        echo(f"ok {file} ({len(plan.tasks)} tasks{branches})")
        for note in plan.notes:
            echo(f"  note: {note}")
    if problems:
        raise SkitflowError(problems=problems)


def missing_local_sources(loaded: LoadedRecipe, plan: Plan) -> list[Problem]:
    """Warnings for local source paths that do not exist now (they may by the time it runs)."""
    from urllib.parse import urlsplit

    warnings = []
    for task in plan.tasks:
        for call in task.calls:
            path = call.settings.get("path") if call.kind.value == "source" else None
            if not isinstance(path, str) or "{{" in path:
                continue
            scheme = urlsplit(path).scheme.lower()
            if len(scheme) > 1 and scheme != "file":  # s3://, http(s)://; one letter: a drive
                continue
            local = path[len("file://"):] if scheme == "file" else path
            exists = glob.glob(local, recursive=True) if glob.has_magic(local) else os.path.exists(local)
            if not exists:
                warnings.append(loaded.source_map.problem(
                    ("source", call.step, "path"),
                    f"local source path `{path}` does not exist",
                    "relative paths are read from the directory `skitflow run` starts in"))
    return warnings
