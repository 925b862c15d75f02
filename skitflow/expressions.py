"""A small, safe expression language for row filters and conditions.

Recipes say things like ``duration > 3 and intent != 'spam'``. That text is never handed to
``eval``: it is parsed with :func:`ast.parse` and every node is checked against a short whitelist,
then turned into a tiny tree of our own that is interpreted either over a DataFrame (vectorised,
one pandas operation per node) or over plain values. Nothing in the language can reach a Python
object other than the values it is given, so a recipe cannot run code.

The language:

* ``and``, ``or``, ``not``; comparisons ``== != < <= > >=`` (chains like ``1 < x < 5`` work);
  ``x in [1, 2]`` / ``x not in ['a', 'b']`` against a list of constants (or, over plain values,
  against a name holding a list);
* arithmetic ``+ - * / % //`` and unary minus (no ``**``: ``9**9**9`` would hang);
* constants: numbers, strings, ``True/False/None`` and also ``true/false/null``;
* column names as bare identifiers, ``col("name with spaces")`` for any other name;
* functions: ``isnull(x) notnull(x) len(x) lower(x) upper(x) contains(x, "s") startswith(x, "s")
  endswith(x, "s") abs(x) between(x, lo, hi)`` (``between`` includes both ends).

Nulls never match: a comparison with a null on either side is false, so ``intent != 'spam'``
drops rows whose intent is null. Test for nulls with ``x == null``, ``x != null``, ``isnull(x)``
or by listing null: ``x in ['a', null]``. Arithmetic with a null gives null. Line breaks count
as spaces, so a YAML block (``|``) may spread an expression over several lines.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skitflow.errors import SkitflowError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FUNCTIONS", "Expression", "ExpressionError", "parse"]

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

MAX_LENGTH = 100_000
MAX_DEPTH = 100  # nesting of our own tree; keeps evaluation far from Python's recursion limit


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
            return _Name(offset, width, node.id)
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
            return _Name(offset, width, arg.value)
        if func in _TEXT_ARGUMENT:
            arg = node.args[1]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self.fail(f"the second argument of {func}() must be a string in quotes", arg)
        args = tuple(self.build(arg, depth) for arg in node.args)
        return _Call(offset, width, func, args)


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
    """A parsed expression: its text, the column names it reads, and ways to evaluate it."""

    text: str
    names: frozenset[str] = field(compare=False)
    _root: _Node = field(compare=False, repr=False)

    def __str__(self) -> str:
        return self.text

    def evaluate_frame(self, frame: pd.DataFrame) -> pd.Series:
        """A boolean Series, one value per row of `frame` (same index), computed vectorised."""
        import pandas as pd

        result = _Evaluator(self.text, frame=frame).mask(self._root)
        if isinstance(result, pd.Series):
            return result
        return pd.Series(bool(result), index=frame.index, dtype=bool)

    def evaluate_scalar(self, values: Mapping[str, Any]) -> Any:
        """The value of the expression over plain values (a name holding a list works with `in`)."""
        return _Evaluator(self.text, values=values).eval(self._root)


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
    except (ValueError, RecursionError, MemoryError) as error:
        raise ExpressionError(f"invalid expression: {error or 'nested too deeply'}") from None
    builder = _Builder(source, shift)
    root = builder.build(tree.body)
    return Expression(text, frozenset(builder.names), root)


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


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
    "//": operator.floordiv,
}
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
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

    Every helper accepts Series or scalars, since even a row filter has constants in it.
    """

    def __init__(
        self, text: str, frame: pd.DataFrame | None = None, values: Mapping[str, Any] | None = None
    ) -> None:
        self.text = text
        self.frame = frame
        self.values = values or {}
        self.pd: Any = None
        if frame is not None:
            import pandas

            self.pd = pandas

    # -- helpers ------------------------------------------------------------------------------
    def series(self, value: Any) -> bool:
        return self.pd is not None and isinstance(value, self.pd.Series)

    def snippet(self, node: _Node) -> str:
        return self.text[node.offset : node.offset + node.width]

    def fail(self, message: str, node: _Node, hint: str | None = None) -> ExpressionError:
        return ExpressionError(message, node.offset, hint, node.width)

    def describe(self, value: Any) -> str:
        return f"dtype {value.dtype}" if self.series(value) else type(value).__name__

    def notna(self, value: Any) -> Any:
        return value.notna() if self.series(value) else not _is_missing(value)

    def boolean(self, value: Any) -> Any:
        """A comparison's result as plain booleans, pandas' NA counting as false."""
        if self.series(value) and value.dtype != "bool":  # NA-able booleans
            return value.fillna(False).astype(bool)
        return value

    def mask(self, node: _Node) -> Any:
        """Evaluate `node` as a condition: a bool Series (frame) or a bool."""
        value = self.eval(node)
        if not self.series(value):
            return False if _is_missing(value) else bool(value)
        pd = self.pd
        dtype = value.dtype
        if pd.api.types.is_bool_dtype(dtype):
            return self.boolean(value)
        if pd.api.types.is_numeric_dtype(dtype):
            return self.boolean(value.ne(0)) & value.notna()
        if pd.api.types.is_object_dtype(dtype):
            try:
                return self.boolean(value.astype("boolean"))
            except (TypeError, ValueError):
                pass
        raise self.fail(
            f"`{self.snippet(node)}` is not true/false but {self.describe(value)}",
            node,
            "compare it with something, e.g. `x == 'yes'`, or test notnull(x)",
        )

    # -- nodes ----------------------------------------------------------------------------------
    def eval(self, node: _Node) -> Any:
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, _Name):
            return self.lookup(node)
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

    def logic(self, node: _Logic) -> Any:
        if self.frame is None:  # plain values: short-circuit like Python
            if node.op == "and":
                return all(self.mask(operand) for operand in node.operands)
            return any(self.mask(operand) for operand in node.operands)
        combine = operator.and_ if node.op == "and" else operator.or_
        return functools.reduce(combine, (self.mask(operand) for operand in node.operands))

    def unary(self, node: _Unary) -> Any:
        if node.op == "not":
            value = self.mask(node.operand)
            return ~value if self.series(value) else not value
        value = self.eval(node.operand)
        if _is_missing(value):
            return None
        if not self.number_like(value):
            raise self.fail(f"`{node.op}` needs a number, not {self.describe(value)}", node)
        return -value if node.op == "-" else value

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
            outcome = self.compare_one(op, left, right, node, left_node, right_node)
            result = outcome if result is True else result & outcome
            if self.frame is None and not result:
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
        if op in ("==", "!=") and null_literal:
            other = right if null_literal[0] is left_node else left
            missing = other.isna() if self.series(other) else _is_missing(other)
            return missing if op == "==" else (~missing if self.series(missing) else not missing)
        plain = not (self.series(left) or self.series(right))
        if plain and (_is_missing(left) or _is_missing(right)):
            return False
        try:
            outcome = self.boolean(_COMPARISONS[op](left, right))
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
        return outcome & self.notna(left) & self.notna(right)

    def membership(self, op: str, left: Any, right: Any, node: _Node, right_node: _Node) -> Any:
        if self.series(right):
            raise self.fail(
                f"`{op}` needs a list of values on its right, like `x {op} ['a', 'b']`",
                right_node,
                "to look for text inside a column, use contains(x, 'text')",
            )
        if _is_missing(right):
            return False
        if not isinstance(right, _CONTAINERS):
            raise self.fail(
                f"`{op}` needs a list on its right, not {self.describe(right)}", right_node
            )
        if self.series(left):
            values = [v for v in right if not _is_missing(v)]
            found = left.isin(values)
            if op == "in":
                return found | left.isna() if len(values) < len(right) else found
            return ~found & left.notna()
        if _is_missing(left):
            return op == "in" and any(_is_missing(v) for v in right)
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
            return above & below if self.series(above) or self.series(below) else above and below
        value = self.eval(node.args[0])
        if func in ("isnull", "notnull"):
            missing = value.isna() if self.series(value) else _is_missing(value)
            if func == "isnull":
                return missing
            return ~missing if self.series(missing) else not missing
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
            return self.boolean(strings.contains(text, regex=False, na=False))
        if func == "startswith":
            return self.boolean(strings.startswith(text, na=False))
        return self.boolean(strings.endswith(text, na=False))

    def text_scalar(self, func: str, value: Any, text: str | None, node: _Call) -> Any:
        if _is_missing(value):
            return False if text is not None else None
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
