"""`skitflow compile`: recipes -> KFP v2 packages; nothing is written unless all are valid."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from skitflow.cli.common import print_warnings, stdout
from skitflow.errors import SkitflowError

RECIPE_SUFFIXES = (".yaml", ".yml")


class Target(enum.StrEnum):
    """Where the package is meant to run."""

    kubeflow = "kubeflow"
    local = "local"


def find_recipes(paths: list[Path]) -> list[Path]:
    """Files as given, and every *.yaml/*.yml under each folder, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in RECIPE_SUFFIXES and p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise SkitflowError(f"`{path}` does not exist", hint="give a recipe file or a folder of recipes")
    if not found:
        raise SkitflowError(f"no recipes (*.yaml) found in {', '.join(map(str, paths))}")
    return found


def compile_command(
    recipe: Path = typer.Argument(..., help="A recipe file, or a folder of recipes."),
    output: Path | None = typer.Option(
        None, "-o", "--output",
        help="Package file (for one recipe) or folder (for a folder). Default: build/NAME.yaml.",
    ),
    target: Target = typer.Option(
        Target.kubeflow, "--target",
        help="kubeflow: also refuse what cannot work in a pod (local paths, localhost, plugins "
        "missing from the image); local: for `skitflow run` and kfp.local.",
    ),
) -> None:
    """Compile recipes into Kubeflow Pipelines v2 packages (IR YAML)."""
    from skitflow.api import compile_recipe
    from skitflow.compile.emit import write_atomically
    from skitflow.plan.cluster import require_cluster_ready
    from skitflow.recipe.loader import load_recipe_file
    from skitflow.steps.registry import default_registry

    files = find_recipes([recipe])
    to_folder = recipe.is_dir() or output is None or output.suffix not in RECIPE_SUFFIXES
    packages, problems = [], []
    for file in files:
        try:
            loaded = load_recipe_file(file, partial=True)
            packages.append((file, compile_recipe(loaded)))
            if target is Target.kubeflow:
                require_cluster_ready(loaded, default_registry())
        except SkitflowError as exc:
            if exc.exit_code != 2:
                raise
            problems.extend(exc.problems)
    if problems:
        raise SkitflowError(problems=problems)
    names: dict[str, Path] = {}
    for file, package in packages:
        if package.name in names:
            raise SkitflowError(
                f"recipes `{names[package.name]}` and `{file}` are both named `{package.name}`",
                hint="give each recipe a unique `name:`",
            )
        names[package.name] = file
    for file, package in packages:
        print_warnings(package.plan.warnings)
        written = (output or Path("build")) / f"{package.name}.yaml" if to_folder else output
        assert written is not None
        write_atomically(written, package.text)
        stdout().print(f"compiled {file} -> {written} ({len(package.plan.tasks)} tasks)", markup=False)
