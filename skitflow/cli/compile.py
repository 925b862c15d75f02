"""`skitflow compile`: recipes -> KFP v2 packages; nothing is written unless all are valid."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from skitflow.cli.common import RECIPE_SUFFIXES, find_recipes, print_warnings, stdout
from skitflow.errors import SkitflowError


class Target(enum.StrEnum):
    """Where the package is meant to run."""

    kubeflow = "kubeflow"
    local = "local"


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
    """Compile recipes into Kubeflow Pipelines v2 packages (IR YAML).

    Examples:

    \b
      skitflow compile examples/tickets.yaml -o tickets.package.yaml
      skitflow compile recipes/ -o build/     # one package per recipe
    """
    from skitflow.api import compile_recipe
    from skitflow.compile.emit import write_package
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
        write_package(written, package.text)
        stdout().print(f"compiled {file} -> {written} ({len(package.plan.tasks)} tasks)", markup=False)
