"""Recipe text -> validated Recipe, with every problem located in the file.

`load_recipe_text` is pure (text and environment in, Recipe out); `load_recipe_file` reads the file
and hands over. All problems found are reported together, each with file:line:col.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from skitflow.errors import Problem, RecipeError, did_you_mean
from skitflow.recipe.matrix import Branch, Loop, expand_matrix, run_time_loop
from skitflow.recipe.models import Recipe
from skitflow.recipe.sourcemap import Path, SourceMap, offset_location, parse_yaml, too_large
from skitflow.recipe.templating import Renderer, TemplateProblem
from skitflow.util.limits import MAX_RECIPE_BYTES

#: Values that are never templated: parameter declarations and run-time conditions.
_NOT_TEMPLATED = ("parameters", "matrix")


#: Top-level keys whose errors do not stop the steps from being checked too.
_SALVAGEABLE = {"apiVersion", "name", "description", "version", "image", "dataset_format"}
_PLACEHOLDERS = {"apiVersion": "skitflow/v1", "name": "invalid-recipe"}


@dataclass(frozen=True)
class LoadedRecipe:
    """A recipe with what is needed to point back into its file.

    `problems` is empty unless loaded with ``partial=True``: then it holds the problems found so
    far, and `recipe` is the best valid reading of the rest, so that later stages (steps, columns)
    can report their problems in the same run.
    """

    recipe: Recipe
    source_map: SourceMap
    text: str
    problems: tuple[Problem, ...] = ()
    #: with `matrix:`, each branch's values and its recipe rendered with them (`recipe` is the
    #: first branch's); empty without a matrix
    branches: tuple[tuple[Branch, Recipe], ...] = ()
    #: a matrix dimension from a list parameter: one path in a `dsl.ParallelFor`, no branches
    loop: Loop | None = None

    @property
    def file(self) -> str:
        return self.source_map.file


def is_recipe_file(path: str | os.PathLike[str]) -> bool:
    """Whether a YAML file beside the recipes is one (not a compiled package or other config).

    A recipe says `apiVersion: skitflow/...` at the top level; reading the head is enough.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(65536)
    except OSError:
        return True  # let loading report why it cannot be read
    return re.search(r"^apiVersion:\s*['\"]?skitflow/", head, re.MULTILINE) is not None


def load_recipe_file(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, *, partial: bool = False
) -> LoadedRecipe:
    """Read and load a recipe file; a missing or unreadable file is a RecipeError too."""
    file = str(path)
    text = read_recipe_text(file)
    return load_recipe_text(text, file, os.environ if environ is None else environ, partial=partial)


def read_recipe_text(file: str) -> str:
    """The text of a recipe file: at most MAX_RECIPE_BYTES read, UTF-8 checked with a location."""
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError(f"recipe file `{file}` does not exist", hint="check the path") from None
    except OSError as exc:
        raise RecipeError(f"cannot read recipe file `{file}`: {exc.strerror or exc}") from None
    return decode_recipe_bytes(data, file)


def decode_recipe_bytes(data: bytes, file: str) -> str:
    """UTF-8 bytes -> text; too many bytes or a byte that is not UTF-8 is located."""
    if len(data) > MAX_RECIPE_BYTES:
        prefix = data[:MAX_RECIPE_BYTES].decode("utf-8", "ignore")
        raise too_large(file, offset_location(prefix, len(prefix), file))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", "replace")
        raise RecipeError(
            f"the recipe is not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded",
            offset_location(before, len(before), file),
            "save the file as UTF-8",
        ) from None


def load_recipe_text(
    text: str,
    file: str = "<recipe>",
    environ: Mapping[str, str] | None = None,
    *,
    partial: bool = False,
) -> LoadedRecipe:
    """Parse, template and validate a recipe document (no I/O).

    Raises RecipeError on any problem, unless `partial` is set and enough of the recipe is valid
    to go on checking its steps (see LoadedRecipe.problems).
    """
    raw, source_map = parse_yaml(text, file)
    if raw is None:
        raise RecipeError(
            "the recipe is empty",
            source_map.locate(())[0],
            "start from the example in README.md: `apiVersion: skitflow/v1`, `name:`, `source:`",
        )
    if not isinstance(raw, dict):
        raise RecipeError(
            "a recipe must be a YAML mapping with `apiVersion`, `name`, `source`, ...",
            source_map.locate(())[0],
            "start from the example in README.md",
        )
    if "matrix" in raw:
        return _load_branches(raw, source_map, text, environ or {}, partial)
    problems: list[Problem] = []
    recipe = _validated(raw, source_map, environ or {}, problems)
    if recipe is None or (problems and not partial):
        raise RecipeError(problems=problems)
    return LoadedRecipe(recipe, source_map, text, tuple(problems))


def _validated(raw: dict[str, Any], source_map: SourceMap, environ: Mapping[str, str],
               problems: list[Problem], matrix: Mapping[str, Any] | None = None) -> Recipe | None:
    rendered = _render_templates(raw, source_map, environ, problems, matrix)
    try:
        return Recipe.model_validate(rendered)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, rendered, source_map, Recipe))
        return _salvage(rendered, exc)


def _load_branches(raw: dict[str, Any], source_map: SourceMap, text: str,
                   environ: Mapping[str, str], partial: bool) -> LoadedRecipe:
    """A matrix recipe: rendered and validated once per branch; a problem shared by every branch
    is reported once. A run-time dimension renders once, `{{ matrix.NAME }}` being the loop item
    (a run-time name, like a parameter's: see skitflow.recipe.matrix.Loop)."""
    loop = run_time_loop(raw["matrix"], raw.get("parameters"), source_map)
    if loop is not None:
        return _load_loop(raw, source_map, text, environ, partial, loop)
    branches = expand_matrix(raw["matrix"], source_map)
    problems: list[Problem] = []
    seen: set[Problem] = set()
    loaded: list[tuple[Branch, Recipe]] = []
    for branch in branches:
        found: list[Problem] = []
        recipe = _validated(raw, source_map, environ, found, branch.values)
        for problem in found:
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
        if recipe is None:
            raise RecipeError(problems=problems)
        loaded.append((branch, recipe))
    if problems and not partial:
        raise RecipeError(problems=problems)
    return LoadedRecipe(loaded[0][1], source_map, text, tuple(problems), tuple(loaded))


def _load_loop(raw: dict[str, Any], source_map: SourceMap, text: str,
               environ: Mapping[str, str], partial: bool, loop: Loop) -> LoadedRecipe:
    from skitflow.recipe.templating import run_time_marker

    # the item is declared while the recipe renders and validates (its type, a value for the
    # checks made with defaults), then taken out: the planner declares it again for its tasks
    item = loop.item_declaration(raw["parameters"][loop.items].get("default"))
    with_item = {**raw, "parameters": {**raw["parameters"], loop.item: item}}
    problems: list[Problem] = []
    recipe = _validated(with_item, source_map, environ, problems,
                        {loop.name: run_time_marker(loop.item)})
    if recipe is None or (problems and not partial):
        raise RecipeError(problems=problems)
    # run, submit and serve take the recipe's parameters as the pipeline's inputs: not the item
    declared = {k: v for k, v in recipe.parameters.items() if k != loop.item}
    recipe = recipe.model_copy(update={"parameters": declared})
    return LoadedRecipe(recipe, source_map, text, tuple(problems), loop=loop)


def _salvage(rendered: dict[str, Any], exc: ValidationError) -> Recipe | None:
    """A valid Recipe from the rest of the document when only top-level details are wrong."""
    bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    fields = {info.alias or name for name, info in Recipe.model_fields.items()}
    if any(key in fields and key not in _SALVAGEABLE for key in bad):
        return None
    data = {k: v for k, v in rendered.items() if k not in bad}
    for key, placeholder in _PLACEHOLDERS.items():
        data.setdefault(key, placeholder)
    try:
        return Recipe.model_validate(data)
    except ValidationError:
        return None


def _render_templates(
    raw: dict[str, Any], source_map: SourceMap, environ: Mapping[str, str], problems: list[Problem],
    matrix: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    params = raw.get("parameters")
    names = tuple(params) if isinstance(params, dict) else ()
    recipe_info = {"name": raw.get("name", ""), "description": raw.get("description", "")}
    renderer = Renderer(recipe_info, tuple(str(n) for n in names), environ, matrix)

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {
                k: (v if not path and k in _NOT_TEMPLATED else walk(v, (*path, k)))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str):
            try:
                return renderer.render(value)
            except TemplateProblem as exc:
                problems.append(source_map.problem(path, exc.message, exc.hint))
                return value
        return value

    return walk(raw, ())


def pydantic_problems(
    exc: ValidationError,
    data: Any,
    source_map: SourceMap,
    model: type[BaseModel],
    prefix: Path = (),
    noun: str = "key",
    owner: str | None = None,
) -> list[Problem]:
    """Translate pydantic's errors into located problems with did-you-mean hints."""
    of = f" of `{owner}`" if owner else ""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        path, fields = _real_path(error["loc"], data, model)
        full = (*prefix, *path)
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            hint = did_you_mean(key, fields) or (
                f"allowed: {', '.join(sorted(fields))}" if fields else None
            )
            problems.append(source_map.problem(full, f"unknown {noun} `{key}`{of}", hint, key=True))
        elif kind == "missing":
            missing = str(error["loc"][-1])
            problems.append(
                source_map.problem(full[:-1] if path and path[-1] == missing else full,
                                   f"missing required {noun} `{missing}`{of}",
                                   f"add `{missing}:`", key=True)
            )
        else:
            label = ".".join(str(p) for p in path) or "value"
            message = error["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
            problems.append(source_map.problem(full, f"`{label}`: {message}"))
    return problems


def _real_path(loc: Sequence[Any], data: Any, model: type[BaseModel]) -> tuple[Path, list[str]]:
    """Keep only loc segments that exist in the data (pydantic adds union/type names).

    Also returns the field names allowed beside the last segment, for suggestions.
    """
    path: list[str | int] = []
    current: Any = data
    annotation: Any = model
    fields: list[str] = _model_fields(model)
    for segment in loc:
        fields = _model_fields(annotation)
        if isinstance(current, dict) and segment in current or isinstance(current, list) and isinstance(segment, int) and segment < len(current):
            path.append(segment)
            current = current[segment]
            annotation = _child_annotation(annotation, segment)
        elif isinstance(segment, str) and fields and segment in fields:
            path.append(segment)  # a missing field: point at its parent, name the field
            break
    return tuple(path), fields


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unwrap(arg)]
    return [annotation]


def _model_fields(annotation: Any) -> list[str]:
    for option in _unwrap(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return [f.alias or name for name, f in option.model_fields.items()]
    return []


def _child_annotation(annotation: Any, segment: str | int) -> Any:
    for option in _unwrap(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            for name, info in option.model_fields.items():
                if segment in (name, info.alias):
                    return info.annotation
        origin = typing.get_origin(option)
        if origin in (list, tuple) and isinstance(segment, int):
            return typing.get_args(option)[0]
        if origin is dict and isinstance(segment, str):
            return typing.get_args(option)[1]
    return Any
