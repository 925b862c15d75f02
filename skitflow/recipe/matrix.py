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
        elif isinstance(values, str) and _RUNTIME_LIST.fullmatch(values.strip()):
            problems.append(_run_time_axis(name, values.strip(), where, source_map))
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


def _run_time_axis(name: str, text: str, where: tuple[str | int, ...],
                   source_map: SourceMap) -> Problem:
    """Branches chosen at submit time would be a `dsl.ParallelFor` over the list parameter; not
    built yet, so it is refused at its line rather than read as a one-value list."""
    param = _RUNTIME_LIST.fullmatch(text).group(1)  # type: ignore[union-attr]
    return source_map.problem(
        where, f"matrix `{name}` takes its values from `params.{param}` at run time; branches "
               "decided at run time (a ParallelFor over a list parameter) are not supported yet",
        f"list the values in the recipe, e.g. `{name}: [acme, globex]`, and compile one package "
        "per set of values")


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
