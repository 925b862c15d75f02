"""`skitflow steps` and `skitflow steps show NAME`: what steps exist and how to use them."""

from __future__ import annotations

import typer

from skitflow.cli.common import stdout
from skitflow.errors import SkitflowError

app = typer.Typer(help="List registered steps, or show one.", invoke_without_command=True,
                  no_args_is_help=False, rich_markup_mode=None)


@app.callback()
def list_steps(ctx: typer.Context) -> None:
    """List every registered step: name, kind, package and summary."""
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
    """Show a step's settings, its column contract and an example."""

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
    table = Table("setting", "type", "default", "description", box=None, pad_edge=False)
    for field_name, info in step.Settings.model_fields.items():
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        type_name = _type_name(info.annotation)
        table.add_row(field_name, type_name, default, info.description or "")
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


def _type_name(annotation) -> str:
    """`list[str] | None`, `'any' | 'all'`: types as a user reads them, not typing's repr."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else origin.__name__
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))
