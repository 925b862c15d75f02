"""`skitflow graph`: draw a recipe's compiled DAG (Mermaid, DOT, SVG or PNG)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


def graph(
    recipe: Path = typer.Argument(..., help="The recipe to draw."),
    fmt: GraphFormat = typer.Option(GraphFormat.mermaid, "--format", "-f",
                                    help="mermaid and dot need nothing; svg and png need Graphviz."),
    output: Path | None = typer.Option(None, "-o", "--output", help="File to write (default: stdout)."),
) -> None:
    """Draw the recipe's pipeline: one node per task with its fused steps, conditions on the edges.

    Examples:

    \b
      skitflow graph examples/tickets.yaml                  # Mermaid text on stdout
      skitflow graph examples/tickets.yaml -f svg -o dag.svg
    """
    from skitflow.plan.graph import plan_graph, to_dot, to_mermaid
    from skitflow.plan.planner import build_plan
    from skitflow.recipe.loader import load_recipe_file
    from skitflow.steps.registry import default_registry
    from skitflow.util.atomic import write_bytes
    from skitflow.util.graphviz import render

    drawn = plan_graph(build_plan(load_recipe_file(recipe, partial=True), default_registry()))
    if fmt is GraphFormat.mermaid:
        data: bytes = to_mermaid(drawn).encode()
    elif fmt is GraphFormat.dot:
        data = to_dot(drawn).encode()
    else:
        data = render(to_dot(drawn), fmt.value)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        write_bytes(output, data)
        typer.echo(f"wrote {output} ({len(drawn.nodes)} nodes, {len(drawn.edges)} edges)", err=True)
