"""`skitflow steps` and `skitflow steps show NAME`: what steps exist and how to use them."""

from __future__ import annotations

import typer

from skitflow.cli.common import stdout
from skitflow.errors import SkitflowError

app = typer.Typer(invoke_without_command=True,
                  no_args_is_help=False, rich_markup_mode=None)


@app.callback()
def list_steps(ctx: typer.Context) -> None:
    """List every registered step: name, kind, package and summary.

    Examples:

    \b
      skitflow steps
      skitflow steps show dropna
    """
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from skitflow.steps.registry import default_registry

    table = Table("step", "kind", "package", "summary", box=None, pad_edge=False)
    for entry in default_registry():
        table.add_row(entry.name, entry.kind.value, entry.package, entry.step.summary())
    stdout().print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="Step name, as used in recipes.")) -> None:
    """Show a step's settings, its column contract and an example.

    Examples:

    \b
      skitflow steps show dropna
      skitflow steps show s3
    """

    from skitflow.steps.registry import default_registry

    registry = default_registry()
    entries = registry.find(name)
    if not entries:
        raise SkitflowError(f"unknown step `{name}`", hint=registry.suggest(name) or "`skitflow steps` lists them")
    for index, entry in enumerate(entries):
        if index:
            stdout().print()
        _show(entry)


def _show(entry) -> None:
    import yaml
    from rich.table import Table

    name = entry.name
    step = entry.step
    out = stdout()
    out.print(f"{step.name} ({step.kind.value}, from {entry.package})", markup=False)
    out.print((step.__doc__ or "").strip(), markup=False)
    from skitflow.steps.describe import setting_rows

    table = Table("setting", "type", "default", "description", box=None, pad_edge=False)
    for row in setting_rows(step):
        table.add_row(row.name, row.type, row.default, row.description)
    out.print()
    out.print(table)
    example = dict(step.example)
    try:
        settings = step.Settings.model_validate(example)
        instance = step()
        needs = list(instance.needs(settings))
        before = [*needs, "other"]
        after = instance.columns_out(settings, before)
        produced = list(instance.produces(settings))
        out.print()
        out.print(f"needs columns: {', '.join(needs) or '-'}", markup=False)
        if produced:
            out.print(f"produces columns: {', '.join(produced)}", markup=False)
        out.print("columns after: " + ("decided by the data at run time" if after is None else (
            ", ".join(after) + f"   (given: {', '.join(before)})")), markup=False)
    except Exception:  # an example that does not validate is caught by the docs test
        pass
    out.print()
    out.print("example:", markup=False)
    slot = {"source": "source", "transform": "steps", "sink": "sinks"}.get(step.kind.value, step.kind.value)
    snippet = {slot: [{name: example}]} if slot in ("steps", "sinks") else {slot: {name: example}}
    out.print(yaml.safe_dump(snippet, sort_keys=False).rstrip(), markup=False)
