"""`skitflow init`: scaffold a project that runs at once, without touching existing files."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from skitflow.errors import SkitflowError


def init(
    directory: Path = typer.Argument(Path("."), help="Project folder (created if missing)."),
    name: str | None = typer.Option(None, "--name", help="Recipe name (default: from the folder)."),
) -> None:
    """Create a working project: a recipe over a small generated dataset, ready to run.

    Examples:

    \b
      skitflow init my-project && cd my-project && skitflow run recipe.yaml
      skitflow init . --name churn-model
    """
    from skitflow.cli.scaffold import project_files
    from skitflow.recipe.schema import schema_text
    from skitflow.steps.registry import default_registry
    from skitflow.util.atomic import write_text

    recipe_name = name or _pipeline_name(directory.resolve().name)
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", recipe_name):
        raise SkitflowError(f"`{recipe_name}` is not a valid recipe name",
                            hint="use lowercase letters, digits and dashes, starting with a letter "
                                 "(--name my-model)")
    files = project_files(recipe_name, schema_text(default_registry()))
    existing = sorted(str(directory / path) for path in files if (directory / path).exists())
    if existing:
        raise SkitflowError(f"{directory} already has {', '.join(existing)}; nothing was written",
                            hint="run `skitflow init` in an empty folder, or move those files away")
    for path, text in files.items():
        write_text(directory / path, text)
    typer.echo(f"created {len(files)} files in {directory}: {', '.join(files)}")
    typer.echo(f"next: cd {directory} && skitflow run recipe.yaml")


def _pipeline_name(folder: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"project-{cleaned}".strip("-")
    return cleaned[:63]
