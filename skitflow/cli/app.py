"""The typer application: every command and its options (`skitflow.cli.main` starts it)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup

from skitflow.cli import common
from skitflow.errors import SkitflowError


class _Group(TyperGroup):
    """Turns a SkitflowError from any command into its message and exit code, no traceback."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except SkitflowError as exc:
            common.print_error(exc)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_Group,
    name="skitflow",
    help="Declarative ML pipeline recipes, compiled to Kubeflow Pipelines v2.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _validate(
    recipes: list[Path] = typer.Argument(..., help="Recipe files or folders of recipes."),
) -> None:
    """Check recipes (syntax, settings, steps, columns) without compiling them.

    Examples:

    \b
      skitflow validate examples/tickets.yaml
      skitflow validate recipes/          # every recipe in the folder
    """
    from skitflow.cli.validate import validate_recipes

    validate_recipes(recipes)


def _register() -> None:
    from skitflow.cli import compile as compile_cmd
    from skitflow.cli import (
        docs,
        graph,
        init,
        params,
        predict,
        run,
        runs,
        schema,
        serve,
        steps,
        submit,
    )

    app.command("validate")(_validate)
    app.command("compile")(compile_cmd.compile_command)
    app.command("run")(run.run)
    app.command("predict")(predict.predict)
    app.command("submit")(submit.submit)
    app.command("schedules")(submit.schedules)
    app.command("serve")(serve.serve)
    app.command("schema")(schema.schema)
    app.command("graph")(graph.graph)
    app.command("params")(params.params)
    app.command("init")(init.init)
    app.command("docs")(docs.docs)
    app.add_typer(steps.app, name="steps")
    app.add_typer(runs.app, name="runs")


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from skitflow import __version__

        typer.echo(__version__)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


_register()
