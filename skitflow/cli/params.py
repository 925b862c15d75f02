"""`skitflow params`: the parameters a recipe declares, for people and scripts."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def params(
    recipe: Path = typer.Argument(..., help="The recipe whose parameters to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List a recipe's parameters: name, type, default and description.

    Examples:

    \b
      skitflow params examples/tickets.yaml
      skitflow params examples/tickets.yaml --json | jq .test_size.default
    """
    from skitflow.cli.common import stdout
    from skitflow.recipe.loader import load_recipe_file

    declared = load_recipe_file(recipe, partial=True).recipe.parameters
    if as_json:
        typer.echo(json.dumps({name: p.model_dump() for name, p in declared.items()}, indent=2))
        return
    if not declared:
        typer.echo(f"{recipe} declares no parameters")
        return
    from rich.table import Table

    table = Table("name", "type", "default", "description", title=f"parameters of {recipe}")
    for name, parameter in declared.items():
        default = "(required)" if parameter.default is None else json.dumps(parameter.default)
        table.add_row(name, parameter.type, default, parameter.description)
    stdout().print(table)
