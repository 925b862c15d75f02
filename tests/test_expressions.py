"""The expression language: what it accepts, what it refuses, and how it evaluates."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError, field_validator

from skitflow.errors import SkitflowError
from skitflow.expressions import Expression, ExpressionError, parse

STRING_DTYPES = [object, "str", "string[pyarrow]", "string[python]"]


@pytest.fixture(params=STRING_DTYPES, ids=str)
def calls(request: pytest.FixtureRequest) -> pd.DataFrame:
    text = request.param
    return pd.DataFrame(
        {
            "duration": [1.0, 5.0, None, 10.0, 4.0],
            "intent": pd.Series(["spam", "ok", "ok", None, "Refund"], dtype=text),
            "call id": [1, 2, 3, 4, 5],
            "vip": [True, False, True, False, True],
        }
    )


def rows(expr: str, frame: pd.DataFrame) -> list[int]:
    mask = parse(expr).evaluate_frame(frame)
    assert mask.dtype == bool
    assert mask.index.equals(frame.index)
    return [i for i, keep in enumerate(mask) if keep]


# -- evaluation over a DataFrame -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("duration > 3 and intent != 'spam'", [1, 4]),
        ("duration > 3 or intent == 'spam'", [0, 1, 3, 4]),
        ("not duration > 3", [0]),  # was [0, 2] under two-valued logic: null > 3 is unknown
        ("1 < duration <= 5", [1, 4]),
        ("duration >= 5 and duration < 10", [1]),
        ("intent in ['ok', 'spam']", [0, 1, 2]),
        ("intent in ('ok',)", [1, 2]),
        ("intent not in ['ok']", [0, 4]),
        ("intent in ['ok', null]", [1, 2, 3]),
        ("intent == null", [3]),
        ("intent != null", [0, 1, 2, 4]),
        ("null == intent", [3]),
        ("isnull(duration)", [2]),
        ("notnull(duration) and notnull(intent)", [0, 1, 4]),
        ("col('call id') == 2", [1]),
        ('col("call id") in [1, 5]', [0, 4]),
        ("vip", [0, 2, 4]),
        ("vip == true and duration > 1", [4]),
        ("not vip", [1, 3]),
        ("duration * 2 - 1 > 8", [1, 3]),
        ("duration / 2 >= 2", [1, 3, 4]),
        ("duration // 2 == 2", [1, 4]),
        ("col('call id') % 2 == 0", [1, 3]),
        ("-duration < -4.5", [1, 3]),
        ("abs(0 - duration) == 4", [4]),
        ("between(duration, 4, 5)", [1, 4]),
        ("between(col('call id'), 2, 3)", [1, 2]),
        ("len(intent) == 2", [1, 2]),
        ("lower(intent) == 'refund'", [4]),
        ("upper(intent) == 'OK'", [1, 2]),
        ("contains(intent, 'fun')", [4]),
        ("contains(lower(intent), 'r')", [4]),
        ("startswith(intent, 's')", [0]),
        ("endswith(intent, 'k')", [1, 2]),
        ("true", [0, 1, 2, 3, 4]),
        ("False", []),
        ("1 + 1 == 2", [0, 1, 2, 3, 4]),
        ("duration", [0, 1, 3, 4]),  # numbers as conditions: non-zero and not null
    ],
)
def test_evaluate_frame(calls: pd.DataFrame, expr: str, expected: list[int]) -> None:
    assert rows(expr, calls) == expected


@pytest.mark.parametrize(
    "expr",
    ["duration > 0", "duration != 7", "duration == duration", "intent != 'x'", "intent < 'zzz'"],
)
def test_nulls_never_match_a_comparison(calls: pd.DataFrame, expr: str) -> None:
    column = "duration" if expr.startswith("duration") else "intent"
    nulls = set(calls.index[calls[column].isna()])
    assert nulls
    assert nulls.isdisjoint(rows(expr, calls))


def test_not_in_drops_nulls_like_not_equal(calls: pd.DataFrame) -> None:
    assert rows("intent not in ['spam']", calls) == rows("intent != 'spam'", calls)


def test_nullable_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "b": pd.array([True, None, False], dtype="boolean"),
            "a": pd.Series([1, 2, None], dtype="float64[pyarrow]"),
        }
    )
    assert rows("n > 1", frame) == [2]
    assert rows("n != 1", frame) == [2]
    assert rows("b", frame) == [0]
    assert rows("not b", frame) == [2]  # was [1, 2] under two-valued logic: not unknown is unknown
    assert rows("a >= 2", frame) == [1]


def test_boolean_object_column_read_from_csv() -> None:
    frame = pd.DataFrame({"flag": pd.Series([True, None, False], dtype=object)})
    assert rows("flag", frame) == [0]


def test_result_keeps_the_frame_index() -> None:
    frame = pd.DataFrame({"x": [1, 2, 3]}, index=[10, 20, 30])
    mask = parse("x >= 2").evaluate_frame(frame)
    assert list(mask.index) == [10, 20, 30]
    assert frame[mask]["x"].tolist() == [2, 3]
    constant = parse("true").evaluate_frame(frame)
    assert list(constant.index) == [10, 20, 30] and constant.all()


def test_empty_frame() -> None:
    frame = pd.DataFrame({"x": pd.Series([], dtype="int64")})
    assert parse("x > 1").evaluate_frame(frame).tolist() == []


def test_expression_over_multiple_lines(calls: pd.DataFrame) -> None:
    text = "duration > 3\n  and intent != 'spam'\r\n"
    assert rows(text, calls) == [1, 4]


@pytest.mark.parametrize(
    ("expr", "message", "hint"),
    [
        ("durtion > 3", "unknown column `durtion`", "did you mean `duration`?"),
        ("col('callid') == 1", "unknown column `callid`", "did you mean `call id`?"),
    ],
)
def test_unknown_column(calls: pd.DataFrame, expr: str, message: str, hint: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(expr).evaluate_frame(calls)
    assert caught.value.message == message
    assert caught.value.hint == hint
    assert caught.value.offset == 0


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("intent > 3", "cannot compare `intent`"),
        ("intent", "is not true/false"),
        ("intent * 2 == 'x'", "`*` needs numbers"),
        ("'%s' % duration == 'x'", "`%` needs numbers"),
        ("-intent == 'x'", "`-` needs a number"),
        ("lower(duration) == 'x'", "lower() needs text"),
        ("abs(intent) > 1", "abs() needs a number"),
        ("intent in duration", "needs a list of values on its right"),
    ],
)
def test_type_errors_are_expression_errors(calls: pd.DataFrame, expr: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(expr).evaluate_frame(calls)
    assert fragment in caught.value.message


def test_error_offset_points_at_the_failing_part(calls: pd.DataFrame) -> None:
    text = "duration > 1 and intent in duration"
    with pytest.raises(ExpressionError) as caught:
        parse(text).evaluate_frame(calls)
    error = caught.value
    assert text[error.offset : error.offset + error.width] == "duration"
    assert error.offset == text.rindex("duration")


def test_duplicate_column_names_are_reported() -> None:
    frame = pd.DataFrame([[1, 2]], columns=["x", "x"])
    with pytest.raises(ExpressionError, match="more than once"):
        parse("x > 0").evaluate_frame(frame)


# -- evaluation over plain values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rows > 1000", False),
        ("rows > 10", True),
        ("'split' not in columns", True),
        ("'a' in columns", True),
        ("'a' in columns and rows >= 42", True),
        ("len(columns) == 2", True),
        ("contains(columns, 'b')", True),
        ("name == 'calls' or missing_value", True),  # short-circuit: never looks the name up
        ("rows * 2 + 1", 85),
        ("rows / 4", 10.5),
        ("upper(name)", "CALLS"),
        ("startswith(name, 'ca') and endswith(name, 'ls')", True),
        ("between(rows, 40, 42)", True),
        ("nothing == null", True),
        ("nothing > 3", None),  # unknown; False under two-valued logic
        ("nothing != 3", None),  # unknown; False under two-valued logic
        ("nothing + 1", None),
        ("isnull(nothing) and notnull(rows)", True),
        ("nothing in ['a', null]", True),
        ("nothing not in ['a']", None),  # unknown; False under two-valued logic
        ("nothing in columns", None),  # unknown; False under two-valued logic
        ("-rows", -42),
        ("abs(-rows)", 42),
        ("not (rows == 42)", False),
        ("'al' in name", True),  # text on the right: a substring test
    ],
)
def test_evaluate_scalar(expr: str, expected: object) -> None:
    values = {"rows": 42, "columns": ["a", "b"], "name": "calls", "nothing": None}
    assert parse(expr).evaluate_scalar(values) == expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("rowz > 1", "unknown name `rowz`"),
        ("rows / 0", "division by zero"),
        ("name - 1", "cannot compute"),
        ("name > 1", "cannot compare"),
        ("name * 1000000000", "`*` needs numbers"),
        ("lower(rows)", "lower() needs text"),
        ("rows in 5", "needs a list"),
    ],
)
def test_scalar_errors(expr: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(expr).evaluate_scalar({"rows": 42, "name": "calls"})
    assert fragment in caught.value.message
    if fragment.startswith("unknown"):
        assert caught.value.hint == "did you mean `rows`?"


# -- parsing ---------------------------------------------------------------------------------------


def test_names_are_the_columns_read() -> None:
    expr = parse("duration > 3 and lower(intent) in ['a', null] or col('call id') == true")
    assert expr.names == frozenset({"duration", "intent", "call id"})
    assert expr.text.startswith("duration")
    assert parse("1 < 2").names == frozenset()
    assert parse("between(a, b, c)").names == frozenset({"a", "b", "c"})


def test_parse_is_cached_and_expressions_compare_by_text() -> None:
    assert parse("a > 1") is parse("a > 1")
    assert parse("a > 1") == Expression("a > 1", frozenset(), parse("a > 2")._root)
    assert str(parse("a > 1")) == "a > 1"


@pytest.mark.parametrize(
    ("text", "fragment", "culprit"),
    [
        ("__import__('os').system('true')", "attribute access", "__import__('os').system"),
        ("__import__('os')", "unknown function `__import__`", "__import__"),
        ("x.__class__", "attribute access", "x.__class__"),
        ("().__class__.__bases__[0]", "indexing", "().__class__.__bases__[0]"),
        ("intent.lower() == 'x'", "attribute access", "intent.lower"),
        ("(lambda: 1)()", "lambda", "lambda: 1"),
        ("[x for x in y]", "comprehensions", "[x for x in y]"),
        ("a in [x for x in y]", "comprehensions", "[x for x in y]"),
        ("any(x for x in y)", "unknown function", "any"),
        ("f'{a}' == 'b'", "f-strings", "f'{a}'"),
        ("a if b else c", "conditional", "a if b else c"),
        ("(a := 1)", "assignment", "a := 1"),
        ("a[0] > 1", "indexing", "a[0]"),
        ("a ** 2 > 1", "`**`", "a ** 2"),
        ("a & b", "`&`", "a & b"),
        ("a | b", "`|`", "a | b"),
        ("~a", "`~`", "~a"),
        ("a is None", "`is`", "a is None"),
        ("a in {1, 2}", "sets", "{1, 2}"),
        ("{'a': 1}", "dictionaries", "{'a': 1}"),
        ("b'x' == a", "bytes", "b'x'"),
        ("1j == a", "complex", "1j"),
        ("... == a", "not supported", "..."),
        ("a in [b, 1]", "only hold constants", "b"),
        ("[1, 2]", "only allowed on the right of `in`", "[1, 2]"),
        ("a, b", "only allowed on the right of `in`", "a, b"),
        ("lower(x=a)", "keyword", "x=a"),
        ("lower(*a)", "unpacking", "*a"),
        ("contains(a)", "takes 2 arguments, got 1", "contains(a)"),
        ("contains(a, b)", "must be a string in quotes", "b"),
        ("col(a)", "col() takes a column name in quotes", "a"),
        ("lowr(a) == 'x'", "unknown function `lowr`", "lowr"),
        ("a == 'x' and eval('1')", "unknown function `eval`", "eval"),
        ("getattr(a, 'b')", "unknown function `getattr`", "getattr"),
        ("lower(a)(b)", "only the listed functions can be called", "lower(a)"),
    ],
)
def test_refused(text: str, fragment: str, culprit: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    error = caught.value
    assert fragment in error.message
    assert text[error.offset : error.offset + error.width] == culprit


def test_unknown_function_hints() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("lowr(a) == 'x'")
    assert caught.value.hint == "did you mean `lower`?"
    with pytest.raises(ExpressionError) as caught:
        parse("frobnicate(a)")
    assert "isnull" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("text", "offset", "hint"),
    [
        ("a > ", 3, None),
        ("a >> ", None, None),
        ("duration > 3 && b", 14, "`and`"),
        ("a = 3", 2, "`==`"),
        ("!a", 0, "`not`"),
        ("a > 3 )", 6, None),
        ("  a >", 5, None),
        ("'é' == !x", 7, "`not`"),
    ],
)
def test_syntax_errors(text: str, offset: int | None, hint: str | None) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    error = caught.value
    assert error.message.startswith("invalid expression") or "not supported" in error.message
    assert 0 <= error.offset <= len(text)
    if offset is not None:
        assert error.offset == offset
    if hint is not None:
        assert hint in (error.hint or "")


def test_offsets_count_characters_not_bytes() -> None:
    text = "   'été' == x and y.z"
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert text[caught.value.offset :].startswith("y.z")
    multi = "a == 'ü'\n  and b[0]"
    with pytest.raises(ExpressionError) as caught:
        parse(multi)
    assert multi[caught.value.offset : caught.value.offset + caught.value.width] == "b[0]"


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty(text: str) -> None:
    with pytest.raises(ExpressionError, match="empty"):
        parse(text)


def test_limits() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("+".join(["a"] * 500) + " > 0")
    with pytest.raises(ExpressionError):
        parse("(" * 300 + "a" + ")" * 300)
    with pytest.raises(ExpressionError):
        parse("-" * 100_000 + "1")
    with pytest.raises(ExpressionError, match="longer than"):
        parse("a" * 200_000)
    with pytest.raises(ExpressionError):
        parse("1" * 5000 + " > a")  # more digits than Python converts
    with pytest.raises(ExpressionError):
        parse(42)  # type: ignore[arg-type]


def test_error_type() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("a >")
    assert isinstance(caught.value, SkitflowError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.problems[0].message == caught.value.message


def test_error_reaches_pydantic_with_its_offset() -> None:
    class Settings(BaseModel):
        expr: str

        @field_validator("expr")
        @classmethod
        def _parses(cls, value: str) -> str:
            parse(value)
            return value

    with pytest.raises(ValidationError) as caught:
        Settings(expr="a > 1 and b.c")
    original = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(original, ExpressionError)
    assert original.offset == 10


def test_parsing_does_not_import_pandas() -> None:
    code = (
        "import sys; from skitflow.expressions import parse; "
        "e = parse('a > 1 and b in [1]'); print(e.evaluate_scalar({'a': 2, 'b': 1})); "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


# -- properties ------------------------------------------------------------------------------------

EXPRESSION_ALPHABET = st.sampled_from(
    list("abxy019 .,()[]'\"+-*/%<>=!_")
    + [" and ", " or ", " not ", " in ", "null", "true", "lower(", "len(", "col(", "between("]
    + ["contains(", "isnull(", "__import__", ".__class__", "lambda", " if ", "f'", "**", "//"]
)
grammar_like = st.lists(EXPRESSION_ALPHABET, max_size=25).map("".join)


def parsed_or_refused(text: str) -> Expression | None:
    try:
        expression = parse(text)
    except ExpressionError as error:
        assert 0 <= error.offset <= len(text)
        assert error.message
        return None
    assert isinstance(expression, Expression)
    assert expression.text == text
    return expression


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_expression_error(text: str) -> None:
    parsed_or_refused(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grammar_like)
def test_expression_like_text_evaluates_or_raises_expression_error(text: str) -> None:
    expression = parsed_or_refused(text)
    if expression is None:
        return
    names = sorted(expression.names)
    for value in (3, "b", None, [1, "a"]):
        with contextlib.suppress(ExpressionError):
            expression.evaluate_scalar(dict.fromkeys(names, value))
    frame = pd.DataFrame(
        {
            name: ([1, 0, None] if i % 2 == 0 else pd.Series(["a", None, "b"], dtype="str"))
            for i, name in enumerate(names)
        }
    )
    try:
        mask = expression.evaluate_frame(frame)
    except ExpressionError:
        return
    assert mask.dtype == bool and len(mask) == len(frame)


# -- three-valued logic (SQL's rules for nulls) ----------------------------------------------------

T, F, U = True, False, None  # U: unknown

# left, right -> expected, for `and`, `or`; and `not` of each value
AND_TABLE = {(T, T): T, (T, F): F, (T, U): U, (F, T): F, (F, F): F, (F, U): F,
             (U, T): U, (U, F): F, (U, U): U}
OR_TABLE = {(T, T): T, (T, F): T, (T, U): T, (F, T): T, (F, F): F, (F, U): U,
            (U, T): T, (U, F): U, (U, U): U}
NOT_TABLE = {T: F, F: T, U: U}


def truth_frame() -> pd.DataFrame:
    """Every pair of truth values, one per row, as nullable booleans."""
    pairs = list(AND_TABLE)
    return pd.DataFrame({
        "p": pd.array([p for p, _ in pairs], dtype="boolean"),
        "q": pd.array([q for _, q in pairs], dtype="boolean"),
    })


@pytest.mark.parametrize(("op", "table"), [("and", AND_TABLE), ("or", OR_TABLE)])
def test_and_or_truth_tables(op: str, table: dict) -> None:
    frame = truth_frame()
    kept = rows(f"p {op} q", frame)
    assert kept == [i for i, pair in enumerate(table) if table[pair] is True]
    # `not (p op q)` keeps exactly the rows where the result is false: unknown stays unknown
    assert rows(f"not (p {op} q)", frame) == [i for i, pair in enumerate(table) if table[pair] is False]
    for (p, q), expected in table.items():
        assert parse(f"p {op} q").evaluate_scalar({"p": p, "q": q}) is expected


def test_not_truth_table() -> None:
    frame = pd.DataFrame({"p": pd.array([T, F, U], dtype="boolean")})
    assert rows("not p", frame) == [1]
    assert rows("not not p", frame) == [0]
    for value, expected in NOT_TABLE.items():
        assert parse("not p").evaluate_scalar({"p": value}) is expected


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_a_comparison_with_null_on_either_side_is_unknown(op: str) -> None:
    """Row 1 holds the nulls: neither the comparison nor its negation keeps it; row 0 is known."""
    frame = pd.DataFrame({"x": [1.0, None], "y": [2.0, 2.0], "s": pd.Series(["a", None], dtype="str")})
    for expr in (f"x {op} y", f"y {op} x", f"s {op} 'a'", f"'a' {op} s", f"x {op} 1", f"1 {op} x"):
        kept, negated = rows(expr, frame), rows(f"not ({expr})", frame)
        assert 1 not in kept and 1 not in negated, expr
        assert sorted(kept + negated) == [0], expr
    for left, right in ((None, 1), (1, None), (None, None), ("a", None)):
        assert parse(f"a {op} b").evaluate_scalar({"a": left, "b": right}) is None


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("x in ['a', 'b']", None), ("x not in ['a', 'b']", None),  # null in a list: unknown
        ("x in ['a', null]", True), ("x not in ['a', null]", False),  # a listed null matches it
        ("x == null", True), ("x != null", False), ("isnull(x)", True), ("notnull(x)", False),
        ("contains(x, 'a')", None), ("startswith(x, 'a')", None), ("endswith(x, 'a')", None),
        ("between(x, 1, 2)", None), ("between(1, x, 2)", None), ("between(5, x, 2)", False),
        ("x + 1", None), ("-x", None), ("abs(x)", None), ("lower(x)", None),
        ("x > 1 or true", True), ("x > 1 and false", False), ("x > 1 or false", None),
    ],
)
def test_null_operands_over_plain_values(expr: str, expected: object) -> None:
    assert parse(expr).evaluate_scalar({"x": None}) is expected


def test_not_equal_and_not_equals_agree_on_nulls(calls: pd.DataFrame) -> None:
    """The issue's example: both forms drop the row whose intent is null."""
    assert calls["intent"].isna().any()
    assert rows("not (intent == 'spam')", calls) == rows("intent != 'spam'", calls) == [1, 2, 4]
    assert rows("not (intent in ['spam'])", calls) == rows("intent not in ['spam']", calls)
    assert rows("not contains(intent, 'o')", calls) == [0, 4]  # null intent: unknown, dropped
    assert rows("not (duration > 3)", calls) == [0]  # null duration: unknown, dropped
    assert rows("isnull(intent) or not (intent == 'spam')", calls) == [1, 2, 3, 4]


def test_null_tests_work_on_every_dtype() -> None:
    frame = pd.DataFrame({
        "n": pd.array([1, None], dtype="Int64"),
        "f": pd.Series([1.0, None], dtype="float64[pyarrow]"),
        "s": pd.Series(["a", None], dtype="string[pyarrow]"),
        "o": pd.Series(["a", None], dtype=object),
        "b": pd.array([True, None], dtype="boolean"),
    })
    for column in frame.columns:
        assert rows(f"{column} == null", frame) == [1]
        assert rows(f"{column} != null", frame) == [0]
        assert rows(f"not ({column} == {column})", frame) == []  # row 0 false, row 1 unknown
        assert rows(f"{column} == {column}", frame) == [0]


def test_a_data_condition_holds_only_when_true() -> None:
    assert parse("rows > 10").holds({"rows": 42})
    assert not parse("rows > 100").holds({"rows": 42})
    assert not parse("rows > 10").holds({"rows": None})  # unknown is not true
    assert not parse("not (rows > 10)").holds({"rows": None})


# -- bounds: every hostile input is a clean error, fast and small ----------------------------------


@pytest.mark.parametrize(
    ("text", "fragment", "column"),
    [
        ("-" * 3000 + "rows > 1", "nested too deeply", 100),
        ("not " * 3000 + "a", "nested too deeply", 400),
        ("(" * 500 + "a" + ")" * 500, "nested too deeply", 100),
        ("-(" * 80 + "a" + ")" * 80, "nested too deeply", 100),
        ("[" * 150 + "]" * 150, "nested too deeply", 100),
        (" + ".join(["a"] * 1200), "more than 1000 operators", None),
        ("a" + ".b" * 5000, "more than 1000 operators", None),
        ("a" + "**-a" * 3000, "more than 1000 operators", None),
        ("a if b else " * 2000 + "a", "more than 1000 operators", None),
        ("a > " + "9" * 5000, "number is too long", 4),
        ("a > 1e999", "too large for a float", 4),
        ("a > 99999999999999999999", "integers go up to", 4),
        ("a > -9223372036854775808", "integers go up to", 5),
    ],
)
def test_bounds_are_clean_errors_with_a_column(text: str, fragment: str, column: int | None) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert fragment in caught.value.message
    if column is not None:
        assert caught.value.offset == column


def test_the_largest_allowed_values_still_parse() -> None:
    assert parse(f"a < {2**63 - 1}").evaluate_scalar({"a": 1}) is True
    assert parse("-" * 99 + "1 < a").names == {"a"}
    assert parse("a in [" + ", ".join(str(i) for i in range(5000)) + "]").evaluate_scalar({"a": 7})


def test_hostile_input_is_bounded_in_time_and_memory() -> None:
    """Every bound, run in a fresh process: under 1 s and 200 MiB all together."""
    code = r'''
import resource, sys, time
from skitflow.expressions import ExpressionError, parse
texts = ["-" * 3000 + "rows > 1", "(" * 500 + "a" + ")" * 500, "not " * 20000, "a" + "**a" * 30000,
         "+".join(["a"] * 30000), "a" + ".b" * 30000, "f" + "()" * 30000, "9" * 99000,
         "a if b else " * 9000, "lambda:" * 14000, "-(" * 30000, "'" + "x" * 99000 + "'" + " + a" * 200]
started = time.perf_counter()
for text in texts:
    try:
        parse(text)
    except ExpressionError:
        pass
    else:
        print("parsed", text[:20]); sys.exit(1)
seconds = time.perf_counter() - started
try:  # this process's own peak (ru_maxrss would include the forked parent's memory)
    status = open("/proc/self/status").read()
    peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
except (OSError, IndexError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(seconds, peak)
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, mebibytes = map(float, out.stdout.split())
    assert seconds < 1.0
    assert mebibytes < 200


def test_error_columns_in_messages() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("rows > 1 and b.c")
    assert str(caught.value) == "attribute access (`.name`) is not allowed (column 14 of the expression)"
    with pytest.raises(ExpressionError) as caught:
        parse("lowr(a)")
    assert str(caught.value) == "unknown function `lowr`"  # at column 1: nothing to add


# -- parameters and `when:` -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.holdout", ("holdout", "==", True)),
        ("not params.holdout", ("holdout", "==", False)),
        ("params.holdout == true", ("holdout", "==", True)),
        ("params.size >= -3", ("size", ">=", -3)),
        ("params.mode != 'fast'", ("mode", "!=", "fast")),
        ("params.mode == null", None),
        ("params.a == params.b", None),
        ("params.a > 1 and rows > 2", None),
        ("rows > 2", None),
    ],
)
def test_parameter_tests(text: str, expected: object) -> None:
    assert parse(text).parameter_test() == expected


def test_parameters_are_read_from_params_only() -> None:
    expression = parse("params.limit < rows")
    assert expression.params == {"limit"} and expression.names == {"rows"}
    assert expression.evaluate_scalar({"rows": 5, "params": {"limit": 3}}) is True
    with pytest.raises(ExpressionError, match="unknown parameter `limt`") as caught:
        parse("params.limt < rows").evaluate_scalar({"rows": 5, "params": {"limit": 3}})
    assert caught.value.hint == "did you mean `limit`?"
    with pytest.raises(ExpressionError, match="cannot be read here"):
        parse("params.limit > 1").evaluate_frame(pd.DataFrame({"x": [1]}))
    with pytest.raises(ExpressionError, match="attribute access"):
        parse("params.__class__")
    with pytest.raises(ExpressionError, match="attribute access"):
        parse("other.name")


WHEN_RECIPE = """apiVersion: skitflow/v1
name: w
parameters:
  holdout: {{type: bool, default: true}}
source:
  csv: {{path: data.csv}}
split:
  train_test: {{test_size: 0.2}}
  when: {when}
"""


def when_problems(when: str) -> list[str]:
    from skitflow.errors import SkitflowError as Error
    from skitflow.plan.planner import build_plan
    from skitflow.recipe.loader import load_recipe_text
    from skitflow.steps.registry import default_registry

    try:
        build_plan(load_recipe_text(WHEN_RECIPE.format(when=when), "r.yaml"), default_registry())
    except Error as error:
        return [f"{p.location.line}:{p.location.column}:{p.width} {p.message} | {p.hint}"
                for p in error.problems if p.location]
    return []


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ('"rows >> 1"', "9:10:9 invalid `when`: `>>` is not supported"),
        ("rows > 1 and colums", "9:22:6 invalid `when`: unknown name `colums`: data conditions"),
        ("\"'x' not in columns or params.holdot\"", "9:32:13 invalid `when`: unknown parameter `holdot`"),
        ("params.holdout and rows > 1", "9:9:27 invalid `when`: a condition on a parameter must be"),
        ('"rows > (1"', "9:17:1 invalid `when`: invalid expression"),
        ('"' + "-" * 3000 + 'rows > 1"', "9:110:1 invalid `when`: the expression is nested too deeply"),
        ('"' + "(" * 500 + 'rows" ', "9:110:1 invalid `when`: the expression is nested too deeply"),
        # escapes: the characters no longer line up with the file, so the message names the column
        ('"rows \\x3e 1 and b.c"', "9:9:21 invalid `when`: attribute access (`.name`) is not allowed"
         " (column 14 of the expression)"),
        ("|\n    rows > 1\n    and b.c", "9:9:1 invalid `when`: attribute access (`.name`) is not allowed"
         " (column 14 of the expression)"),
    ],
)
def test_when_errors_point_into_the_expression(when: str, expected: str) -> None:
    problems = when_problems(when)
    assert any(p.startswith(expected) for p in problems), problems


def test_when_accepts_what_the_runtime_evaluates() -> None:
    assert when_problems("\"'split' not in columns and rows > 1000\"") == []
    assert when_problems("params.holdout == true") == []
    assert when_problems("not (rows > 10)") == []


def test_the_cli_refuses_a_hostile_when_cleanly(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(WHEN_RECIPE.format(when='"' + "-" * 3000 + 'rows > 1"'))
    out = subprocess.run([sys.executable, "-m", "skitflow", "validate", str(recipe)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "nested too deeply" in out.stderr and "r.yaml:9:110" in out.stderr
    assert "Traceback" not in out.stderr


def test_one_parser_and_one_operator_table() -> None:
    """Only skitflow/expressions.py parses expression text or maps comparison operators."""
    import ast as python_ast
    from pathlib import Path

    import skitflow

    root = Path(skitflow.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "expressions.py" and path.parent == root:
            continue
        tree = python_ast.parse(path.read_text())
        for node in python_ast.walk(tree):
            if isinstance(node, python_ast.Attribute) and isinstance(node.value, python_ast.Name) \
                    and node.value.id == "ast" and node.attr in ("parse", "Eq", "Compare", "NotEq", "Gt"):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} ast.{node.attr}")
            if isinstance(node, python_ast.Dict) and {"==", "!=", "<", ">="} <= {
                    k.value for k in node.keys if isinstance(k, python_ast.Constant)}:
                offenders.append(f"{path.relative_to(root)}:{node.lineno} an operator table")
    assert offenders == []


def test_plan_compiler_and_runtime_use_the_shared_table() -> None:
    from skitflow import expressions
    from skitflow.compile import build
    from skitflow.plan import planner

    assert build.COMPARISONS is expressions.COMPARISONS
    with pytest.raises(expressions.ExpressionError):  # the one parser's error, not a copy's
        planner.parse_when("rows >", ())
    assert planner.parse_when("rows > 1", ()) == ("data", "rows > 1")
    assert planner.parse_when("params.a <= 2", ("a",)) == ("param", "a", "<=", 2)
