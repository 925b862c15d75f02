"""`skitflow runs`: the local run history: list, show one, compare several."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=False, rich_markup_mode=None,
                  invoke_without_command=True)
_BASE = typer.Option(Path("runs"), "--runs-dir", help="Where `skitflow run` put its runs.")
_JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def _metrics_text(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


@app.callback()
def runs(
    ctx: typer.Context,
    recipe: str | None = typer.Option(None, "--recipe", help="Only runs of this recipe."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs, newest first."),
    base: Path = _BASE,
    as_json: bool = _JSON,
) -> None:
    """List local runs: recipe, started, status, duration, key metrics, gate.

    Examples:

    \b
      skitflow runs
      skitflow runs --recipe tickets-classifier --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from skitflow.run.history import list_runs

    records = list_runs(base, recipe)[:limit]
    if as_json:
        typer.echo(json.dumps([{"id": r.id, "recipe": r.recipe, "started": r.started,
                                "status": r.status, "seconds": r.seconds,
                                "metrics": r.key_metrics(), "gate": r.gate or None}
                               for r in records], indent=2))
        return
    if not records:
        typer.echo(f"no runs under {base} yet: `skitflow run RECIPE` makes one")
        return
    from rich.table import Table

    table = Table("run", "recipe", "started", "status", "seconds", "metrics", "gate")
    for r in records:
        table.add_row(r.id, r.recipe, r.started, r.status,
                      "" if r.seconds is None else f"{r.seconds:.1f}", _metrics_text(r.key_metrics()),
                      r.gate)
    _wide().print(table)


def _wide():
    """A console wide enough that run names and metrics are not cut when piped."""
    import shutil

    from rich.console import Console

    return Console(width=max(shutil.get_terminal_size().columns, 160), highlight=False)


@app.command("show")
def show(run: str = typer.Argument(..., help="Run folder name (or a unique prefix), or its path."),
         base: Path = _BASE, as_json: bool = _JSON) -> None:
    """Show one run: its summary, parameters, tasks and metrics.

    Examples:

    \b
      skitflow runs show tickets-classifier-20261201-101500
    """
    from skitflow.run.history import find_run

    record = find_run(run, base)
    if as_json:
        typer.echo(json.dumps({"id": record.id, **record.summary}, indent=2, sort_keys=True))
        return
    from rich.table import Table

    from skitflow.cli.common import stdout

    console = stdout()
    console.print(f"{record.id}: {record.recipe} {record.status}"
                  + (f" in {record.seconds:.1f}s" if record.seconds is not None else "")
                  + f", started {record.started}", markup=False)
    if record.parameters:
        console.print("parameters: " + ", ".join(f"{k}={json.dumps(v)}"
                                                 for k, v in sorted(record.parameters.items())),
                      markup=False)
    tasks = Table("task", "status", "seconds", "rows out")
    for name, task in (record.summary.get("tasks") or {}).items():
        seconds = task.get("seconds")
        tasks.add_row(name, str(task.get("status", "")), "" if seconds is None else f"{seconds:.1f}",
                      "" if task.get("rows") is None else str(task["rows"]))
    console.print(tasks)
    if record.metrics:
        console.print("metrics: " + _metrics_text(dict(sorted(record.metrics.items()))), markup=False)
    if record.gate:
        console.print(f"gate: {record.gate}", markup=False)
    failure = record.summary.get("failure")
    if failure:
        console.print(f"failure: {failure.get('task') or ''} {failure.get('error') or ''}".strip(),
                      markup=False)


@app.command("compare")
def compare(runs: list[str] = typer.Argument(..., help="Two or more runs (names, prefixes or paths)."),
            base: Path = _BASE, as_json: bool = _JSON,
            all_fields: bool = typer.Option(False, "--all", help="Also rows where all runs agree.")) -> None:
    """Put runs side by side: parameters, recipe hash, source rows and hashes, metrics and deltas,
    gate verdicts.

    Examples:

    \b
      skitflow runs compare tickets-classifier-20261201-101500 tickets-classifier-20261201-113000
    """
    from skitflow.errors import SkitflowError
    from skitflow.run.history import comparison, find_run

    if len(runs) < 2:
        raise SkitflowError("`runs compare` needs at least two runs", hint="skitflow runs lists them")
    records = [find_run(ref, base) for ref in runs]
    rows = comparison(records)
    if as_json:
        typer.echo(json.dumps({"runs": [r.id for r in records], "rows": rows}, indent=2))
        return
    from rich.table import Table

    table = Table("field", *[r.id for r in records])
    for row in rows:
        if not (row["differs"] or all_fields or row["field"].startswith("metric.")):
            continue
        cells = []
        for index, value in enumerate(row["values"]):
            text = "" if value is None else (f"{value:.4f}" if isinstance(value, float) else
                                             json.dumps(value) if not isinstance(value, str) else value)
            delta = (row.get("deltas") or [None] * len(records))[index]
            if index and delta is not None:
                text += f" ({delta:+.4f})"
            cells.append(text)
        table.add_row(row["field"], *cells)
    _wide().print(table)
