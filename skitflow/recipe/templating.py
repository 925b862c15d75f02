"""Jinja templating of recipe values, in a sandbox that can read only what is documented.

Two kinds of names exist in a template:

* compile-time names — ``env.NAME``, ``recipe.name`` and ``recipe.description`` — are rendered
  now, into the package;
* run-time names — ``params.NAME`` (KFP pipeline parameters) and ``run.id`` / ``run.date`` /
  ``run.name`` — stay symbolic. A value that is exactly ``{{ params.NAME }}`` becomes a typed
  :class:`ParamRef`; a longer string keeps its ``{{ params.NAME }}`` text and is rendered by the
  runtime.

Nothing else is reachable. The sandbox has no globals (no ``range``, ``lipsum``, ``cycler``,
``joiner``, ``namespace``, ``self``), no loader (no ``include``/``import``), no calls, a short
list of filters, and attribute or item access only on those four names; strings are never
%-formatted. A template may print only text and numbers. An ``env`` value that holds a secret
(by its name, or by what it looks like: see :mod:`skitflow.util.redact`) is refused, so a compiled
package cannot carry one. Every limit on the work a template may do is in :data:`LIMITS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from skitflow.errors import did_you_mean
from skitflow.util.redact import Scanner, is_secret_name

RUN_NAMES = ("id", "date", "name")
RECIPE_NAMES = ("name", "description")
NAMESPACES = ("params", "env", "run", "recipe", "matrix")
_MARKER = "\x00{}.{}\x00"
_MARKER_RE = re.compile("\x00(params|run)\\.([A-Za-z_][A-Za-z0-9_]*)\x00")
RUNTIME_TEMPLATE_RE = re.compile(r"\{\{\s*(params|run)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PLAIN_REFERENCE = re.compile(r"\{\{\s*(params|run|env|recipe|matrix)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_WHOLE_MATRIX = re.compile(r"\{\{\s*matrix\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
AVAILABLE = ("templates read only params.NAME, env.NAME, run.id, run.date, run.name, recipe.name, "
             "recipe.description and matrix.NAME")
SECRET_HINT = "reference a Kubernetes secret under `secrets:` instead; values are read at run time"

# -- limits: every bound on a template's work, in one place (README "Template limits") ----------
#: characters in one template (one recipe value that contains `{{` or `{%`)
MAX_TEMPLATE_LENGTH = 5_000
#: brackets `(`, `[`, `{` open at once inside the template
MAX_TEMPLATE_NESTING = 32
#: characters in the rendered value and in any string made on the way (`*`, `+`, `~`, filters)
MAX_STRING_LENGTH = 100_000
#: items in any list, tuple or dict made on the way, nested items counted with repeats
MAX_ITEMS = 1_000
#: bits of any integer result (`**`, `*`): about 1,233 decimal digits
MAX_INT_BITS = 4_096
#: iterations of all `{% for %}` loops of one template together (nested loops multiply)
MAX_LOOP_ITERATIONS = 10_000
#: units of work of all templates of one recipe: each operator, filter, comparison, iteration
#: and printed value costs one unit per item, per 64 characters and per 64 bits it takes or makes
MAX_OPERATIONS = 250_000
#: units charged for compiling one template with Jinja, plus COMPILE_COST_PER_CHARACTER for each
#: of its characters (a unit is about a microsecond; the same text is compiled once)
COMPILE_COST = 2_000
COMPILE_COST_PER_CHARACTER = 20
#: characters rendered by all templates of one recipe together
MAX_RENDERED_TOTAL = 1_000_000

LIMITS: dict[str, tuple[int, str]] = {
    "template length": (MAX_TEMPLATE_LENGTH, "characters in one templated value"),
    "template nesting": (MAX_TEMPLATE_NESTING, "brackets open at once"),
    "string length": (MAX_STRING_LENGTH, "characters in the result or any string made"),
    "items": (MAX_ITEMS, "items in any list, tuple or dict made, nested ones counted"),
    "integer size": (MAX_INT_BITS, "bits in any integer made (`**`, `*`)"),
    "loop iterations": (MAX_LOOP_ITERATIONS, "iterations of all loops together"),
    "work": (MAX_OPERATIONS, "units per recipe: one per item, 64 characters or 64 bits taken "
             f"or made, {COMPILE_COST:,} + {COMPILE_COST_PER_CHARACTER} per character for each "
             "distinct template compiled"),
    "recipe output": (MAX_RENDERED_TOTAL, "characters rendered by all templates of a recipe"),
}


@dataclass(frozen=True)
class ParamRef:
    """A whole value that is a pipeline parameter, resolved at run time with its declared type."""

    name: str

    def to_json(self) -> dict[str, str]:
        return {"$param": self.name}


class TemplateProblem(Exception):
    """A template cannot be rendered; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class _RecipeOverLimit(TemplateProblem):
    """A limit of the whole recipe is spent: reported once, the other templates are left alone."""


def _over(limit: str, found: str) -> TemplateProblem:
    value, what = LIMITS[limit]
    kind = _RecipeOverLimit if limit in ("work", "recipe output") else TemplateProblem
    return kind(f"template error: {found} is over the {limit} limit ({value:,} {what})",
                "templates are for names and short text; compute large values elsewhere")


class _Names:
    """One documented namespace (`params`, `env`, `run`, `recipe`): its names can be read as
    `ns.NAME` or `ns['NAME']`; the namespace itself cannot be printed, iterated or inspected."""

    def __init__(self, kind: str, resolve: Callable[[str], Any]) -> None:
        self.kind = kind
        self._resolve = resolve

    def lookup(self, name: Any) -> Any:
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise TemplateProblem(f"template error: `{self.kind}.{name}` cannot be read", AVAILABLE)
        return self._resolve(name)

    def __str__(self) -> str:
        raise TemplateProblem(f"template error: `{self.kind}` itself cannot be printed",
                              f"read one name, e.g. `{{{{ {self.kind}.NAME }}}}`")

    def __iter__(self) -> Iterator[Any]:
        raise TemplateProblem(f"template error: `{self.kind}` cannot be listed", AVAILABLE)

    def __repr__(self) -> str:
        return f"<template namespace {self.kind}>"


def _symbolic(kind: str, names: tuple[str, ...]) -> _Names:
    """`params.X` / `run.X`: a marker the runtime fills in, or a clear error."""

    def resolve(name: str) -> str:
        if name not in names:
            declared = ", ".join(f"`{n}`" for n in names) or "none"
            hint = did_you_mean(name, names) or (
                f"declare it under `parameters:` (declared: {declared})"
                if kind == "params" else f"available: {declared}")
            raise TemplateProblem(f"unknown name `{kind}.{name}`", hint)
        return _MARKER.format(kind, name)

    return _Names(kind, resolve)


def _environment(environ: Mapping[str, str], scanner: Scanner) -> _Names:
    """`env.NAME` at compile time; refuses a secret by its name or by its value."""

    def resolve(name: str) -> str:
        if is_secret_name(name):
            raise TemplateProblem(
                f"`env.{name}` looks like a secret and would be written into the package",
                SECRET_HINT)
        if name not in environ:
            raise TemplateProblem(
                f"environment variable `{name}` is not set",
                f"set it before compiling (export {name}=...) or use `{{{{ params.{name.lower()} }}}}`",
            )
        value = environ[name]
        found = scanner.find(value, random_strings=True)
        if found:
            raise TemplateProblem(
                f"`env.{name}` holds what looks like {found[0].kind} and would be written into "
                "the package", SECRET_HINT)
        return value

    return _Names("env", resolve)


def _recipe(info: Mapping[str, Any]) -> _Names:
    def resolve(name: str) -> str:
        if name not in RECIPE_NAMES:
            raise TemplateProblem(f"template error: 'recipe' has no name `{name}`",
                                  did_you_mean(name, RECIPE_NAMES) or AVAILABLE)
        return str(info.get(name) or "").replace("\x00", "")

    return _Names("recipe", resolve)


def _matrix(values: Mapping[str, Any] | None) -> _Names:
    """`matrix.NAME`: the value of this branch of the recipe's `matrix:` (compile time)."""

    def resolve(name: str) -> Any:
        if values is None:
            raise TemplateProblem(f"`matrix.{name}` is used, but the recipe has no `matrix:`",
                                  f"add `matrix: {{{name}: [a, b]}}` at the top level")
        if name not in values:
            declared = ", ".join(f"`{n}`" for n in values) or "none"
            raise TemplateProblem(f"unknown name `matrix.{name}`",
                                  did_you_mean(name, values) or f"matrix names: {declared}")
        return values[name]

    return _Names("matrix", resolve)


def run_time_marker(name: str) -> str:
    """What a matrix value that is a run-time name (a ParallelFor's item) renders to: the
    parameter marker, so `{{ matrix.client }}` becomes `{{ params.<name> }}` or a ParamRef."""
    return _MARKER.format("params", name)


class Renderer:
    """Renders recipe strings; one instance per recipe (per matrix branch), whose limits hold for
    the whole recipe."""

    def __init__(
        self, recipe: Mapping[str, Any], param_names: tuple[str, ...], environ: Mapping[str, str],
        matrix: Mapping[str, Any] | None = None,
    ) -> None:
        self._sandbox: Any = None  # created on the first template that needs more than names
        self._scanner = Scanner(environ)
        self._budget = _Budget()
        self._compiled: dict[str, Any] = {}
        self._rendered = 0
        self._spent = False  # a recipe-wide limit was reported
        self._names: dict[str, _Names] = {
            "params": _symbolic("params", param_names),
            "run": _symbolic("run", RUN_NAMES),
            "env": _environment(environ, self._scanner),
            "recipe": _recipe(recipe),
            "matrix": _matrix(matrix),
        }

    def render(self, text: str) -> Any:
        """Render `text`; returns a str or a ParamRef. Raises TemplateProblem, never leaking a
        secret into its message."""
        if ("{{" not in text and "{%" not in text) or self._spent:
            return text
        whole_matrix = _WHOLE_MATRIX.fullmatch(text.strip())
        if whole_matrix:  # a whole value keeps its matrix type: `max_depth: "{{ matrix.depth }}"`
            try:
                value = self._names["matrix"].lookup(whole_matrix.group(1))
            except TemplateProblem as exc:
                raise TemplateProblem(exc.message, exc.hint) from None
            marker = _MARKER_RE.fullmatch(value) if isinstance(value, str) else None
            return ParamRef(marker.group(2)) if marker else value
        if "\x00" in text:  # NUL marks run-time names in rendered text: it cannot be forged
            raise TemplateProblem("a templated value cannot contain NUL characters",
                                  "remove the \\0 characters from the value")
        try:
            rendered = self._render(text)
        except TemplateProblem as exc:
            self._spent = isinstance(exc, _RecipeOverLimit)
            redact = self._scanner.redact
            raise TemplateProblem(redact(exc.message), redact(exc.hint) if exc.hint else None
                                  ) from None
        whole = _MARKER_RE.fullmatch(rendered)
        if whole and whole.group(1) == "params":
            return ParamRef(whole.group(2))
        if "\x00" in _MARKER_RE.sub("", rendered):
            raise TemplateProblem(
                "`params.*` and `run.*` are only known at run time and cannot be transformed here",
                "use them as plain `{{ params.NAME }}` inside the string",
            )
        return _MARKER_RE.sub(lambda m: "{{ " + m.group(1) + "." + m.group(2) + " }}", rendered)

    def _render(self, text: str) -> str:
        plain = self._plain_references(text)
        rendered = plain if plain is not None else self._render_in_sandbox(text)
        self._rendered += len(rendered)
        if self._rendered > MAX_RENDERED_TOTAL:
            raise _over("recipe output", f"{self._rendered:,} rendered characters")
        found = self._scanner.environment_values_in(rendered)
        if found:
            raise TemplateProblem(f"the template's result holds {found[0].kind} and would be "
                                  "written into the package", SECRET_HINT)
        return rendered

    def _plain_references(self, text: str) -> str | None:
        """Render a template made only of `{{ ns.name }}` references without Jinja (most are).

        The same namespaces answer, so unknown names fail exactly as under Jinja; anything else
        (filters, expressions, statements) returns None and goes to the sandbox.
        """
        rest = _PLAIN_REFERENCE.sub("", text)
        if "{{" in rest or "{%" in rest or "{#" in rest:
            return None
        return _PLAIN_REFERENCE.sub(
            lambda m: str(self._names[m.group(1)].lookup(m.group(2))), text)

    def _render_in_sandbox(self, text: str) -> str:
        from jinja2 import TemplateError

        _check_source(text)
        if self._sandbox is None:
            self._sandbox = _sandbox_class()(self._budget)
        self._budget.iterations = 0  # loops are counted per template, work per recipe
        try:
            template = self._compiled.get(text)
            if template is None:
                self._budget.spend(COMPILE_COST + COMPILE_COST_PER_CHARACTER * len(text))
                template = self._sandbox.from_string(_guard_tree(self._sandbox.parse(text)))
                self._compiled[text] = template
            return str(template.render(self._names))
        except TemplateProblem:
            raise
        except RecursionError:
            raise TemplateProblem("template error: the template nests too deeply (brackets or "
                                  "operators)", "write it flatter") from None
        except TemplateError as exc:
            raise TemplateProblem(f"template error: {exc.message or exc}", AVAILABLE) from None
        except Exception as exc:  # noqa: BLE001 - TypeError, ValueError, OverflowError, ...
            raise TemplateProblem(f"template error: {type(exc).__name__}: {exc}") from None


def _check_source(text: str) -> None:
    """Bounds that must hold before Jinja parses (its parser recurses on nesting)."""
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise _over("template length", f"a template of {len(text):,} characters")
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(0, depth - 1)
    if deepest - 2 > MAX_TEMPLATE_NESTING:  # `{{` itself opens two
        raise _over("template nesting", f"nesting {deepest - 2} brackets deep")


# -- the tree: what the template language of a recipe is -------------------------------------

_LOOP_GUARD, _VALUE_GUARD = "_skitflow_loop", "_skitflow_value"
_CONCAT_GUARD, _COMPARE_GUARD = "_skitflow_concat", "_skitflow_compare"
_UNSUPPORTED = {
    "Call": "calling a function or method", "Macro": "`{% macro %}`",
    "CallBlock": "`{% call %}`", "FilterBlock": "`{% filter %}`", "With": "`{% with %}`",
    "Block": "`{% block %}`", "Extends": "`{% extends %}`", "Include": "`{% include %}`",
    "Import": "`{% import %}`", "FromImport": "`{% from ... import %}`",
    "AssignBlock": "`{% set %}...{% endset %}`", "NSRef": "namespace attributes",
    "ExprStmt": "`{% do %}`", "ScopedEvalContextModifier": "`{% autoescape %}`",
}


def _guard_tree(tree: Any) -> Any:
    """Refuse what recipes may not use, and route loops, literals and `~` through the guards."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    allowed = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name,
               nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.Filter, nodes.Test,
               nodes.CondExpr, nodes.If, nodes.For, nodes.Assign, nodes.Compare, nodes.Operand,
               nodes.BinExpr, nodes.UnaryExpr, nodes.Concat, nodes.List, nodes.Tuple, nodes.Dict,
               nodes.Pair, nodes.Keyword)
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}

    def guarded(node: Any, guard: str, args: list[Any] | None = None) -> Any:
        return nodes.Filter(node, guard, args or [], [], None, None, lineno=node.lineno)

    class Guard(NodeTransformer):
        def generic_visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
            node = super().generic_visit(node, *args, **kwargs)  # inner problems first
            _refuse_unsupported(node)
            if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in NAMESPACES \
                    and node.name not in bound:
                raise TemplateProblem(f"template error: unknown name `{node.name}`", AVAILABLE)
            if isinstance(node, nodes.For):
                node.iter = guarded(node.iter, _LOOP_GUARD)
            elif isinstance(node, nodes.List | nodes.Dict) or (
                    isinstance(node, nodes.Tuple) and node.ctx == "load"):
                return guarded(node, _VALUE_GUARD)
            elif isinstance(node, nodes.Concat):
                return guarded(node.nodes[0], _CONCAT_GUARD, node.nodes[1:])
            elif isinstance(node, nodes.Compare):
                operands = [part for op in node.ops
                            for part in (nodes.Const(op.op, lineno=node.lineno), op.expr)]
                return guarded(node.expr, _COMPARE_GUARD, operands)
            return node

    def _refuse_unsupported(node: Any) -> None:
        name = type(node).__name__
        if not isinstance(node, allowed):
            what = _UNSUPPORTED.get(name, f"`{name}`")
            raise TemplateProblem(f"template error: {what} is not supported in recipes", AVAILABLE)
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Const):
            raise TemplateProblem(f"template error: access to attribute {node.attr!r} of "
                                  f"{type(node.node.value).__name__!r} object is unsafe.",
                                  AVAILABLE)
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            raise TemplateProblem(f"template error: filter `{node.name}` is not available",
                                  "filters: " + ", ".join(sorted(FILTERS)))
        if isinstance(node, nodes.Test) and node.name not in TESTS:
            raise TemplateProblem(f"template error: test `{node.name}` is not available",
                                  "tests: " + ", ".join(TESTS) + "; compare with == < in")
        if isinstance(node, nodes.For) and node.recursive:
            raise TemplateProblem("template error: recursive loops are not supported")

    return Guard().visit(tree)


# -- the sandbox ------------------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "lteq": lambda a, b: a <= b, "gt": lambda a, b: a > b, "gteq": lambda a, b: a >= b,
    "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}
#: `is` tests that cost next to nothing (comparisons go through the operators instead)
TESTS = ("defined", "undefined", "none", "boolean", "true", "false", "integer", "float",
         "number", "string", "sequence", "mapping", "iterable", "odd", "even", "lower", "upper")


class _Budget:
    """The work one template has done; raises when a limit is passed.

    Every value an operation takes or makes is weighed (one unit per item, per 64 characters,
    per 64 bits), so the Python work done is never more than the units charged.
    """

    def __init__(self) -> None:
        self.operations = 0
        self.iterations = 0

    def spend(self, units: int = 1) -> None:
        self.operations += units
        if self.operations > MAX_OPERATIONS:
            raise _over("work", "the template's work")

    def check(self, value: Any) -> Any:
        """`value` itself, once it is within the size limits; its size is charged as work."""
        self._weigh(value, [0])
        return value

    def _weigh(self, value: Any, items: list[int]) -> None:
        if isinstance(value, str):
            if len(value) > MAX_STRING_LENGTH:
                raise _over("string length", f"a string of {len(value):,} characters")
            self.spend(1 + len(value) // 64)
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > MAX_INT_BITS:
                raise _over("integer size", f"an integer of {value.bit_length():,} bits")
            self.spend(1 + value.bit_length() // 64)
        elif isinstance(value, list | tuple | dict):
            items[0] += len(value)
            if items[0] > MAX_ITEMS:
                raise _over("items", f"a list of more than {MAX_ITEMS:,} items")
            self.spend()
            for item in (value if not isinstance(value, dict) else value.items()):
                self._weigh(item, items)
        else:
            self.spend()

    def iterate(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.iterations += 1
            if self.iterations > MAX_LOOP_ITERATIONS:
                raise _over("loop iterations", f"looping {self.iterations:,} times")
            self.spend()
            yield item


def _scalar(value: Any, what: str) -> Any:
    """`value`, if it is text or a number: containers and objects are never turned into text."""
    if isinstance(value, _Names):
        str(value)  # raises its own clear error
    if not isinstance(value, _SCALARS):
        raise TemplateProblem(f"template error: {what} needs text or a number, not a "
                              f"{type(value).__name__}", AVAILABLE)
    return value


def _sequence(value: Any, what: str) -> Any:
    if not isinstance(value, str | list | tuple | dict):
        raise TemplateProblem(f"template error: {what} needs a list or text", AVAILABLE)
    return value


def _replace(value: Any, old: Any, new: Any, count: int = -1) -> str:
    text, old, new = str(_scalar(value, "`replace`")), str(_scalar(old, "`replace`")), str(new)
    hits = len(text) + 1 if not old else text.count(old)
    hits = min(hits, count) if count >= 0 else hits
    if len(text) + hits * max(0, len(new) - len(old)) > MAX_STRING_LENGTH:
        raise _over("string length", "the result of `replace`")
    return text.replace(old, new, count)


def _join(value: Any, separator: Any = "") -> str:
    items = [str(_scalar(item, "`join`")) for item in _sequence(value, "`join`")]
    separator = str(_scalar(separator, "`join`"))
    if sum(map(len, items)) + len(separator) * len(items) > MAX_STRING_LENGTH:
        raise _over("string length", "the result of `join`")
    return separator.join(items)


def _list(value: Any) -> list[Any]:
    if len(_sequence(value, "`list`")) > MAX_ITEMS:
        raise _over("items", f"a list of {len(value):,} items")
    return list(value)


def _to_number(kind: type, value: Any, default: Any) -> Any:
    try:
        return kind(_scalar(value, f"`{kind.__name__}`"))
    except (TypeError, ValueError, OverflowError):
        return default


#: The filters a recipe template may use; each takes and makes plain values (see _Budget).
FILTERS: dict[str, Callable[..., Any]] = {
    "upper": lambda v: str(_scalar(v, "`upper`")).upper(),
    "lower": lambda v: str(_scalar(v, "`lower`")).lower(),
    "title": lambda v: str(_scalar(v, "`title`")).title(),
    "capitalize": lambda v: str(_scalar(v, "`capitalize`")).capitalize(),
    "trim": lambda v, chars=None: str(_scalar(v, "`trim`")).strip(chars),
    "replace": _replace,
    "string": lambda v: str(_scalar(v, "`string`")),
    "int": lambda v, default=0: _to_number(int, v, default),
    "float": lambda v, default=0.0: _to_number(float, v, default),
    "abs": lambda v: abs(_scalar(v, "`abs`")),
    "round": lambda v, precision=0: round(float(_scalar(v, "`round`")), int(precision)),
    "length": lambda v: len(_sequence(v, "`length`")),
    "first": lambda v: _sequence(v, "`first`")[0] if len(v) else "",
    "last": lambda v: _sequence(v, "`last`")[-1] if len(v) else "",
    "list": _list,
    "reverse": lambda v: _sequence(v, "`reverse`")[::-1],
    "join": _join,
}
FILTERS["count"] = FILTERS["length"]


def _sandbox_class() -> type:
    """The sandboxed Jinja environment (built on first use: validate need not import jinja)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    class RecipeSandbox(SandboxedEnvironment):
        """Attribute and item access only on the documented namespaces, no calls, no globals,
        and every operator, filter, comparison, loop and output weighed against the limits."""

        intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
        intercepted_unops = frozenset({"+", "-"})

        def __init__(self, budget: _Budget) -> None:
            super().__init__(undefined=StrictUndefined, autoescape=False, finalize=self.printable)
            self.globals.clear()  # range, lipsum, cycler, joiner, namespace, dict
            self.filters = {name: self._metered(f) for name, f in FILTERS.items()}
            self.filters.update({_LOOP_GUARD: self.loop, _VALUE_GUARD: self.value,
                                 _CONCAT_GUARD: self.join_text, _COMPARE_GUARD: self.compare})
            builtin_tests: dict[str, Any] = dict(self.tests)
            self.tests = {name: self._metered(builtin_tests[name]) for name in TESTS}
            self.budget = budget

        def _metered(self, function: Callable[..., Any]) -> Callable[..., Any]:
            def metered(value: Any, *args: Any, **kwargs: Any) -> Any:
                for argument in (value, *args, *kwargs.values()):
                    self.budget.check(argument)
                return self.budget.check(function(value, *args, **kwargs))

            return metered

        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            return isinstance(obj, _Names)

        def is_safe_callable(self, obj: Any) -> bool:
            return False

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, _Names):
                return obj.lookup(attribute)
            raise TemplateProblem(f"template error: access to attribute {attribute!r} of "
                                  f"{type(obj).__name__!r} object is unsafe.", AVAILABLE)

        def getitem(self, obj: Any, argument: Any) -> Any:
            self.budget.spend()
            if isinstance(obj, _Names):
                return obj.lookup(argument)
            if isinstance(obj, dict) and isinstance(argument, _SCALARS):
                return obj[argument]
            if isinstance(obj, str | list | tuple) and isinstance(argument, int | slice):
                return obj[argument]
            raise TemplateProblem(f"template error: access to item {argument!r} of "
                                  f"{type(obj).__name__!r} object is unsafe.", AVAILABLE)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            raise TemplateProblem("template error: calling a function or method is not supported "
                                  "in recipes", AVAILABLE)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            self.budget.check(left)
            self.budget.check(right)
            if operator == "%" and isinstance(left, str):
                raise TemplateProblem("template error: `%` formatting of text is not supported",
                                      "join text with `~`")
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and abs(left) > 1 and right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
                raise _over("integer size", "the result of `**`")
            if operator == "*":
                _check_product(left, right)
            if operator == "+" and isinstance(left, str | list | tuple) and \
                    isinstance(right, str | list | tuple) and len(left) + len(right) > MAX_STRING_LENGTH:
                raise _over("string length", "the result of `+`")
            return self.budget.check(self.binop_table[operator](left, right))

        def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
            self.budget.check(arg)
            return self.unop_table[operator](arg)

        def printable(self, value: Any) -> Any:
            """What `{{ ... }}` may print: text and numbers only (never an object's repr)."""
            return self.budget.check(_scalar(value, "printing"))

        def loop(self, items: Any) -> Iterator[Any]:
            if isinstance(items, _Names):
                iter(items)  # raises its clear error
            return self.budget.iterate(self.budget.check(items))

        def value(self, built: Any) -> Any:
            return self.budget.check(built)

        def join_text(self, first: Any, *rest: Any) -> str:
            parts = [str(self.budget.check(_scalar(part, "`~`"))) for part in (first, *rest)]
            if sum(map(len, parts)) > MAX_STRING_LENGTH:
                raise _over("string length", "the result of `~`")
            return "".join(parts)

        def compare(self, left: Any, *operations: Any) -> bool:
            """`a == b < c ...`, with each operand weighed first."""
            self.budget.check(left)
            for op, right in zip(operations[::2], operations[1::2], strict=True):
                self.budget.check(right)
                if not _COMPARISONS[op](left, right):
                    return False
                left = right
            return True

        def concat(self, parts: Iterable[str]) -> str:  # the rendered output, streamed
            out: list[str] = []
            size = 0
            for part in parts:
                size += len(part)
                if size > MAX_STRING_LENGTH:
                    raise _over("string length", "the rendered template")
                out.append(part)
            return "".join(out)

    return RecipeSandbox


def _check_product(left: Any, right: Any) -> None:
    """Refuse `'a' * 10**10` and `(2**4000) * (2**4000)` before they are computed."""
    sized, times = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(sized, str | list | tuple) and isinstance(times, int):
        limit = MAX_STRING_LENGTH if isinstance(sized, str) else MAX_ITEMS
        if len(sized) * times > limit:
            raise _over("string length" if isinstance(sized, str) else "items",
                        "the result of `*`")
    elif isinstance(left, int) and isinstance(right, int) and \
            left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
        raise _over("integer size", "the result of `*`")


def referenced_params(value: Any) -> set[str]:
    """Names of every pipeline parameter a (nested) value refers to."""
    return _referenced(value, "params")


def referenced_run_names(value: Any) -> set[str]:
    """The `run.*` names (id, date, name) a (nested) value refers to: the task needs them as inputs."""
    return _referenced(value, "run")


def _referenced(value: Any, namespace: str) -> set[str]:
    found: set[str] = set()
    if isinstance(value, ParamRef):
        if namespace == "params":
            found.add(value.name)
    elif isinstance(value, str):
        found.update(m.group(2) for m in RUNTIME_TEMPLATE_RE.finditer(value) if m.group(1) == namespace)
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= _referenced(item, namespace)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= _referenced(item, namespace)
    return found


def resolve_runtime(value: Any, params: Mapping[str, Any], run: Mapping[str, Any]) -> Any:
    """Replace ParamRef markers (``{"$param": name}``) and runtime templates with real values."""
    if isinstance(value, dict):
        if set(value) == {"$param"}:
            return params[value["$param"]]
        return {k: resolve_runtime(v, params, run) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_runtime(v, params, run) for v in value]
    if isinstance(value, str) and "{{" in value:
        sources = {"params": params, "run": run}
        return RUNTIME_TEMPLATE_RE.sub(lambda m: str(sources[m.group(1)][m.group(2)]), value)
    return value
