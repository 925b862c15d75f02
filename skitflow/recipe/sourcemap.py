"""YAML parsing that remembers where every value came from.

PyYAML's constructors throw positions away; we build values from the parser's events ourselves so
each value and each mapping key keeps its (line, column), and so the limits on size, aliases and
nesting hold while the document is read. Errors anywhere later in the pipeline look up a
path such as ``("steps", 2, "dropna", "columns")`` here and point at the right character.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from skitflow.errors import Location, Problem, RecipeError
from skitflow.util.limits import MAX_RECIPE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

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

    Only plain YAML is read: mappings, lists, strings, numbers, booleans, null and dates written
    as such. Raises RecipeError for syntax errors, explicit tags, duplicate keys, multi-document
    files, and for a document over the limits in `skitflow.util.limits`.

    The events come from libyaml where it reads the text exactly as PyYAML's own parser does
    (`reads_alike`; tests/test_sourcemap_parsers.py compares the two), six times faster; any
    other text, and every text libyaml refuses, is parsed by PyYAML's parser, whose errors and
    positions are the ones users see.
    """
    check_size(text, file)
    if _CSafeLoader is not None and reads_alike(text):
        with contextlib.suppress(yaml.YAMLError):  # reported below, by PyYAML's parser
            return _build(_CSafeLoader(text), file)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise RecipeError(
            f"YAML syntax error: character {exc.character!r} is not allowed in YAML",
            offset_location(text, exc.position, file),
            "remove control characters; save the file as UTF-8 text",
        ) from None
    try:
        return _build(loader, file)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, file) from None
    except yaml.YAMLError as exc:  # errors without marks (rare: reader errors)
        raise RecipeError(f"YAML syntax error: {exc}", Location(file, 1, 1)) from None


def _build(loader: Any, file: str) -> tuple[Any, SourceMap]:
    """The value and source map from `loader`'s events (SafeLoader or CSafeLoader)."""
    source_map = SourceMap(file)
    builder = _Builder(loader, source_map)
    try:
        value = builder.build()
    finally:
        loader.dispose()
    if builder.problems:
        raise RecipeError(problems=builder.problems)
    return value, source_map


_CSafeLoader: Any = getattr(yaml, "CSafeLoader", None)  # None where PyYAML was built without libyaml
#: Where libyaml and PyYAML's parser part ways, found by comparing them on generated documents
#: (tests/test_sourcemap_parsers.py keeps comparing): a tab, which PyYAML refuses inside plain
#: values; a BOM; `?`, which PyYAML reads as a key inside flow collections; a `!` starting a
#: token (tag handles PyYAML refuses); a comment right after a block scalar's `|` or `>`; an empty
#: value in a flow collection (`{a: }`, placed one column apart). A text without a final line
#: break ends its block collections at different marks.
_PARSERS_DIFFER = re.compile(r"[\t\ufeff?]|(?<![^\s\[{,])!|[|>][-+0-9]*#|:\s*[,}\]]")


def reads_alike(text: str) -> bool:
    """Whether libyaml gives the same events and positions as PyYAML's parser for `text`."""
    return (text.endswith("\n") and _PARSERS_DIFFER.search(text) is None
            and yaml.reader.Reader.NON_PRINTABLE.search(text) is None)


def check_size(text: str, file: str) -> None:
    """Refuse text longer than MAX_RECIPE_BYTES (in UTF-8), at the character that crosses it."""
    if len(text) <= MAX_RECIPE_BYTES // 4:
        return
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_RECIPE_BYTES:
        prefix = encoded[:MAX_RECIPE_BYTES].decode("utf-8", "ignore")
        raise too_large(file, offset_location(prefix, len(prefix), file))


def too_large(file: str, where: Location) -> RecipeError:
    return RecipeError(
        f"the recipe is larger than {MAX_RECIPE_BYTES // 1024} KiB, the most a recipe file may be",
        where,
        "a recipe describes a pipeline; keep data in files the source step reads",
    )


def offset_location(text: str, offset: int, file: str) -> Location:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Location(file, line, column)


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str) -> RecipeError:
    mark = exc.problem_mark or exc.context_mark
    where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
    what = exc.problem or exc.context or "invalid YAML"
    hint = "check indentation and quoting near this position"
    if mark and "'\\t'" in what and text[mark.pointer : mark.pointer + 1] == "\t":
        line_start = text.rfind("\n", 0, mark.pointer) + 1
        if not text[line_start : mark.pointer].strip(" \t"):
            what = "tabs are not allowed in YAML indentation"
            hint = "indent with spaces (most editors can convert tabs to spaces)"
        else:
            what = "a tab cannot start a value here"
            hint = "use spaces, or quote the value"
    return RecipeError(f"YAML syntax error: {what}", where, hint)


#: Implicit scalar types that become Python values; every other plain scalar stays a string.
_BUILT_SCALARS = {f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NO_KEY: Any = object()  # a mapping waits for its next key
_SKIP: Any = object()  # the value being built is thrown away (a bad or duplicate key)
_MERGE: Any = object()  # the value being built is merged (`<<: *base`)
_OPEN: Any = object()  # an anchored list or mapping still being built
_Mark = Any  # yaml.Mark; events type theirs as optional, but the parser always sets them


@dataclass
class _Frame:
    """A list or mapping being built."""

    value: list[Any] | dict[Any, Any]
    path: Path
    start: _Mark
    anchor: str | None
    nodes_before: int
    record: bool  # False while building something that is thrown away or is a key
    key: Any = _NO_KEY
    key_event: yaml.Event | None = None
    merged: list[tuple[dict[Any, Any], Span]] = field(default_factory=list)


class _Builder:
    """Builds Python values straight from parser events, with no recursion.

    Composing pyyaml nodes first would expand aliases afterwards and recurse per level; building
    from events lets every value be counted as it appears (aliases by their full size), depth be
    bounded, tags be refused where they are written and positions be recorded on the way.
    """

    def __init__(self, loader: yaml.SafeLoader, source_map: SourceMap) -> None:
        self.loader = loader
        self.source_map = source_map
        self.file = source_map.file
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.nodes = 0

    def build(self) -> Any:
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # DocumentStart
        root = self._document()
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            second = loader.get_event()
            raise RecipeError(
                "YAML syntax error: a recipe file holds one YAML document; found a second one (`---`)",
                self._location(second.start_mark),
                "check indentation and quoting near this position",
            )
        return root

    def _document(self) -> Any:
        stack: list[_Frame] = []
        while True:
            event = self.loader.get_event()
            parent = stack[-1] if stack else None
            path, record = self._child_path(parent)
            if isinstance(event, yaml.ScalarEvent):
                self._count(event, 1)
                value = self._scalar(event)
                if event.anchor:
                    self.anchors[event.anchor] = (value, 1)
                done = (value, self._span(event.start_mark, event.end_mark))
            elif isinstance(event, yaml.AliasEvent):
                done = (self._alias(event), self._span(event.start_mark, event.end_mark))
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                self._count(event, 1)
                self._refuse_tag(event, "a list" if isinstance(event, yaml.SequenceStartEvent)
                                 else "a mapping")
                if len(stack) >= MAX_YAML_DEPTH:
                    raise RecipeError(
                        f"lists and mappings are nested more than {MAX_YAML_DEPTH} levels deep",
                        self._location(event.start_mark),
                        "a recipe never needs this much nesting; check for unbalanced brackets",
                    )
                if event.anchor:
                    self.anchors[event.anchor] = (_OPEN, 0)
                container: list[Any] | dict[Any, Any] = (
                    [] if isinstance(event, yaml.SequenceStartEvent) else {})
                stack.append(_Frame(container, path, event.start_mark, event.anchor, self.nodes,
                                    record))
                continue
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                frame = stack.pop()
                if isinstance(frame.value, dict):
                    self._apply_merges(frame)
                if frame.anchor:
                    self.anchors[frame.anchor] = (frame.value, self.nodes - frame.nodes_before)
                parent = stack[-1] if stack else None
                path, record = frame.path, frame.record
                done = (frame.value, self._span(frame.start, event.end_mark))
            else:  # pragma: no cover - the parser only yields the events above inside a document
                raise RecipeError("YAML syntax error: unexpected content", self._location(event.start_mark))
            value, span = done
            if record:
                self.source_map.values[path] = span
            if parent is None:
                return value
            self._attach(parent, value, span, event)

    def _child_path(self, parent: _Frame | None) -> tuple[Path, bool]:
        """Where the next value goes, and whether its position is worth recording."""
        if parent is None:
            return (), True
        if isinstance(parent.value, list):
            return (*parent.path, len(parent.value)), parent.record
        if parent.key is _NO_KEY or parent.key is _SKIP or parent.key is _MERGE:
            return parent.path, False
        return (*parent.path, parent.key), parent.record

    def _attach(self, parent: _Frame, value: Any, span: Span, event: yaml.Event) -> None:
        if isinstance(parent.value, list):
            parent.value.append(value)
            return
        if parent.key is _NO_KEY:
            parent.key = self._key(parent, value, span, event)
            return
        if parent.key is _MERGE:
            self._merge_source(parent, value, span)
        elif parent.key is not _SKIP:
            parent.value[parent.key] = value
        parent.key = _NO_KEY

    def _key(self, parent: _Frame, key: Any, span: Span, event: yaml.Event) -> Any:
        assert isinstance(parent.value, dict)
        if isinstance(event, yaml.ScalarEvent) and event.tag is None and event.implicit[0] and (
            self.loader.resolve(yaml.ScalarNode, event.value, event.implicit) == _MERGE_TAG
        ):
            return _MERGE
        where = Location(self.file, span.line, span.column)
        if not isinstance(key, str | int | float | bool) or key is None:
            self.problems.append(Problem("mapping keys must be plain names", where))
            return _SKIP
        if isinstance(key, bool) and isinstance(event, yaml.ScalarEvent):
            key = event.value  # YAML 1.1 reads a key `on:` (or yes/no/off) as a boolean: keep its text
        key = key if isinstance(key, str) else str(key)
        child = (*parent.path, key)
        if key in parent.value:
            first = self.source_map.keys.get(child)
            line = f" (first defined at line {first.line})" if first else ""
            self.problems.append(Problem(
                f"duplicate key `{key}`{line}", where,
                "remove one of them; YAML would silently keep only the last", len(key)))
            return _SKIP
        if parent.record:
            self.source_map.keys[child] = span
        return key

    def _merge_source(self, parent: _Frame, value: Any, span: Span) -> None:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            self.problems.append(Problem("`<<` merges mappings only: give it `*anchor` of a mapping",
                                         Location(self.file, span.line, span.column)))
            return
        parent.merged.extend((source, span) for source in sources)

    def _apply_merges(self, frame: _Frame) -> None:
        """Merged keys (`<<: *base`) fill in what the mapping does not set itself."""
        assert isinstance(frame.value, dict)
        for source, span in frame.merged:
            for key, value in source.items():
                if key not in frame.value:
                    frame.value[key] = value
                    if frame.record:
                        self.source_map.values[(*frame.path, key)] = span
                        self.source_map.keys[(*frame.path, key)] = span

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        if self._refuse_tag(event, f"`{_short(event.value)}`" if event.value else "an empty value"):
            return event.value
        control = _CONTROL.search(event.value)
        if control:  # written as an escape ("\0", "\x07"): the reader refuses them raw
            self.problems.append(Problem(
                f"control character {control.group()!r} in a value is not allowed in a recipe",
                self._location(event.start_mark), "remove the escape sequence from the string",
                max(1, len(event.value))))
            return event.value
        tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag not in _BUILT_SCALARS:
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)  # type: ignore[arg-type]
        try:
            return self.loader.yaml_constructors[tag](self.loader, node)
        except Exception:  # an implicit number or date that does not exist (2024-13-45, 0x_)
            kind = tag.rsplit(":", 1)[-1]
            self.problems.append(Problem(
                f"`{_short(event.value)}` looks like {'an' if kind == 'int' else 'a'} {kind} "
                "but is not a valid one",
                self._location(event.start_mark), "quote it to keep it as text",
                max(1, len(event.value))))
            return event.value

    def _refuse_tag(self, event: yaml.NodeEvent, what: str) -> bool:
        tag = getattr(event, "tag", None)
        if tag is None:
            return False
        shown = tag.replace("tag:yaml.org,2002:", "!!")
        self.problems.append(Problem(
            f"YAML tag `{shown}` on {what} is not allowed in a recipe",
            self._location(event.start_mark),
            "recipes are plain YAML: remove the tag, and quote a value to keep it as text",
            max(1, len(shown))))
        return True

    def _alias(self, event: yaml.AliasEvent) -> Any:
        where = self._location(event.start_mark)
        if event.anchor not in self.anchors:
            raise RecipeError(f"YAML syntax error: unknown alias `*{event.anchor}`", where,
                              f"define `&{event.anchor}` before using `*{event.anchor}`")
        value, size = self.anchors[event.anchor]
        if value is _OPEN:
            raise RecipeError(
                f"recursive alias `*{event.anchor}`: it is used inside the value it names", where,
                "an alias may only repeat a value that is complete before it")
        self._count(event, size)
        return copy.deepcopy(value)

    def _count(self, event: yaml.Event, size: int) -> None:
        self.nodes += size
        if self.nodes > MAX_YAML_NODES:
            raise RecipeError(
                f"the recipe holds more than {MAX_YAML_NODES:,} YAML values "
                "(each use of an alias counts its whole value)",
                self._location(event.start_mark),
                "a recipe this large is a mistake; check anchors and aliases (`&x`, `*x`)",
            )

    def _location(self, mark: _Mark) -> Location:
        return Location(self.file, mark.line + 1, mark.column + 1)

    @staticmethod
    def _span(start: _Mark, end: _Mark) -> Span:
        width = end.column - start.column if end.line == start.line else 1
        return Span(start.line + 1, start.column + 1, max(1, width))


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
