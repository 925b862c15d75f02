"""YAML parsing that remembers where every value came from.

PyYAML's constructors throw positions away; we compose the node graph ourselves so each value
and each mapping key keeps its (line, column). Errors anywhere later in the pipeline look up a
path such as ``("steps", 2, "dropna", "columns")`` here and point at the right character.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from skitflow.errors import Location, Problem, RecipeError

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Span:
    line: int  # 1-based
    column: int  # 1-based
    width: int


@dataclass
class SourceMap:
    """Positions of values and keys by their path in the parsed document."""

    file: str
    values: dict[Path, Span] = field(default_factory=dict)
    keys: dict[Path, Span] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> tuple[Location, int]:
        """The location of the value (or key) at `path`, falling back to the nearest parent."""
        probe = tuple(path)
        while True:
            table = self.keys if key and probe in self.keys else self.values
            span = table.get(probe)
            if span is not None:
                return Location(self.file, span.line, span.column), span.width
            if not probe:
                return Location(self.file, 1, 1), 1
            probe = probe[:-1]

    def problem(
        self, path: Sequence[str | int], message: str, hint: str | None = None, *, key: bool = False
    ) -> Problem:
        location, width = self.locate(path, key=key)
        return Problem(message, location, hint, width)


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document safely into plain Python values plus its source map.

    Raises RecipeError for syntax errors, duplicate keys and multi-document files.
    """
    source_map = SourceMap(file)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise RecipeError(
            f"YAML syntax error: character {exc.character!r} is not allowed in YAML",
            Location(file, line, column),
            "remove control characters; save the file as UTF-8 text",
        ) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, source_map
        walker = _Walker(loader, source_map)
        value = walker.build(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else None
        what = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc.context or ""):
            what = "a recipe file holds one YAML document; found a second one (`---`)"
        raise RecipeError(
            f"YAML syntax error: {what}",
            where,
            "check indentation and quoting near this position",
        ) from None
    except yaml.YAMLError as exc:  # errors without marks (rare: reader errors)
        raise RecipeError(f"YAML syntax error: {exc}", Location(file, 1, 1)) from None
    finally:
        loader.dispose()
    if walker.problems:
        raise RecipeError(problems=walker.problems)
    return value, source_map


class _Walker:
    """Turns composed nodes into Python values, recording positions and duplicate keys."""

    def __init__(self, loader: yaml.SafeLoader, source_map: SourceMap) -> None:
        self.loader = loader
        self.source_map = source_map
        self.problems: list[Problem] = []

    def _span(self, node: yaml.Node) -> Span:
        start, end = node.start_mark, node.end_mark
        width = end.column - start.column if end.line == start.line else 1
        return Span(start.line + 1, start.column + 1, max(1, width))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.source_map.values[path] = self._span(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.problems.append(
                        Problem(
                            "mapping keys must be plain names",
                            Location(self.source_map.file, *self._pos(key_node)),
                        )
                    )
                    continue
                key = str(key) if not isinstance(key, str) else key
                child = (*path, key)
                if key in result:
                    first = self.source_map.keys[child]
                    self.problems.append(
                        Problem(
                            f"duplicate key `{key}` (first defined at line {first.line})",
                            Location(self.source_map.file, *self._pos(key_node)),
                            "remove one of them; YAML would silently keep only the last",
                            len(key),
                        )
                    )
                    continue
                self.source_map.keys[child] = self._span(key_node)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    @staticmethod
    def _pos(node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1
