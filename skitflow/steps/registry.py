"""The step registry: every step, built-in or plugin, found through one entry-point group.

An entry point in ``skitflow.steps`` may point at a Step subclass, a list/tuple of them, or a
module (every Step subclass defined in it with a ``name``). skitflow's own steps are registered by
its own pyproject.toml exactly like a plugin's, so there is one mechanism to test.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from skitflow.errors import SkitflowError, did_you_mean
from skitflow.steps.base import Kind, Step
from skitflow.util.imports import gc_paused

ENTRY_POINT_GROUP = "skitflow.steps"
#: the distribution whose entry point lists the built-in steps
BUILTIN_PACKAGE = "skitflow"
#: its entry point (pyproject.toml), the list `BUILTIN_MODULES` mirrors
BUILTIN_ENTRY_POINT = "skitflow.steps.builtin:BUILTIN_STEPS"

#: Where each built-in step lives: (kind, name) -> module. A task resolves its own built-in steps
#: through this table and imports only their modules, instead of discovering every step (all
#: step modules and the entry-point scan, ~130 ms per task). `skitflow.steps.builtin` stays the
#: registered list; a test keeps the two equal.
BUILTIN_MODULES: dict[tuple[str, str], str] = {
    **{("evaluator", n): "skitflow.steps.evaluators" for n in ("classification", "regression")},
    ("sink", "file"): "skitflow.steps.sinks",
    ("sink", "labelstudio"): "skitflow.steps.labelstudio",
    ("sink", "s3"): "skitflow.steps.s3",
    ("sink", "sql"): "skitflow.steps.sql_sink",
    ("source", "csv"): "skitflow.steps.sources",
    ("source", "labelstudio"): "skitflow.steps.labelstudio",
    ("source", "s3"): "skitflow.steps.s3",
    ("source", "sql"): "skitflow.steps.sql",
    **{("split", n): "skitflow.steps.split" for n in ("by_column", "train_test")},
    **{("trainer", n): "skitflow.steps.trainers" for n in ("linear", "xgboost")},
    **{("transform", n): "skitflow.steps.transforms" for n in (
        "cast", "drop_columns", "drop_duplicates", "dropna", "fillna", "filter_rows",
        "label_encode", "lowercase", "one_hot", "regex_replace", "rename_columns", "sample",
        "select_columns", "standardize", "strip")},
    **{("transform", n): "skitflow.steps.text" for n in ("hashing", "tfidf")},
    ("transform", "expect"): "skitflow.steps.expect",
}


@dataclass(frozen=True)
class Registered:
    """A step class and the distribution (package) that provided it."""

    step: type[Step]
    package: str

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def kind(self) -> Kind:
        return self.step.kind


class Registry:
    """(kind, name) -> step lookup with the errors a user needs when a name is wrong.

    Names are unique per kind, so a source and a sink may share a name (`s3`, `labelstudio`):
    where a step is written in the recipe says which kind is meant.
    """

    def __init__(self, entries: Iterable[Registered],
                 lazy: dict[tuple[str, str], str] | None = None) -> None:
        #: built-in steps not imported yet: (kind, name) -> module (see BUILTIN_MODULES)
        self._lazy: dict[tuple[Kind, str], str] = {
            (Kind(kind), name): module for (kind, name), module in (lazy or {}).items()}
        self._entries: dict[tuple[Kind, str], Registered] = {}
        for entry in entries:
            key = (entry.kind, entry.name)
            if key in self._lazy:  # a plugin reusing a built-in name: name both (import it now)
                self._load(key)
            other = self._entries.get(key)
            if other is not None and other.step is not entry.step:
                raise SkitflowError(
                    f"two {entry.kind.value} steps are named `{entry.name}`: one from package "
                    f"`{other.package}` ({other.step.__module__}.{other.step.__qualname__}), one "
                    f"from package `{entry.package}` ({entry.step.__module__}.{entry.step.__qualname__})",
                    hint="uninstall one of the packages, or ask its author to rename the step",
                    exit_code=1,
                )
            self._entries[key] = entry

    def _load(self, key: tuple[Kind, str]) -> Registered | None:
        """Import a built-in step's own module the first time the step is asked for."""
        module = self._lazy.pop(key, None)
        if module is not None:
            with gc_paused():  # a step module builds its settings' pydantic validators
                imported = importlib.import_module(module)
            for step in _steps_in(imported):
                if (step.kind, step.name) == key:
                    self._entries[key] = Registered(step, BUILTIN_PACKAGE)
        return self._entries.get(key)

    def _keys(self) -> set[tuple[Kind, str]]:
        return set(self._entries) | set(self._lazy)

    def __contains__(self, name: str) -> bool:
        return any(name == n for _, n in self._keys())

    def __iter__(self) -> Iterator[Registered]:
        for key in list(self._lazy):
            self._load(key)
        return iter(sorted(self._entries.values(), key=lambda e: (e.kind.value, e.name)))

    def get(self, name: str, kind: Kind | None = None) -> Registered | None:
        """The step called `name` of `kind`; without a kind, the only step of that name."""
        if kind is not None:
            return self._entries.get((kind, name)) or self._load((kind, name))
        found = self.find(name)
        return found[0] if len(found) == 1 else None

    def find(self, name: str) -> list[Registered]:
        """Every step called `name`, whatever its kind."""
        keys = sorted((k for k in self._keys() if k[1] == name), key=lambda k: k[0].value)
        return [entry for key in keys if (entry := self.get(name, key[0])) is not None]

    def names(self, kind: Kind | None = None) -> list[str]:
        return sorted({n for k, n in self._keys() if kind is None or k == kind})

    def suggest(self, name: str, kind: Kind | None = None) -> str | None:
        return did_you_mean(name, self.names(kind))


def _steps_in(obj: object) -> list[type[Step]]:
    if isinstance(obj, ModuleType):
        found = [
            value
            for value in vars(obj).values()
            if inspect.isclass(value) and issubclass(value, Step) and "name" in vars(value)
        ]
        return sorted(found, key=lambda s: s.name)
    if inspect.isclass(obj) and issubclass(obj, Step):
        return [obj]
    if isinstance(obj, list | tuple):
        return [step for item in obj for step in _steps_in(item)]
    raise TypeError(f"entry point object {obj!r} is not a Step class, a list of them or a module")


def discover() -> Registry:
    """Every step from the installed entry points (fresh, uncached).

    Plugins are loaded at once, so a broken one or a duplicate name is an error at start-up.
    skitflow's own entry point is not imported: its steps are known from BUILTIN_MODULES (a test
    keeps the two equal) and each step module is imported when one of its steps is first asked
    for, so `validate` pays only for the steps a recipe uses.
    """
    from importlib import metadata  # the scan costs; a task with built-in steps only skips it

    entries: list[Registered] = []
    lazy: dict[tuple[str, str], str] = {}
    for point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.value):
        # skitflow's own list, whichever distribution declares it: recognised by its value,
        # without reading (parsing) the distribution's metadata for its name
        if point.value == BUILTIN_ENTRY_POINT:
            lazy.update(BUILTIN_MODULES)
            continue
        package = point.dist.name if point.dist is not None else point.value
        try:
            loaded = point.load()
            steps = _steps_in(loaded)
            for step in steps:  # a plugin's settings that cannot be built fail here, named
                step.Settings.model_rebuild()
        except Exception as exc:  # a broken plugin must not hide which one it was
            raise SkitflowError(
                f"could not load steps from package `{package}` (entry point `{point.name}`): {exc}",
                hint=f"fix or uninstall `{package}`",
                exit_code=1,
            ) from exc
        entries.extend(Registered(step, package) for step in steps)
    return Registry(entries, lazy)


def builtin_step(kind: Kind, name: str) -> type[Step] | None:
    """The built-in step of `kind` called `name`, importing only its own module; None when there
    is no such built-in step."""
    module = BUILTIN_MODULES.get((kind.value, name))
    if module is None:
        return None
    for step in _steps_in(importlib.import_module(module)):
        if step.kind == kind and step.name == name:
            return step
    return None


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry, discovered once."""
    return discover()
