"""`skitflow predict MODEL DATA -o OUT`: score a file of raw rows with a model bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from skitflow.cli.common import stdout
from skitflow.errors import SkitflowError, StepFailed


def predict(
    model: Path = typer.Argument(..., help="A model bundle (the `model` artifact of a run)."),
    data: Path = typer.Argument(..., help="Rows to score: a Parquet or CSV file."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the scored rows (.parquet or .csv)."),
    output: str = typer.Option("prediction", help="Name of the prediction column."),
    scores: bool = typer.Option(True, "--scores/--no-scores", help="Add one probability column per class."),
) -> None:
    """Add predictions (and per-class scores) to raw rows, as the recipe's source produced them.

    Examples:

    \b
      skitflow predict runs/published/model.zip new-calls.csv -o scored.csv
      skitflow predict model.zip calls.parquet -o scored.parquet --output intent --no-scores
    """
    from skitflow.steps.bundle import load_bundle
    from skitflow.util.datasets import read_dataset, write_dataset

    if out.suffix not in (".parquet", ".csv"):
        raise SkitflowError(f"`{out}`: write .parquet or .csv", hint="e.g. -o scored.parquet")
    if not data.is_file():
        raise SkitflowError(f"`{data}` does not exist", hint="give a Parquet or CSV file of rows")
    try:
        bundle = load_bundle(str(model))
        scored = bundle.predictions(read_dataset(str(data)), output=output, scores=scores)
    except StepFailed as exc:  # bad input (not a bundle, missing columns): exit 2, no traceback
        raise SkitflowError(problems=exc.problems) from None
    write_dataset(scored, str(out), out.suffix.lstrip("."))
    stdout().print(f"scored {len(scored):,} rows with {model} -> {out}", markup=False)
