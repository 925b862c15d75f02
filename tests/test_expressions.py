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
