"""The Python API: what the CLI uses, for notebooks and scripts too."""

from __future__ import annotations

import os
from collections.abc import Mapping

from skitflow.compile.build import Package, compile_loaded
from skitflow.plan.planner import Plan, build_plan
from skitflow.recipe.loader import LoadedRecipe, load_recipe_file, load_recipe_text
from skitflow.steps.bundle import Bundle
from skitflow.steps.registry import Registry, default_registry


def load_recipe(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> LoadedRecipe:
    """Load and validate a recipe file (syntax, schema, templates)."""
    return load_recipe_file(path, environ)


def plan_recipe(loaded: LoadedRecipe, registry: Registry | None = None) -> Plan:
    """Resolve a loaded recipe's steps against the registry into a checked plan."""
    return build_plan(loaded, registry or default_registry())


def compile_recipe(
    recipe: str | os.PathLike[str] | LoadedRecipe,
    registry: Registry | None = None,
    environ: Mapping[str, str] | None = None,
) -> Package:
    """Recipe file (or loaded recipe) -> KFP package text, in memory."""
    loaded = recipe if isinstance(recipe, LoadedRecipe) else load_recipe_file(recipe, environ, partial=True)
    return compile_loaded(loaded, registry)


def load_model(path: str | os.PathLike[str]) -> Bundle:
    """Load a model bundle (a trainer's `model` artifact) to score raw rows.

    `load_model(path).predict(df)` replays the bundle's preprocessing with its fitted state on
    rows with the columns the recipe's source produced, then predicts; `predict_proba(df)` gives
    one probability column per class and `predictions(df)` the rows with prediction and score
    columns added. Loading never runs code from the file.
    """
    from skitflow.steps.bundle import load_bundle

    return load_bundle(os.fspath(path))


__all__ = ["compile_recipe", "load_model", "load_recipe", "load_recipe_text", "plan_recipe", "Bundle",
           "Package", "Plan"]
