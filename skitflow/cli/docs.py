"""`skitflow docs`: write a static HTML site of a folder of recipes (opens from file://)."""

from __future__ import annotations

from pathlib import Path

import typer


def docs(
    recipes: Path = typer.Argument(Path("."), help="A folder of recipes (searched recursively) or one recipe."),
    output: Path = typer.Option(Path("site"), "-o", "--output", help="Folder to write the site into."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Local runs to show (if any)."),
) -> None:
    """Write a static documentation site: one page per recipe (DAG, parameters, steps, sinks,
    gate, schedule), the step catalogue, and the latest local runs. Needs Graphviz for the DAGs.

    Examples:

    \b
      skitflow docs recipes -o site && xdg-open site/index.html
      skitflow docs . -o public/pipelines --runs-dir runs
    """
    from skitflow.cli.common import find_recipes, print_warnings
    from skitflow.docs.site import RecipePage, build_site, inline_svg
    from skitflow.errors import SkitflowError
    from skitflow.plan.graph import plan_graph, to_dot
    from skitflow.plan.planner import build_plan
    from skitflow.recipe.loader import is_recipe_file, load_recipe_file
    from skitflow.run.history import list_runs
    from skitflow.steps.registry import default_registry
    from skitflow.util.atomic import write_text
    from skitflow.util.graphviz import render

    registry = default_registry()
    pages, problems = [], []
    for file in find_recipes([recipes]):
        if not is_recipe_file(file):
            continue  # compiled packages and other YAML beside the recipes
        try:
            loaded = load_recipe_file(file, partial=True)
            plan = build_plan(loaded, registry)
        except SkitflowError as exc:
            problems.extend(exc.problems)
            continue
        print_warnings(plan.warnings)
        svg = inline_svg(render(to_dot(plan_graph(plan)), "svg").decode())
        notify = [entry.model_dump(mode="json", exclude_none=True) for entry in loaded.recipe.notify]
        pages.append(RecipePage(str(file), plan, svg, notify or None))
    if problems:
        raise SkitflowError(problems=problems)  # nothing is written for an invalid folder
    site = build_site(pages, registry, list_runs(runs_dir))
    for name, html in site.items():
        write_text(output / name, html)
    typer.echo(f"wrote {len(site)} pages to {output}/ ({len(pages)} recipes): open "
               f"{(output / 'index.html').resolve().as_uri()}")
