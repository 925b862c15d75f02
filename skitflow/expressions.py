"""The one expression language of recipes: `filter_rows` conditions and the split's `when:`.

Recipes say things like ``duration > 3 and intent != 'spam'``. That text is never handed to
``eval``: its size is checked first (length, operators, nesting, number literals), then it is
parsed with :func:`ast.parse` and every node is checked against a short whitelist and turned into
a tiny tree of our own. One evaluator interprets that tree either over a DataFrame (vectorised,
one pandas operation per node) or over plain values (a `when:` over ``rows`` and ``columns``).
Nothing in the language can reach a Python object other than the values it is given.

The language:

* ``and``, ``or``, ``not``; comparisons ``== != < <= > >=`` (chains like ``1 < x < 5`` work);
  ``x in [1, 2]`` / ``x not in ['a', 'b']`` against a list of constants (or, over plain values,
  against a name holding a list);
* arithmetic ``+ - * / % //`` and unary minus (no ``**``: ``9**9**9`` would hang);
* constants: numbers, strings, ``True/False/None`` and also ``true/false/null``;
* column names as bare identifiers, ``col("name with spaces")`` for any other name;
  ``params.NAME`` names a recipe parameter (only `when:` may test one);
* functions: ``isnull(x) notnull(x) len(x) lower(x) upper(x) contains(x, "s") startswith(x, "s")
  endswith(x, "s") abs(x) between(x, lo, hi)`` (``between`` includes both ends).

Nulls follow SQL's three-valued logic: a comparison with a null is *unknown*, ``not unknown`` is
unknown, ``unknown and false`` is false, ``unknown or true`` is true, and a row is kept only where
the whole condition is true. So ``not (intent == 'spam')`` and ``intent != 'spam'`` both drop
rows whose intent is null. Null tests are always true or false: ``x == null``, ``x != null``,
``isnull(x)``, ``notnull(x)``, and a list that holds null (``x in ['a', null]``) matches nulls.
Arithmetic with a null gives null. Line breaks count as spaces, so a YAML block (``|``) may
spread an expression over several lines.

pandas is imported only when a DataFrame is evaluated, so parsing stays cheap.
"""

from __future__ import annotations

import ast
import functools
import math
import numbers
import operator
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skitflow.errors import Location, Problem, SkitflowError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COMPARISONS", "FUNCTIONS", "MAX_DEPTH", "MAX_INTEGER", "MAX_LENGTH", "MAX_OPERATORS",
    "Expression", "ExpressionError", "parse", "problem_in_source",
]

#: Functions the language knows: name -> (number of arguments, what it does).
FUNCTIONS: dict[str, tuple[int, str]] = {
    "col": (1, 'the column with this name, for names that are not identifiers: col("call id")'),
    "isnull": (1, "true where x is null"),
    "notnull": (1, "true where x is not null"),
    "len": (1, "length of a text (or list) value"),
    "lower": (1, "text in lower case"),
    "upper": (1, "text in upper case"),
    "contains": (2, 'true where the text contains the literal string: contains(x, "refund")'),
    "startswith": (2, "true where the text starts with the literal string"),
    "endswith": (2, "true where the text ends with the literal string"),
    "abs": (1, "absolute value"),
    "between": (3, "true where lo <= x <= hi"),
}
_TEXT_ARGUMENT = {"contains", "startswith", "endswith"}  # second argument: a string literal

#: Limits on one expression, checked before anything is parsed or evaluated, so no text can make
#: parsing or evaluation take more than a moment or more than a little memory.
MAX_LENGTH = 100_000  # characters
MAX_OPERATORS = 1_000  # operator tokens, brackets included: keeps Python's parser far from its stack limit
MAX_DEPTH = 100  # nesting (brackets, runs of `-`/`not`, operator chains): far from the recursion limit
MAX_NUMBER_LENGTH = 40  # characters of one number literal
MAX_INTEGER = 2**63 - 1  # the largest integer literal (what a 64-bit integer column holds)


class ExpressionError(SkitflowError, ValueError):
    """An expression that does not parse, uses something not allowed, or fails on the data.

    ``offset`` is the 0-based character position in the expression text of the offending part
    and ``width`` its length, so callers can point at file:line:col. It is also a ValueError so
    that a pydantic validator raising it yields a normal validation error (the original
    exception stays reachable in the error's ``ctx["error"]``).
    """

    def __init__(
        self, message: str, offset: int = 0, hint: str | None = None, width: int = 1
    ) -> None:
        self.message = message
        self.offset = offset
        self.hint = hint
        self.width = max(1, width)
        super().__init__(message, None, hint)

    def __str__(self) -> str:
        """The message, with the column inside the expression where it is not the first."""
        if self.offset > 0:
            return f"{self.message} (column {self.offset + 1} of the expression)"
        return self.message


# -- our own tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    offset: int
    width: int


@dataclass(frozen=True, slots=True)
class _Const(_Node):
    value: Any


@dataclass(frozen=True, slots=True)
class _Name(_Node):
    name: str


@dataclass(frozen=True, slots=True)
class _Param(_Node):
    name: str  # `params.NAME`: a recipe parameter


@dataclass(frozen=True, slots=True)
class _List(_Node):
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Unary(_Node):
    op: str  # not | - | +
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Logic(_Node):
    op: str  # and | or
    operands: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Compare(_Node):
    first: _Node
    rest: tuple[tuple[str, _Node], ...]


@dataclass(frozen=True, slots=True)
class _Call(_Node):
    func: str
    args: tuple[_Node, ...]


_BINARY_OPS: dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Mod: "%",
    ast.FloorDiv: "//",
}
_COMPARE_OPS: dict[type, str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_REFUSED_OPS: dict[type, tuple[str, str | None]] = {
    ast.Pow: ("`**` is not supported", None),
    ast.BitAnd: ("`&` is not supported", "write `and`"),
    ast.BitOr: ("`|` is not supported", "write `or`"),
    ast.BitXor: ("`^` is not supported", None),
    ast.LShift: ("`<<` is not supported", None),
    ast.RShift: ("`>>` is not supported", None),
    ast.MatMult: ("`@` is not supported", None),
    ast.Invert: ("`~` is not supported", "write `not`"),
    ast.Is: ("`is` is not supported", "write `x == null` or isnull(x)"),
    ast.IsNot: ("`is not` is not supported", "write `x != null` or notnull(x)"),
}
_REFUSED_NODES: dict[type, str] = {
    ast.Attribute: "attribute access (`.name`) is not allowed",
    ast.Subscript: "indexing with `[...]` is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.IfExp: "conditional expressions (`a if c else b`) are not allowed",
    ast.NamedExpr: "assignment (`:=`) is not allowed",
    ast.Dict: "dictionaries are not allowed",
    ast.Set: "sets are not allowed",
    ast.Starred: "`*` unpacking is not allowed",
    ast.Await: "`await` is not allowed",
    ast.Yield: "`yield` is not allowed",
    ast.YieldFrom: "`yield` is not allowed",
    ast.Slice: "slices are not allowed",
}
_NAMED_CONSTANTS = {"true": True, "false": False, "null": None}


class _Builder:
    """Checks a Python AST against the whitelist and turns it into our tree."""

    def __init__(self, source: str, shift: int) -> None:
        self.source = source  # the text as parsed: one line, no leading blanks
        self.shift = shift  # characters stripped from the front of the original text
        self.encoded = None if source.isascii() else source.encode("utf-8")
        self.names: set[str] = set()
        self.params: set[str] = set()
        self.spans: dict[str, tuple[int, int]] = {}  # name (or `params.NAME`) -> first (offset, width)

    def read(self, key: str, node: ast.AST) -> None:
        """Remember that the expression reads `key`, and where it first does."""
        self.spans.setdefault(key, self.span(node))

    def span(self, node: ast.AST) -> tuple[int, int]:
        """(character offset in the original text, width) of an AST node."""
        start = self._chars(getattr(node, "col_offset", 0))
        end = self._chars(getattr(node, "end_col_offset", None) or 0)
        return start + self.shift, max(1, end - start)

    def _chars(self, byte_offset: int) -> int:
        if self.encoded is None:
            return byte_offset
        return len(self.encoded[:byte_offset].decode("utf-8", errors="replace"))

    def fail(self, message: str, node: ast.AST, hint: str | None = None) -> ExpressionError:
        offset, width = self.span(node)
        return ExpressionError(message, offset, hint, width)

    def build(self, node: ast.AST, depth: int = 0) -> _Node:
        if depth > MAX_DEPTH:
            raise self.fail("the expression is nested too deeply", node)
        offset, width = self.span(node)
        deeper = depth + 1
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            return _Logic(offset, width, op, tuple(self.build(v, deeper) for v in node.values))
        if isinstance(node, ast.UnaryOp):
            return self._unary(node, deeper)
        if isinstance(node, ast.BinOp):
            return self._binary(node, deeper)
        if isinstance(node, ast.Compare):
            return self._compare(node, deeper)
        if isinstance(node, ast.Constant):
            return _Const(offset, width, self._constant(node))
        if isinstance(node, ast.Name):
            if node.id in _NAMED_CONSTANTS:
                return _Const(offset, width, _NAMED_CONSTANTS[node.id])
            self.names.add(node.id)
            self.read(node.id, node)
            return _Name(offset, width, node.id)
        if isinstance(node, ast.Attribute) and _is_parameter(node):
            self.params.add(node.attr)
            self.read(f"params.{node.attr}", node)
            return _Param(offset, width, node.attr)
        if isinstance(node, ast.Call):
            return self._call(node, deeper)
        if isinstance(node, ast.List | ast.Tuple):
            raise self.fail("a list is only allowed on the right of `in` / `not in`", node)
        raise self._refuse(node)

    def _refuse(self, node: ast.AST) -> ExpressionError:
        message = _REFUSED_NODES.get(type(node), f"`{type(node).__name__}` is not allowed here")
        hint = None
        if isinstance(node, ast.Attribute) and node.attr in FUNCTIONS:
            hint = f"write `{node.attr}(...)` instead of `.{node.attr}(...)`"
        elif isinstance(node, ast.Subscript):
            hint = 'write col("name") for a column whose name is not an identifier'
        elif isinstance(node, ast.Set):
            hint = "write a list: `x in [1, 2]`"
        return self.fail(message, node, hint)

    def _constant(self, node: ast.Constant) -> Any:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            raise self.fail(f"the number is too large: integers go up to {MAX_INTEGER}", node)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail("the number is too large for a float", node)
        if value is None or isinstance(value, bool | int | float | str):
            return value
        kind = {bytes: "bytes", complex: "complex numbers"}.get(type(value), repr(value))
        raise self.fail(f"{kind} are not supported", node)

    def _unary(self, node: ast.UnaryOp, depth: int) -> _Node:
        offset, width = self.span(node)
        if type(node.op) in _REFUSED_OPS:
            message, hint = _REFUSED_OPS[type(node.op)]
            raise self.fail(message, node, hint)
        op = {ast.Not: "not", ast.USub: "-", ast.UAdd: "+"}[type(node.op)]
        operand = self.build(node.operand, depth)
        if op != "not" and isinstance(operand, _Const) and _is_number(operand.value):
            return _Const(offset, width, -operand.value if op == "-" else operand.value)
        return _Unary(offset, width, op, operand)

    def _binary(self, node: ast.BinOp, depth: int) -> _Node:
        offset, width = self.span(node)
        if type(node.op) not in _BINARY_OPS:
            message, hint = _REFUSED_OPS.get(type(node.op), ("operator not supported", None))
            raise self.fail(message, node, hint)
        left, right = self.build(node.left, depth), self.build(node.right, depth)
        return _Binary(offset, width, _BINARY_OPS[type(node.op)], left, right)

    def _compare(self, node: ast.Compare, depth: int) -> _Node:
        offset, width = self.span(node)
        first = self.build(node.left, depth)
        rest: list[tuple[str, _Node]] = []
        for op_node, operand in zip(node.ops, node.comparators, strict=True):
            if type(op_node) not in _COMPARE_OPS:
                message, hint = _REFUSED_OPS.get(type(op_node), ("operator not supported", None))
                raise self.fail(message, node, hint)
            op = _COMPARE_OPS[type(op_node)]
            if op in ("in", "not in") and isinstance(operand, ast.List | ast.Tuple):
                rest.append((op, self._list(operand, depth)))
            else:
                rest.append((op, self.build(operand, depth)))
        return _Compare(offset, width, first, tuple(rest))

    def _list(self, node: ast.List | ast.Tuple, depth: int) -> _List:
        offset, width = self.span(node)
        values = []
        for element in node.elts:
            built = self.build(element, depth + 1)
            if not isinstance(built, _Const):
                raise self.fail("a list after `in` may only hold constants", element)
            values.append(built.value)
        return _List(offset, width, tuple(values))

    def _call(self, node: ast.Call, depth: int) -> _Node:
        offset, width = self.span(node)
        if not isinstance(node.func, ast.Name):
            if type(node.func) in _REFUSED_NODES:
                raise self._refuse(node.func)
            raise self.fail("only the listed functions can be called", node.func)
        func = node.func.id
        if func not in FUNCTIONS:
            hint = did_you_mean(func, FUNCTIONS) or "functions: " + ", ".join(sorted(FUNCTIONS))
            raise self.fail(f"unknown function `{func}`", node.func, hint)
        if node.keywords:
            raise self.fail(f"{func}() takes no keyword arguments", node.keywords[0])
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._refuse(arg)
        arity = FUNCTIONS[func][0]
        if len(node.args) != arity:
            plural = "s" if arity > 1 else ""
            raise self.fail(f"{func}() takes {arity} argument{plural}, got {len(node.args)}", node)
        if func == "col":
            arg = node.args[0]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self.fail('col() takes a column name in quotes: col("my column")', arg)
            self.names.add(arg.value)
            self.read(arg.value, node)
            return _Name(offset, width, arg.value)
        if func in _TEXT_ARGUMENT:
            arg = node.args[1]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self.fail(f"the second argument of {func}() must be a string in quotes", arg)
        args = tuple(self.build(arg, depth) for arg in node.args)
        return _Call(offset, width, func, args)


def _is_parameter(node: ast.Attribute) -> bool:
    """`params.NAME`, the one attribute the language knows (a recipe parameter)."""
    return (
        isinstance(node.value, ast.Name)
        and node.value.id == "params"
        and not node.attr.startswith("_")
    )


_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")
_PREFIX = frozenset({"-", "+", "~", "not"})
_WORD_OPERATORS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "lambda", "await", "yield", "for", "from"}
)


def _check_size(source: str, shift: int) -> None:
    """Refuse text that would make Python's parser or our tree too deep or too big.

    One pass over the tokens, before :func:`ast.parse` sees the text: at most MAX_OPERATORS
    operators (brackets included), brackets at most MAX_DEPTH deep, at most MAX_DEPTH prefix
    operators in a row (`- - - x`, `not not x`), number literals of at most MAX_NUMBER_LENGTH
    characters. Beyond these bounds CPython's parser fails with RecursionError or MemoryError,
    so they are checked here, with the column of the token that goes over.
    """
    operators = depth = prefix_run = 0
    operand_expected = True
    for kind, text, column in _tokens(source):
        column += shift
        if kind == "number" and len(text) > MAX_NUMBER_LENGTH:
            raise ExpressionError(
                f"the number is too long: at most {MAX_NUMBER_LENGTH} characters",
                column,
                width=len(text),
            )
        if kind != "op" and not (kind == "name" and text in _WORD_OPERATORS):
            operand_expected, prefix_run = False, 0  # a name, number or string: an operand
            continue
        if text in _CLOSING:
            depth, operand_expected, prefix_run = max(0, depth - 1), False, 0
            continue
        if text == ",":
            operand_expected, prefix_run = True, 0
            continue
        operators += 1
        if operators > MAX_OPERATORS:
            raise ExpressionError(
                f"the expression has more than {MAX_OPERATORS} operators",
                column,
                "split the condition into several simpler ones",
                len(text),
            )
        if text in _OPENING:
            depth += 1
        elif operand_expected and text in _PREFIX:
            prefix_run += 1
        if depth + prefix_run > MAX_DEPTH:
            raise ExpressionError(
                f"the expression is nested too deeply (more than {MAX_DEPTH} levels)",
                column,
                width=len(text),
            )
        operand_expected = True


_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<string>[A-Za-z]{0,2}(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"))
    |(?P<number>0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)
    |(?P<name>[^\W\d]\w*)
    |(?P<op>\*\*|//|<<|>>|<=|>=|==|!=|:=|\.\.\.|[-+*/%@&|^~<>()\[\]{},:.;=!])""",
    re.VERBOSE,
)


def _tokens(source: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, column) of each token: number, name, string, op, or `other` for a character
    Python would refuse anyway (ast.parse then reports it). Linear time: each pattern is anchored
    and has no nested repetition, unlike :mod:`tokenize` on a very long number."""
    position, end = 0, len(source)
    while position < end:
        match = _TOKEN.match(source, position)
        if match is None:
            yield "other", source[position], position
            position += 1
            continue
        if match.lastgroup != "space":
            yield match.lastgroup or "other", match.group(), position
        position = match.end()


def _syntax_hint(text: str) -> str | None:
    if "&&" in text or "||" in text:
        return "write `and` / `or` instead of `&&` / `||`"
    if "===" in text:
        return "write `==`"
    if "!" in text.replace("!=", ""):
        return "write `not` instead of `!`"
    if re.search(r"(?<![=!<>])=(?!=)", text):
        return "compare with `==`; `=` alone is not a comparison"
    return None


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its text, the names it reads, and ways to evaluate it.

    `names` are the columns (or, over plain values, the names) it reads; `params` the recipe
    parameters it tests as `params.NAME`.
    """

    text: str
    names: frozenset[str] = field(compare=False)
    _root: _Node = field(compare=False, repr=False)
    params: frozenset[str] = field(default=frozenset(), compare=False)
    _spans: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text

    def evaluate_frame(self, frame: pd.DataFrame) -> pd.Series:
        """A bool Series, one value per row of `frame` (same index): true only where the
        condition is true (false or unknown rows are not kept). Computed vectorised."""
        import pandas as pd

        result = _Evaluator(self.text, frame=frame).truth(self._root)
        if isinstance(result, pd.Series):
            return pd.Series(
                result.to_numpy(dtype=bool, na_value=False), index=frame.index, dtype=bool
            )
        return pd.Series(_is_true(result), index=frame.index, dtype=bool)

    def evaluate_scalar(self, values: Mapping[str, Any]) -> Any:
        """The value of the expression over plain values (a name holding a list works with `in`);
        None where it is unknown. `params.NAME` reads ``values["params"][NAME]``."""
        return _Evaluator(self.text, values=values).eval(self._root)

    def holds(self, values: Mapping[str, Any]) -> bool:
        """Whether the condition is true over plain values (unknown counts as not true)."""
        return _is_true(_Evaluator(self.text, values=values).truth(self._root))

    def error_at(self, name: str, message: str, hint: str | None = None) -> ExpressionError:
        """An error pointing at where the expression first reads `name` (or `params.NAME`)."""
        offset, width = self._spans.get(name, (0, len(self.text)))
        return ExpressionError(message, offset, hint, width)

    def parameter_test(self) -> tuple[str, str, Any] | None:
        """`(NAME, op, value)` when the whole expression tests one parameter against a constant:
        `params.NAME`, `not params.NAME` or `params.NAME <op> value`; None otherwise."""
        root = self._root
        if isinstance(root, _Param):
            return root.name, "==", True
        if isinstance(root, _Unary) and root.op == "not" and isinstance(root.operand, _Param):
            return root.operand.name, "==", False
        if isinstance(root, _Compare) and isinstance(root.first, _Param) and len(root.rest) == 1:
            op, right = root.rest[0]
            if op in COMPARISONS and isinstance(right, _Const) and right.value is not None:
                return root.first.name, op, right.value
        return None


def parse(text: str) -> Expression:
    """Parse and check `text`; raise :class:`ExpressionError` for anything not allowed."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, not {type(text).__name__}")
    return _parse(text)


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> Expression:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters")
    one_line = text.replace("\r", " ").replace("\n", " ")  # same length: offsets stay valid
    source = one_line.lstrip(" \t\f")
    shift = len(one_line) - len(source)
    if not source.strip():
        raise ExpressionError("the expression is empty", 0, "write a condition like `duration > 3`")
    _check_size(source, shift)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences in a string
            tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        message = f"invalid expression: {error.msg}"
        if error.offset:
            offset = min(len(text), shift + error.offset - 1)
        else:  # Python gives no position when the text stops in the middle
            offset = len(text.rstrip())
            message += " (it ends too early)"
        raise ExpressionError(message, offset, _syntax_hint(text)) from None
    except ValueError as error:  # e.g. a NUL character
        raise ExpressionError(f"invalid expression: {error}") from None
    except (RecursionError, MemoryError):  # pragma: no cover - _check_size keeps us far from these
        raise ExpressionError("the expression is nested too deeply") from None
    builder = _Builder(source, shift)
    root = builder.build(tree.body)
    return Expression(
        text, frozenset(builder.names), root, frozenset(builder.params), dict(builder.spans)
    )


def problem_in_source(
    error: ExpressionError, text: str, start: Location, width: int, what: str, hint: str | None = None
) -> Problem:
    """A Problem at the file position of `error` inside the expression `text`.

    `start` and `width` are where the recipe loader found the string. Its characters map one to
    one onto the file when it is a plain or quoted scalar on one line without escapes (its width
    is then the text's length, or that plus two quotes); otherwise the problem points at the
    start of the string and its message names the column inside the expression.
    """
    if "\n" not in text and "\r" not in text and width in (len(text), len(text) + 2):
        quote = 1 if width == len(text) + 2 else 0
        where = Location(start.file, start.line, start.column + quote + error.offset)
        return Problem(f"{what}: {error.message}", where, error.hint or hint, error.width)
    return Problem(f"{what}: {error}", start, error.hint or hint, width)


# -- evaluation ------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_missing(value: Any) -> bool:
    """None, NaN, pandas NA or NaT, without importing pandas."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _is_true(value: Any) -> bool:
    """A scalar truth value that is true (unknown is not)."""
    return not _is_missing(value) and bool(value)


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
    "//": operator.floordiv,
}
#: The comparison operators, the one table: the evaluator applies them to values and Series, the
#: compiler to kfp pipeline channels (a parameter `when:` becomes a `dsl.If`).
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_CONTAINERS = (list, tuple, set, frozenset, dict, str)


class _Evaluator:
    """Interprets our tree over one DataFrame (values are Series) or over plain values.

    Truth values are three-valued, as in SQL: true, false and unknown. Over a DataFrame they are
    pandas' nullable "boolean" Series (NA is unknown; its `&`, `|` and `~` are Kleene's logic),
    over plain values True, False and None. Every helper accepts Series or scalars, since even a
    row filter has constants in it.
    """

    def __init__(
        self, text: str, frame: pd.DataFrame | None = None, values: Mapping[str, Any] | None = None
    ) -> None:
        self.text = text
        self.frame = frame
        self.values = values or {}
        self.pd: Any = None
        self.unknown: Any = None
        if frame is not None:
            import pandas

            self.pd = pandas
            self.unknown = pandas.NA  # combines with Series under Kleene's rules

    # -- helpers ------------------------------------------------------------------------------
    def series(self, value: Any) -> bool:
        return self.pd is not None and isinstance(value, self.pd.Series)

    def snippet(self, node: _Node) -> str:
        return self.text[node.offset : node.offset + node.width]

    def fail(self, message: str, node: _Node, hint: str | None = None) -> ExpressionError:
        return ExpressionError(message, node.offset, hint, node.width)

    def describe(self, value: Any) -> str:
        return f"dtype {value.dtype}" if self.series(value) else type(value).__name__

    def isna(self, value: Any) -> Any:
        return value.isna() if self.series(value) else _is_missing(value)

    def known(self, outcome: Any, *sides: Any) -> Any:
        """`outcome` as a nullable boolean Series, unknown wherever a side is null."""
        result = outcome.astype("boolean")
        for side in sides:
            if self.series(side):
                result = result.mask(side.isna())
        return result

    def all_unknown(self, *sides: Any) -> Any:
        like = next((side for side in sides if self.series(side)), None)
        if like is None:
            return self.unknown
        return self.pd.Series(self.pd.NA, index=like.index, dtype="boolean")

    def truth(self, node: _Node) -> Any:
        """Evaluate `node` as a condition: true/false/unknown, per row over a DataFrame."""
        value = self.eval(node)
        if self.series(value):
            pd = self.pd
            dtype = value.dtype
            if pd.api.types.is_bool_dtype(dtype):
                return value.astype("boolean")
            if pd.api.types.is_numeric_dtype(dtype):
                return self.known(value.ne(0), value)
            if pd.api.types.is_object_dtype(dtype):
                try:
                    return value.astype("boolean")
                except (TypeError, ValueError):
                    pass
        elif _is_missing(value):
            return self.unknown
        elif isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        elif isinstance(value, numbers.Number):
            return value != 0
        raise self.fail(
            f"`{self.snippet(node)}` is not true/false but {self.describe(value)}",
            node,
            "compare it with something, e.g. `x == 'yes'`, or test notnull(x)",
        )

    def both(self, left: Any, right: Any) -> Any:
        """`left and right` in three-valued logic."""
        if self.series(left) or self.series(right):
            return left & right
        if left is False or right is False:
            return False
        return self.unknown if _is_missing(left) or _is_missing(right) else True

    def either(self, left: Any, right: Any) -> Any:
        """`left or right` in three-valued logic."""
        if self.series(left) or self.series(right):
            return left | right
        if left is True or right is True:
            return True
        return self.unknown if _is_missing(left) or _is_missing(right) else False

    def negate(self, value: Any) -> Any:
        """`not value` in three-valued logic: not unknown is unknown."""
        if self.series(value):
            return ~value
        return self.unknown if _is_missing(value) else not value

    # -- nodes ----------------------------------------------------------------------------------
    def eval(self, node: _Node) -> Any:
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, _Name):
            return self.lookup(node)
        if isinstance(node, _Param):
            return self.parameter(node)
        if isinstance(node, _List):
            return list(node.values)
        if isinstance(node, _Compare):
            return self.compare(node)
        if isinstance(node, _Logic):
            return self.logic(node)
        if isinstance(node, _Unary):
            return self.unary(node)
        if isinstance(node, _Binary):
            return self.binary(node)
        if isinstance(node, _Call):
            return self.call(node)
        raise AssertionError(f"unexpected node {node!r}")  # pragma: no cover

    def lookup(self, node: _Name) -> Any:
        if self.frame is not None:
            if node.name not in self.frame.columns:
                known = [str(c) for c in self.frame.columns]
                raise self.fail(
                    f"unknown column `{node.name}`", node, did_you_mean(node.name, known)
                )
            value = self.frame[node.name]
            if not self.series(value):
                raise self.fail(f"column `{node.name}` appears more than once", node)
            return value
        if node.name not in self.values:
            raise self.fail(
                f"unknown name `{node.name}`", node, did_you_mean(node.name, self.values)
            )
        return self.values[node.name]

    def parameter(self, node: _Param) -> Any:
        params = self.values.get("params")
        if self.frame is not None or not isinstance(params, Mapping):
            raise self.fail(f"parameters such as `params.{node.name}` cannot be read here", node)
        if node.name not in params:
            hint = did_you_mean(node.name, params)
            raise self.fail(f"unknown parameter `{node.name}`", node, hint)
        return params[node.name]

    def logic(self, node: _Logic) -> Any:
        combine = self.both if node.op == "and" else self.either
        decided = node.op == "or"  # the value that settles the whole chain
        result: Any = not decided
        for operand in node.operands:
            result = combine(result, self.truth(operand))
            if self.frame is None and result is decided:  # plain values: short-circuit
                return result
        return result

    def unary(self, node: _Unary) -> Any:
        if node.op == "not":
            return self.negate(self.truth(node.operand))
        value = self.eval(node.operand)
        if _is_missing(value):
            return None
        if not self.number_like(value):
            raise self.fail(f"`{node.op}` needs a number, not {self.describe(value)}", node)
        try:
            return -value if node.op == "-" else +value
        except TypeError as error:  # e.g. numpy refuses `-` on booleans
            raise self.fail(f"`{node.op}` needs a number ({error})", node) from None

    def _numeric(self, series: pd.Series) -> bool:
        return bool(self.pd.api.types.is_numeric_dtype(series.dtype))

    def number_like(self, value: Any) -> bool:
        if self.series(value):
            return self._numeric(value)
        return isinstance(value, numbers.Number)

    def binary(self, node: _Binary) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        if _is_missing(left) or _is_missing(right):
            return None
        if node.op in ("*", "%"):  # no text repetition or %-formatting: both can blow up memory
            for value in (left, right):
                if isinstance(value, _CONTAINERS) or (
                    self.series(value) and not self._numeric(value)
                ):
                    raise self.fail(f"`{node.op}` needs numbers, not {self.describe(value)}", node)
        try:
            return _ARITHMETIC[node.op](left, right)
        except ZeroDivisionError:
            raise self.fail("division by zero", node) from None
        except (TypeError, ValueError, NotImplementedError, ArithmeticError) as error:
            raise self.fail(
                f"cannot compute `{self.snippet(node)}`: {self.describe(left)} {node.op} "
                f"{self.describe(right)} ({error})",
                node,
            ) from None

    def compare(self, node: _Compare) -> Any:
        left = self.eval(node.first)
        left_node = node.first
        result: Any = True
        for op, right_node in node.rest:
            right = self.eval(right_node)
            result = self.both(result, self.compare_one(op, left, right, node, left_node, right_node))
            if self.frame is None and result is False:
                return False
            left, left_node = right, right_node
        return result

    def compare_one(
        self, op: str, left: Any, right: Any, node: _Node, left_node: _Node, right_node: _Node
    ) -> Any:
        if op in ("in", "not in"):
            return self.membership(op, left, right, node, right_node)
        null_literal = [
            n for n in (left_node, right_node) if isinstance(n, _Const) and n.value is None
        ]
        if op in ("==", "!=") and null_literal:  # a null test: always true or false
            other = right if null_literal[0] is left_node else left
            missing = self.isna(other)
            return missing if op == "==" else self.negate(missing)
        if _is_missing(left) or _is_missing(right):  # a comparison with null is unknown
            return self.all_unknown(left, right)
        try:
            outcome = COMPARISONS[op](left, right)
            if not self.series(outcome):
                return bool(outcome)
        except (TypeError, ValueError, NotImplementedError) as error:
            raise self.fail(
                f"cannot compare `{self.snippet(left_node)}` ({self.describe(left)}) with "
                f"`{self.snippet(right_node)}` ({self.describe(right)})",
                node,
                "values of a column read as text need quotes, or a cast step first"
                if "str" in f"{self.describe(left)} {self.describe(right)}"
                else str(error),
            ) from None
        return self.known(outcome, left, right)

    def membership(self, op: str, left: Any, right: Any, node: _Node, right_node: _Node) -> Any:
        if self.series(right):
            raise self.fail(
                f"`{op}` needs a list of values on its right, like `x {op} ['a', 'b']`",
                right_node,
                "to look for text inside a column, use contains(x, 'text')",
            )
        if _is_missing(right):
            return self.all_unknown(left)
        if not isinstance(right, _CONTAINERS):
            raise self.fail(
                f"`{op}` needs a list on its right, not {self.describe(right)}", right_node
            )
        lists_null = not isinstance(right, str) and any(_is_missing(v) for v in right)
        if self.series(left):
            found = left.isin([v for v in right if not _is_missing(v)])
            if lists_null:  # null is listed: nulls match it, as with `x == null`
                found = found | left.isna()
                return (found if op == "in" else ~found).astype("boolean")
            return self.known(found if op == "in" else ~found, left)
        if _is_missing(left):
            if lists_null:
                return op == "in"
            return self.unknown
        try:
            found = left in right
        except TypeError as error:
            raise self.fail(f"cannot evaluate `{self.snippet(node)}`: {error}", node) from None
        return found if op == "in" else not found

    def call(self, node: _Call) -> Any:
        func = node.func
        if func == "between":
            value, low, high = (self.eval(arg) for arg in node.args)
            lo_node, hi_node = node.args[1], node.args[2]
            above = self.compare_one(">=", value, low, node, node.args[0], lo_node)
            below = self.compare_one("<=", value, high, node, node.args[0], hi_node)
            return self.both(above, below)
        value = self.eval(node.args[0])
        if func in ("isnull", "notnull"):
            missing = self.isna(value)
            return missing if func == "isnull" else self.negate(missing)
        if func == "abs":
            if _is_missing(value):
                return None
            if not self.number_like(value):
                raise self.fail(f"abs() needs a number, not {self.describe(value)}", node)
            return abs(value)
        text = node.args[1].value if func in _TEXT_ARGUMENT else None  # type: ignore[attr-defined]
        if self.series(value):
            return self.text_series(func, value, text, node)
        return self.text_scalar(func, value, text, node)

    def text_series(self, func: str, value: pd.Series, text: str | None, node: _Call) -> Any:
        try:
            strings = value.str
        except AttributeError:
            raise self.fail(
                f"{func}() needs text, but `{self.snippet(node.args[0])}` has "
                f"{self.describe(value)}",
                node,
            ) from None
        if func == "len":
            return strings.len()
        if func == "lower":
            return strings.lower()
        if func == "upper":
            return strings.upper()
        if func == "contains":
            found = strings.contains(text, regex=False, na=False)
        elif func == "startswith":
            found = strings.startswith(text, na=False)
        else:
            found = strings.endswith(text, na=False)
        return self.known(found, value)  # a test on a null is unknown

    def text_scalar(self, func: str, value: Any, text: str | None, node: _Call) -> Any:
        if _is_missing(value):
            return None  # null text, or a test on it: unknown
        if func == "len":
            if isinstance(value, _CONTAINERS):
                return len(value)
        elif func == "contains" and isinstance(value, list | tuple | set | frozenset):
            return text in value
        elif isinstance(value, str) and text is not None:
            if func == "contains":
                return text in value
            if func == "startswith":
                return value.startswith(text)
            return value.endswith(text)
        elif isinstance(value, str):
            if func == "lower":
                return value.lower()
            if func == "upper":
                return value.upper()
        raise self.fail(f"{func}() needs text, not {type(value).__name__}", node)
