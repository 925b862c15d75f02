"""`skitflow validate`: check recipes without importing kfp."""

from __future__ import annotations

from pathlib import Path

import typer

from skitflow.cli.common import print_warnings, stdout
from skitflow.errors import SkitflowError


def validate(
    recipes: list[Path] = typer.Argument(..., help="Recipe files or folders of recipes."),
) -> None:
    """Check recipes (syntax, settings, steps, columns) without compiling them."""
    from skitflow.cli.compile import find_recipes
    from skitflow.plan.planner import build_plan
    from skitflow.recipe.loader import load_recipe_file
    from skitflow.steps.registry import default_registry

    problems = []
    files = find_recipes(recipes)
    for file in files:
        try:
            plan = build_plan(load_recipe_file(file, partial=True), default_registry())
        except SkitflowError as exc:
            problems.extend(exc.problems)
            continue
        print_warnings(plan.warnings)
        stdout().print(f"ok {file} ({len(plan.tasks)} tasks)", markup=False)
        for note in plan.notes:
            stdout().print(f"  note: {note}", markup=False)
    if problems:
        raise SkitflowError(problems=problems)
