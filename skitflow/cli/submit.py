"""`skitflow submit` and `skitflow schedules` (filled in with the submit issue)."""

from __future__ import annotations

from pathlib import Path

import typer

from skitflow.errors import SkitflowError


def submit(recipe: Path = typer.Argument(..., help="The recipe to submit.")) -> None:
    """Compile a recipe and start it on a Kubeflow Pipelines host."""
    raise SkitflowError("`skitflow submit` is not implemented yet", exit_code=1)


def schedules() -> None:
    """List recurring runs created by skitflow."""
    raise SkitflowError("`skitflow schedules` is not implemented yet", exit_code=1)
