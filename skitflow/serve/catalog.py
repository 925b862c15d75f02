"""The recipes a service offers: every `*.yaml` / `*.yml` in one folder, by recipe name.

A recipe is loaded and compiled once per file content (compiling costs about a second and does
not depend on parameter values, which Kubeflow takes at run time); a changed file is picked up on
the next request. A file that does not load is listed with its error instead of breaking the rest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skitflow.compile.build import Package, compile_loaded
from skitflow.errors import SkitflowError
from skitflow.recipe.loader import LoadedRecipe, load_recipe_file
from skitflow.submit.reconcile import version_name


@dataclass(frozen=True)
class Entry:
    path: Path
    loaded: LoadedRecipe | None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.loaded.recipe.name if self.loaded else self.path.stem


class Catalog:
    """Recipe name -> loaded recipe (and, on first use, its compiled package); thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._compile_lock = threading.Lock()
        self._loaded: dict[Path, tuple[tuple[int, int], Entry]] = {}
        self._packages: dict[tuple[Path, tuple[int, int]], tuple[Package, str]] = {}

    def entries(self) -> list[Entry]:
        files = sorted(p for p in self.folder.iterdir() if p.suffix in (".yaml", ".yml")
                       and p.is_file() and not p.name.endswith(".package.yaml"))
        return [self._entry(p) for p in files]

    def _entry(self, path: Path) -> Entry:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._loaded.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        try:
            entry = Entry(path, load_recipe_file(path))
        except SkitflowError as exc:
            entry = Entry(path, None, str(exc))
        with self._lock:
            self._loaded[path] = (stamp, entry)
        return entry

    def find(self, name: str) -> Entry | None:
        for entry in self.entries():
            if entry.loaded is not None and entry.name == name:
                return entry
        return None

    def package(self, entry: Entry) -> tuple[Package, str]:
        """The compiled package and its content-named version (as `skitflow submit` names it)."""
        assert entry.loaded is not None
        stat = entry.path.stat()
        key = (entry.path, (stat.st_mtime_ns, stat.st_size))
        with self._compile_lock:  # kfp's compiler is not thread-safe; and compile once
            cached = self._packages.get(key)
            if cached is None:
                package = compile_loaded(entry.loaded)
                cached = (package, version_name(package))
                self._packages[key] = cached
        return cached


def describe(entry: Entry) -> dict[str, Any]:
    """A recipe as `GET /recipes` shows it: name, description, parameters with types."""
    if entry.loaded is None:
        return {"name": entry.name, "file": entry.path.name, "error": entry.error}
    recipe = entry.loaded.recipe
    return {
        "name": recipe.name,
        "file": entry.path.name,
        "description": recipe.description,
        "parameters": {
            name: {"type": p.type, "default": p.default, "required": p.default is None,
                   "description": p.description}
            for name, p in recipe.parameters.items()
        },
    }
