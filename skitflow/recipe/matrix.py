"""`matrix:`: one recipe, many branches (per client, language, or trainer setting).

A top-level mapping of names to lists; the branches are their cross product, in the order written,
less the combinations an `exclude:` list names. Each branch renders the whole recipe once with
`{{ matrix.NAME }}` bound to its values (the templating sandbox and its limits hold per branch), so
every branch is a complete, validated recipe. Pure: no I/O.

The plan unrolls the branches at compile time (see skitflow/plan/matrix.py for why), so their
number is bounded: MAX_BRANCHES.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skitflow.errors import Problem, RecipeError
from skitflow.recipe.sourcemap import SourceMap

#: branches of one matrix, after `exclude:`; each is a complete pipeline path in the package
MAX_BRANCHES = 256
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VALUE_TYPES = (str, int, float, bool)
#: a dimension whose values a pipeline parameter would choose at submit time
_RUNTIME_LIST = re.compile(r"\{\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Branch:
    """One combination of matrix values, with the label its task names carry."""

    values: dict[str, Any]
    label: str


def expand_matrix(raw: Any, source_map: SourceMap) -> tuple[Branch, ...]:
    """The branches of a `matrix:` mapping; raises RecipeError, located, on any problem."""
    path: tuple[str | int, ...] = ("matrix",)
    if not isinstance(raw, Mapping) or not raw:
        raise RecipeError(problems=[source_map.problem(
            path, "`matrix:` must be a mapping of names to lists of values",
            "e.g. `matrix: {client: [acme, globex], lang: [en, hi]}`")])
    problems: list[Problem] = []
    axes: dict[str, list[Any]] = {}
    for name, values in raw.items():
        if name == "exclude":
            continue
        where = (*path, name)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(source_map.problem(where, f"matrix name `{name}` must be an identifier",
                                               "use letters, digits and `_`", key=True))
        elif not isinstance(values, list) or not values:
            problems.append(source_map.problem(where, f"matrix `{name}` must be a non-empty list",
                                               f"e.g. `{name}: [a, b]`"))
        elif not all(isinstance(v, _VALUE_TYPES) for v in values):
            problems.append(source_map.problem(where, f"values of matrix `{name}` must be text, "
                                               "numbers or booleans"))
        elif len({repr(v) for v in values}) != len(values):
            problems.append(source_map.problem(where, f"matrix `{name}` lists a value twice"))
        else:
            axes[name] = values
    if not axes and not problems:
        problems.append(source_map.problem(path, "`matrix:` names no values",
                                           "add a name with a list, e.g. `client: [acme, globex]`"))
    excluded = _exclusions(raw.get("exclude"), axes, source_map, problems)
    if problems:
        raise RecipeError(problems=problems)
    total = 1
    for values in axes.values():
        total *= len(values)
    if total > MAX_BRANCHES * 16:  # refuse before building a huge product
        raise _too_many(total, source_map)
    names = list(axes)
    combos = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]
    combos = [c for c in combos if not any(all(c[k] == v for k, v in e.items()) for e in excluded)]
    if not combos:
        raise RecipeError(problems=[source_map.problem(("matrix", "exclude"),
                                                       "`exclude:` removes every branch")])
    if len(combos) > MAX_BRANCHES:
        raise _too_many(len(combos), source_map)
    return _labelled(combos)


@dataclass(frozen=True)
class Loop:
    """A matrix dimension whose values a list parameter holds, chosen at submit time: compiled
    to one `dsl.ParallelFor` over that parameter, whose item the tasks read as `item` (a
    run-time name like a parameter's, never a pipeline input)."""

    name: str  # the matrix name: `{{ matrix.client }}`
    items: str  # the list parameter: `params.clients`
    item: str  # the loop item's run-time name

    def describe(self) -> str:
        return f"decided at run time (ParallelFor over params.{self.items})"

    def item_declaration(self, items_default: Any) -> dict[str, str]:
        """The item declared as a parameter while the recipe is checked and planned: text,
        valued as the first item of the list's default (for the checks made with defaults)."""
        first = items_default[0] if isinstance(items_default, list) and items_default else ""
        return {"type": "str", "default": str(first), "description": f"an item of params.{self.items}"}


def run_time_loop(raw: Any, parameters: Any, source_map: SourceMap) -> Loop | None:
    """The `Loop` of a matrix like `{client: "{{ params.clients }}"}`, None for static lists;
    raises RecipeError, located, for what a loop cannot do (several dimensions, `exclude:`, a
    parameter that is not a declared list)."""
    if not isinstance(raw, Mapping):
        return None
    dynamic = {name: _RUNTIME_LIST.fullmatch(v.strip()) for name, v in raw.items()
               if name != "exclude" and isinstance(v, str) and _RUNTIME_LIST.fullmatch(v.strip())}
    if not dynamic:
        return None
    name, match = next(iter(dynamic.items()))
    where: tuple[str | int, ...] = ("matrix", name)
    param = match.group(1)  # type: ignore[union-attr]
    problems: list[Problem] = []
    declared = parameters.get(param) if isinstance(parameters, Mapping) else None
    if not isinstance(declared, Mapping) or declared.get("type") != "list":
        problems.append(source_map.problem(
            where, f"matrix `{name}` takes its values from `params.{param}`, which is not a "
            "declared `type: list` parameter",
            f"declare it: `parameters: {{{param}: {{type: list, default: [acme, globex]}}}}`"))
    others = [n for n in raw if n not in ("exclude", name)]
    if others:
        problems.append(source_map.problem(
            ("matrix", others[0]), f"a matrix with a run-time dimension (`{name}` from "
            f"`params.{param}`) cannot have other dimensions yet", "list every dimension's values "
            "in the recipe, or keep only the run-time one", key=True))
    if "exclude" in raw:
        problems.append(source_map.problem(
            ("matrix", "exclude"), f"`exclude:` needs the values of `{name}` at compile time, but "
            f"they come from `params.{param}` at run time", "leave the value out of the list "
            "passed at submit time instead", key=True))
    item = f"matrix_{name}"
    if isinstance(parameters, Mapping) and item in parameters:
        problems.append(source_map.problem(
            ("parameters", item), f"`{item}` is the name of the loop item of matrix `{name}`",
            "rename the parameter", key=True))
    if problems:
        raise RecipeError(problems=problems)
    return Loop(name, param, item)


def _too_many(count: int, source_map: SourceMap) -> RecipeError:
    return RecipeError(problems=[source_map.problem(
        ("matrix",), f"the matrix has {count:,} branches, over the limit of {MAX_BRANCHES}",
        "each branch is a complete pipeline path in the package; split the recipe, drop values "
        "or `exclude:` combinations", key=True)])


def _exclusions(raw: Any, axes: Mapping[str, list[Any]], source_map: SourceMap,
                problems: list[Problem]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(source_map.problem(("matrix", "exclude"), "`exclude:` must be a list of "
                                           "mappings", "e.g. `exclude: [{client: acme, lang: hi}]`"))
        return []
    found = []
    for index, entry in enumerate(raw):
        where = ("matrix", "exclude", index)
        if not isinstance(entry, Mapping) or not entry:
            problems.append(source_map.problem(where, "each `exclude:` entry must map matrix names "
                                               "to values"))
            continue
        for name, value in entry.items():
            if name not in axes:
                from skitflow.errors import did_you_mean

                problems.append(source_map.problem((*where, name), f"`{name}` is not a matrix name",
                                                   did_you_mean(str(name), axes), key=True))
            elif value not in axes[name]:
                problems.append(source_map.problem((*where, name), f"`{value}` is not a value of "
                                                   f"matrix `{name}`", f"values: {axes[name]}"))
        found.append(dict(entry))
    return found


def _labelled(combos: list[dict[str, Any]]) -> tuple[Branch, ...]:
    """Readable, distinct labels for task names: `acme-en`, `depth4-eta0-1` (numbers carry their
    name); a clash or an empty label gets its branch number (`b3`)."""
    labels = []
    for index, combo in enumerate(combos):
        text = "-".join(v if isinstance(v, str) else f"{k}{v}" for k, v in combo.items()).lower()
        label = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].strip("-")
        labels.append(label or f"b{index + 1}")
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return tuple(Branch(combo, label if counts[label] == 1 else f"b{index + 1}-{label}"[:44])
                 for index, (combo, label) in enumerate(zip(combos, labels, strict=True)))
