"""`skitflow compile`: recipes -> KFP v2 packages; nothing is written unless all are valid."""

from __future__ import annotations

import enum
import re
from pathlib import Path

import typer

from skitflow.cli.common import print_warnings, stderr, stdout
from skitflow.errors import SkitflowError

RECIPE_SUFFIXES = (".yaml", ".yml")


#: What makes a YAML file under a folder a recipe, and what marks a compiled KFP package.
_RECIPE_MARK = re.compile(r"""(?:^|[{,\s])["']?apiVersion["']?\s*:\s*["']?skitflow/""", re.M)
_PACKAGE_MARK = re.compile(r"^(?:pipelineInfo|deploymentSpec)\s*:", re.M)


def looks_like_recipe(path: Path) -> bool:
    """A cheap look at the text: `apiVersion: skitflow/...` and not a compiled package.

    Unreadable files count as recipes, so that loading them reports why.
    """
    from skitflow.util.limits import MAX_RECIPE_BYTES

    try:
        with path.open("rb") as handle:
            head = handle.read(MAX_RECIPE_BYTES).decode("utf-8", "replace")
    except OSError:
        return True
    return bool(_RECIPE_MARK.search(head)) and not _PACKAGE_MARK.search(head)


class Target(enum.StrEnum):
    """Where the package is meant to run."""

    kubeflow = "kubeflow"
    local = "local"


def find_recipes(paths: list[Path]) -> list[Path]:
    """Files as given, and every recipe among the *.yaml/*.yml under each folder, sorted.

    Other YAML under a folder (compiled packages, CI files) is skipped with a note; a file named
    on the command line is always loaded, so its mistakes are reported.
    """
    found: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(p for p in path.rglob("*") if p.suffix in RECIPE_SUFFIXES and p.is_file()):
                (found if looks_like_recipe(candidate) else skipped).append(candidate)
        elif path.exists():
            found.append(path)
        else:
            raise SkitflowError(f"`{path}` does not exist", hint="give a recipe file or a folder of recipes")
    if skipped:
        stderr().print(f"note: skipped {len(skipped)} YAML file(s) that are not skitflow recipes "
                       f"(no `apiVersion: skitflow/...`, or a compiled package): "
                       f"{', '.join(map(str, skipped))}", markup=False)
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
