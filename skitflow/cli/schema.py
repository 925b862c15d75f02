"""`skitflow schema`: print the recipe JSON Schema (with every installed step)."""

from __future__ import annotations

from pathlib import Path

import typer


def schema(
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to this file instead."),
) -> None:
    """Print the JSON Schema of recipes, including every registered step's settings.

    Examples:

    \b
      skitflow schema -o schemas/recipe.schema.json
      skitflow schema | jq '.properties | keys'
    """
    from skitflow.recipe.schema import schema_text
    from skitflow.steps.registry import default_registry

    text = schema_text(default_registry())
    if output is None:
        typer.echo(text, nl=False)
    else:
        from skitflow.util.atomic import write_text

        write_text(output, text)
