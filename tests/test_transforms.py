"""Built-in transforms on real DataFrames, and their column contracts."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from skitflow.errors import RecipeError, StepFailed
from skitflow.expressions import ExpressionError
from skitflow.plan.planner import build_plan
from skitflow.recipe.loader import load_recipe_text
from skitflow.steps.base import StepSettings, TransformStep
from skitflow.steps.columns import convert_column
from skitflow.steps.registry import default_registry
from skitflow.steps.transforms import TRANSFORMS

STEPS = {step.name: step for step in TRANSFORMS}
TEXT_DTYPES = [object, "str", "string[pyarrow]"]
CALL_COLUMNS = ["call_id", "utterance", "intent", "duration", "channel"]


def step(name: str) -> TransformStep:
    return STEPS[name]()


def settings(name: str, **values: Any) -> Any:
    return STEPS[name].Settings(**values)


def run(name: str, frame: pd.DataFrame, **values: Any) -> pd.DataFrame:
    return step(name).run(frame, settings(name, **values))


@pytest.fixture(params=TEXT_DTYPES, ids=str)
def text_dtype(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def calls(text_dtype: Any) -> pd.DataFrame:
    def text(*values: Any) -> pd.Series:
        return pd.Series(values, dtype=text_dtype)

    return pd.DataFrame(
        {
            "call_id": [1, 1, 2, 3, 4],
            "utterance": text("  Hello  There ", "  Hello  There ", None, "REFUND please", "ok"),
            "intent": text("greet", "greet", None, "refund", "spam"),
            "duration": [3.5, 3.5, None, 10.0, 1.0],
            "channel": text("phone", "phone", "chat", None, "chat"),
        }
    )


# -- the catalogue --------------------------------------------------------------------------------


def test_catalogue() -> None:
    assert list(STEPS) == [
        "select_columns", "drop_columns", "rename_columns", "dropna", "fillna",
        "drop_duplicates", "filter_rows", "cast", "lowercase", "strip", "regex_replace",
        "one_hot", "label_encode", "standardize", "sample",
    ]  # fmt: skip


@pytest.mark.parametrize("cls", TRANSFORMS, ids=lambda c: c.name)
def test_every_transform_is_documented_and_its_example_is_valid(cls: type[TransformStep]) -> None:
    assert cls.kind == "transform"
    assert issubclass(cls.Settings, StepSettings) and cls.Settings is not StepSettings
    assert cls.summary() and cls.summary().endswith(".")
    assert len((cls.__doc__ or "").strip().splitlines()) > 1
    assert cls.Settings.__doc__
    for name, field in cls.Settings.model_fields.items():
        assert field.description, f"{cls.name}.{name} has no description"
    parsed = cls.Settings(**cls.example)
    instance = cls()
    for column in instance.needs(parsed):
        assert isinstance(column, str)
    with pytest.raises(ValidationError):
        cls.Settings(**cls.example, unknown_setting=1)
    with pytest.raises(ValidationError):  # frozen
        parsed.__setattr__(next(iter(cls.Settings.model_fields)), None)


@pytest.mark.parametrize("cls", TRANSFORMS, ids=lambda c: c.name)
def test_contract_matches_what_run_does(cls: type[TransformStep]) -> None:
    """Running the example on data with the needed columns gives the promised columns."""
    frame = pd.DataFrame(
        {
            "call_id": [1, 2, 3],
            "utterance": ["A  b", "c", None],
            "intent": ["x", "y", "x"],
            "duration": [1.0, 5.0, 9.0],
            "channel": ["phone", "chat", "phone"],
        }
    )
    instance, parsed = cls(), cls.Settings(**cls.example)
    assert set(instance.needs(parsed)) <= set(frame.columns)
    out = instance.run(frame, parsed)
    promised = instance.columns_after(parsed, list(frame.columns))
    if promised is not None:
        assert list(out.columns) == promised
    if cls.name != "select_columns":  # the only one that knows its columns without input
        assert instance.columns_after(parsed, None) is None


def test_missing_column_at_run_time_names_it(calls: pd.DataFrame) -> None:
    with pytest.raises(StepFailed) as caught:
        run("select_columns", calls, columns=["intnt"])
    error = caught.value
    assert "`intnt`" in str(error) and "select_columns" in str(error)
    assert error.problems[0].hint == "did you mean `intent`?"


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("drop_columns", {"columns": ["nope"]}),
        ("rename_columns", {"mapping": {"nope": "x"}}),
        ("dropna", {"columns": ["nope"]}),
        ("fillna", {"values": {"nope": 1}}),
        ("drop_duplicates", {"subset": ["nope"]}),
        ("cast", {"mapping": {"nope": "int"}}),
        ("lowercase", {"columns": ["nope"]}),
        ("strip", {"columns": ["nope"]}),
        ("regex_replace", {"columns": ["nope"], "pattern": "a"}),
        ("one_hot", {"columns": ["nope"]}),
        ("label_encode", {"columns": ["nope"]}),
        ("standardize", {"columns": ["nope"]}),
    ],
)
def test_every_transform_checks_its_columns(
    calls: pd.DataFrame, name: str, values: dict[str, Any]
) -> None:
    assert step(name).needs(settings(name, **values)) == ["nope"]
    with pytest.raises(StepFailed, match="`nope`"):
        run(name, calls, **values)


# -- columns ----------------------------------------------------------------------------------------


def test_select_columns(calls: pd.DataFrame) -> None:
    out = run("select_columns", calls, columns=["intent", "call_id"])
    assert list(out.columns) == ["intent", "call_id"]
    assert out["intent"].dtype == calls["intent"].dtype
    s = settings("select_columns", columns=["intent", "call_id"])
    assert step("select_columns").columns_after(s, CALL_COLUMNS) == ["intent", "call_id"]
    assert step("select_columns").columns_after(s, None) == ["intent", "call_id"]


def test_column_lists_are_validated() -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        settings("select_columns", columns=["a", "a"])
    with pytest.raises(ValidationError):
        settings("select_columns", columns=[])
    with pytest.raises(ValidationError):
        settings("drop_columns", columns="a")


def test_drop_columns(calls: pd.DataFrame) -> None:
    out = run("drop_columns", calls, columns=["utterance", "channel"])
    assert list(out.columns) == ["call_id", "intent", "duration"]
    s = settings("drop_columns", columns=["utterance"])
    assert step("drop_columns").columns_after(s, ["a", "utterance"]) == ["a"]


def test_rename_columns(calls: pd.DataFrame) -> None:
    out = run("rename_columns", calls, mapping={"utterance": "text", "intent": "label"})
    assert list(out.columns) == ["call_id", "text", "label", "duration", "channel"]
    s = settings("rename_columns", mapping={"utterance": "text"})
    assert step("rename_columns").needs(s) == ["utterance"]
    assert step("rename_columns").columns_after(s, ["utterance", "x"]) == ["text", "x"]


def test_rename_refuses_duplicate_names(calls: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="same new name"):
        settings("rename_columns", mapping={"a": "x", "b": "x"})
    with pytest.raises(StepFailed, match="two columns named `intent`"):
        run("rename_columns", calls, mapping={"utterance": "intent"})


CONTRACT_RECIPE = """\
apiVersion: skitflow/v1
name: contract
source:
  csv: {path: calls.csv, columns: [call_id, utterance, intent, duration, channel]}
steps:
  - rename_columns: {mapping: {utterance: text}}
  - drop_columns: {columns: [channel]}
  - lowercase: {columns: [utterance]}
  - filter_rows: {expr: "len(text) > 3 and channel == 'phone'"}
sinks:
  - file: {path: out.csv}
"""


def test_contract_catches_a_column_used_after_it_was_dropped() -> None:
    """The planner walks the steps' contracts in recipe order and names where each column went."""
    with pytest.raises(RecipeError) as caught:
        build_plan(load_recipe_text(CONTRACT_RECIPE, "r.yaml"), default_registry())
    found = [(p.message, p.location.line if p.location else None, p.hint) for p in caught.value.problems]
    assert found == [
        ("`lowercase` needs column `utterance`, which does not exist here", 8,
         "`utterance` was removed by `rename_columns` at r.yaml:6:5; re-order or drop that step"),
        ("`filter_rows` needs column `channel`, which does not exist here", 9,
         "`channel` was removed by `drop_columns` at r.yaml:7:5; re-order or drop that step"),
    ]
    fixed = CONTRACT_RECIPE.replace("columns: [utterance]}", "columns: [text]}").replace(
        " and channel == 'phone'", "")
    plan = build_plan(load_recipe_text(fixed, "r.yaml"), default_registry())
    assert [c.step for c in plan.tasks[0].calls] == [
        "csv", "rename_columns", "drop_columns", "lowercase", "filter_rows"]


# -- missing values and duplicates ----------------------------------------------------------------


def test_dropna(calls: pd.DataFrame) -> None:
    out = run("dropna", calls, columns=["intent"])
    assert out["call_id"].tolist() == [1, 1, 3, 4]
    assert list(out.index) == [0, 1, 2, 3]
    assert run("dropna", calls)["call_id"].tolist() == [1, 1, 4]
    assert len(run("dropna", calls, columns=["intent", "duration"], how="all")) == 4
    assert step("dropna").needs(settings("dropna")) == []


def test_fillna_per_column(calls: pd.DataFrame) -> None:
    out = run("fillna", calls, values={"intent": "unknown", "duration": 0})
    assert out["intent"].tolist() == ["greet", "greet", "unknown", "refund", "spam"]
    assert out["duration"].tolist() == [3.5, 3.5, 0.0, 10.0, 1.0]
    assert out["intent"].dtype == calls["intent"].dtype
    assert calls["intent"].isna().sum() == 1  # the input is left alone


def test_fillna_one_value(calls: pd.DataFrame) -> None:
    out = run("fillna", calls, value="?", columns=["intent", "channel"])
    assert out["channel"].tolist()[3] == "?" and out["intent"].tolist()[2] == "?"
    everywhere = run("fillna", calls, value="n/a")  # fills text columns, leaves numbers alone
    assert everywhere["utterance"].tolist()[2] == "n/a"
    assert everywhere["duration"].isna().sum() == 1
    assert step("fillna").needs(settings("fillna", value=1)) == []


def test_fillna_refuses_a_value_that_changes_the_type(calls: pd.DataFrame) -> None:
    with pytest.raises(StepFailed, match="does not fit column `duration`"):
        run("fillna", calls, values={"duration": "none"})
    ints = pd.DataFrame({"n": pd.array([1, None], dtype="Int64")})
    with pytest.raises(StepFailed):
        run("fillna", ints, values={"n": 1.5})
    assert run("fillna", ints, values={"n": 7})["n"].tolist() == [1, 7]


def test_fillna_category_and_datetime() -> None:
    frame = pd.DataFrame(
        {
            "c": pd.Series(["a", None], dtype="category"),
            "d": pd.to_datetime(pd.Series(["2024-01-01", None])),
        }
    )
    out = run("fillna", frame, values={"c": "other", "d": "2024-02-01"})
    assert out["c"].tolist() == ["a", "other"] and out["c"].dtype == "category"
    assert out["d"].tolist()[1] == pd.Timestamp("2024-02-01")


def test_fillna_settings() -> None:
    with pytest.raises(ValidationError, match="either"):
        settings("fillna", values={"a": 1}, value=2)
    with pytest.raises(ValidationError, match="give `values`"):
        settings("fillna")
    assert settings("fillna", value=True).value is True
    assert settings("fillna", value=1).value == 1 and type(settings("fillna", value=1).value) is int


def test_drop_duplicates(calls: pd.DataFrame) -> None:
    assert run("drop_duplicates", calls)["call_id"].tolist() == [1, 2, 3, 4]
    out = run("drop_duplicates", calls.assign(n=range(5)), subset=["call_id"], keep="last")
    assert out["n"].tolist() == [1, 2, 3, 4] and list(out.index) == [0, 1, 2, 3]
    with pytest.raises(ValidationError):
        settings("drop_duplicates", keep="none")


# -- filter_rows -------------------------------------------------------------------------------------


def test_filter_rows(calls: pd.DataFrame) -> None:
    out = run("filter_rows", calls, expr="duration > 3 and intent != 'spam'")
    assert out["call_id"].tolist() == [1, 1, 3]
    assert list(out.index) == [0, 1, 2]
    out = run("filter_rows", calls, expr="contains(lower(utterance), 'refund') or isnull(intent)")
    assert out["call_id"].tolist() == [2, 3]


def test_filter_rows_contract() -> None:
    s = settings("filter_rows", expr="duration > 3 and col('call id') in [1, 2] and isnull(x)")
    assert step("filter_rows").needs(s) == ["call id", "duration", "x"]


def test_filter_rows_bad_expression_is_a_settings_error() -> None:
    with pytest.raises(ValidationError) as caught:
        settings("filter_rows", expr="duration > 3 && x")
    error = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(error, ExpressionError) and "duration > 3 && x"[error.offset] == "&"
    with pytest.raises(ValidationError, match="attribute access"):
        settings("filter_rows", expr="x.__class__")


def test_filter_rows_unknown_column_at_run_time(calls: pd.DataFrame) -> None:
    with pytest.raises(ExpressionError, match="unknown column `duraton`"):
        run("filter_rows", calls, expr="duraton > 1")


# -- cast ----------------------------------------------------------------------------------------------


def test_cast(text_dtype: Any) -> None:
    frame = pd.DataFrame(
        {
            "i": pd.Series([" 1", "2", None], dtype=text_dtype),
            "f": pd.Series(["1.5", "2", None], dtype=text_dtype),
            "b": pd.Series(["Yes", "false", "1"], dtype=text_dtype),
            "c": pd.Series(["x", "y", "x"], dtype=text_dtype),
            "d": pd.Series(["2024-01-02", None, "2024-03-04"], dtype=text_dtype),
            "n": [1.0, 2.0, 3.0],
            "s": [1, 2, 3],
        }
    )
    mapping = {"i": "int", "f": "float", "b": "bool", "c": "category", "d": "datetime"}
    out = run("cast", frame, mapping={**mapping, "n": "int", "s": "str"})
    assert out["i"].dtype == "Int64" and out["i"].tolist()[:2] == [1, 2]
    assert out["f"].dtype == "float64" and out["f"].tolist()[:2] == [1.5, 2.0]
    assert out["b"].dtype == bool and out["b"].tolist() == [True, False, True]
    assert out["c"].dtype == "category"
    assert pd.api.types.is_datetime64_any_dtype(out["d"]) and out["d"].isna().tolist()[1]
    assert out["n"].dtype == "int64" and out["s"].tolist() == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("values", "to", "bad"),
    [
        (["1", "two", "3", "four"], "int", "'two' (row 1)"),
        (["1", "2.5"], "int", "'2.5' (row 1)"),
        ([1.0, 2.5], "int", "2.5 (row 1)"),
        (["yes", "maybe"], "bool", "'maybe' (row 1)"),
        ([0, 2], "bool", "2 (row 1)"),
        (["2024-01-01", "someday"], "datetime", "'someday' (row 1)"),
        (["x"], "float", "'x' (row 0)"),
    ],
)
def test_cast_failure_names_column_and_value(values: list[Any], to: str, bad: str) -> None:
    frame = pd.DataFrame({"col": values})
    with pytest.raises(StepFailed) as caught:
        run("cast", frame, mapping={"col": to})
    message = str(caught.value)
    assert f"column `col` cannot become {to}" in message
    assert bad in message
    if values[0] == "1" and to == "int" and len(values) == 4:
        assert "2 values are not" in message


def test_cast_settings() -> None:
    with pytest.raises(ValidationError):
        settings("cast", mapping={"a": "integer"})


def test_convert_column_keeps_nulls() -> None:
    flags = convert_column(pd.Series(["t", None, "OFF"], dtype=object), "bool", "x")
    assert flags.dtype == "boolean" and flags.tolist()[0] is True and flags.isna().tolist()[1]


# -- text -----------------------------------------------------------------------------------------------


def test_lowercase(calls: pd.DataFrame) -> None:
    out = run("lowercase", calls, columns=["utterance", "intent"])
    assert out["utterance"].tolist()[3] == "refund please"
    assert out["utterance"].isna().tolist() == [False, False, True, False, False]
    assert out["utterance"].dtype == calls["utterance"].dtype
    assert calls["utterance"].tolist()[3] == "REFUND please"


def test_text_steps_keep_non_text_values_in_object_columns() -> None:
    frame = pd.DataFrame({"mixed": pd.Series(["ABC", 5, None], dtype=object)})
    out = run("lowercase", frame, columns=["mixed"])
    assert out["mixed"].tolist()[:2] == ["abc", 5] and out["mixed"].isna().tolist()[2]


def test_text_steps_refuse_numbers(calls: pd.DataFrame) -> None:
    with pytest.raises(StepFailed, match="column `duration` holds float64, not text"):
        run("lowercase", calls, columns=["duration"])


def test_strip(calls: pd.DataFrame) -> None:
    out = run("strip", calls, columns=["utterance"])
    assert out["utterance"].tolist()[0] == "Hello  There"
    assert out["utterance"].isna().tolist()[2]
    dotted = pd.DataFrame({"t": pd.Series(["..a.", None], dtype=calls["intent"].dtype)})
    assert run("strip", dotted, columns=["t"], chars=".")["t"].tolist()[0] == "a"


def test_regex_replace(calls: pd.DataFrame) -> None:
    out = run("regex_replace", calls, columns="utterance", pattern=r"\s+", replacement=" ")
    assert out["utterance"].tolist()[0] == " Hello There "
    assert out["utterance"].isna().tolist()[2]
    grouped = run(
        "regex_replace",
        calls,
        columns=["intent"],
        pattern=r"(?P<first>\w)(\w*)",
        replacement=r"\2\g<first>",
    )
    assert grouped["intent"].tolist()[0] == "reetg"
    upper = run("regex_replace", calls, columns=["utterance"], pattern="refund", ignore_case=True)
    assert upper["utterance"].tolist()[3] == " please"


def test_regex_replace_uses_python_syntax_on_every_dtype(calls: pd.DataFrame) -> None:
    """Lookbehind and Unicode classes are Python `re` features RE2 (pyarrow) lacks."""
    frame = pd.DataFrame({"t": pd.Series(["ab", "٣b", None], dtype=calls["intent"].dtype)})
    out = run("regex_replace", frame, columns=["t"], pattern=r"(?<=a)b|\d", replacement="X")
    assert out["t"].tolist()[:2] == ["aX", "Xb"]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"pattern": "(unclosed"}, "invalid regular expression"),
        ({"pattern": "(a)", "replacement": r"\2"}, "invalid replacement"),
        ({"pattern": "a", "replacement": r"\g<name>"}, "invalid replacement"),
    ],
)
def test_regex_replace_is_checked_at_compile_time(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        settings("regex_replace", columns=["t"], **values)


# -- encoding and scaling ---------------------------------------------------------------------------


def test_one_hot(calls: pd.DataFrame) -> None:
    out = run("one_hot", calls, columns=["channel"])
    assert list(out.columns) == [
        "call_id",
        "utterance",
        "intent",
        "duration",
        "channel_chat",
        "channel_phone",
    ]
    assert out["channel_chat"].tolist() == [0, 0, 1, 0, 1]
    assert out["channel_phone"].tolist() == [1, 1, 0, 0, 0]  # null: all zeros
    assert out["channel_chat"].dtype == "int8"
    assert (
        step("one_hot").columns_after(settings("one_hot", columns=["channel"]), CALL_COLUMNS)
        is None
    )


def test_one_hot_declared_categories_give_a_known_contract(calls: pd.DataFrame) -> None:
    values = {
        "columns": ["channel", "intent"],
        "categories": {"channel": ["phone", "chat", "email"], "intent": ["spam", "greet"]},
        "prefix": {"intent": "is"},
        "separator": ":",
        "drop_first": True,
    }
    out = run("one_hot", calls, **values)
    promised = step("one_hot").columns_after(settings("one_hot", **values), CALL_COLUMNS)
    assert promised == [
        "call_id",
        "utterance",
        "duration",
        "channel:chat",
        "channel:email",
        "is:greet",
    ]
    assert list(out.columns) == promised
    assert out["channel:email"].tolist() == [0] * 5  # declared but unseen
    assert out["is:greet"].tolist() == [1, 1, 0, 0, 0]  # refund is not declared: zeros


def test_one_hot_guards(calls: pd.DataFrame) -> None:
    with pytest.raises(StepFailed, match="3 distinct values, more than max_categories"):
        run("one_hot", calls, columns=["intent"], max_categories=2)
    with pytest.raises(StepFailed, match="no value of column `channel`"):
        run("one_hot", calls, columns=["channel"], categories={"channel": [1, 2]})
    with pytest.raises(StepFailed, match="two columns would be named `channel_x`"):
        run("one_hot", calls.assign(channel_x=0, channel="x"), columns=["channel"])
    with pytest.raises(ValidationError, match="prefix"):
        settings("one_hot", columns=["a", "b"], prefix="p")
    with pytest.raises(ValidationError, match="not in `columns`"):
        settings("one_hot", columns=["a"], categories={"b": ["x"]})


def test_label_encode(calls: pd.DataFrame) -> None:
    out = run("label_encode", calls, columns=["intent", "channel"])
    assert out["intent"].tolist() == [0, 0, -1, 1, 2]  # greet, refund, spam; null -1
    assert out["intent"].dtype == "int64"
    assert out.attrs["label_encoding"] == {
        "intent": ["greet", "refund", "spam"],
        "channel": ["chat", "phone"],
    }
    assert calls.attrs == {}
    fixed = run("label_encode", calls, columns=["intent"], categories={"intent": ["spam", "greet"]})
    assert fixed["intent"].tolist() == [1, 1, -1, -1, 0]
    assert fixed.attrs["label_encoding"]["intent"] == ["spam", "greet"]


def test_label_encode_is_deterministic_whatever_the_row_order(calls: pd.DataFrame) -> None:
    shuffled = calls.sample(frac=1, random_state=3).reset_index(drop=True)
    a = run("label_encode", calls, columns=["intent"]).attrs["label_encoding"]
    b = run("label_encode", shuffled, columns=["intent"]).attrs["label_encoding"]
    assert a == b


def test_attrs_survive_parquet(tmp_path: Any, calls: pd.DataFrame) -> None:
    out = run("label_encode", calls, columns=["intent"])
    out.to_parquet(tmp_path / "x.parquet")
    assert pd.read_parquet(tmp_path / "x.parquet").attrs["label_encoding"]["intent"][0] == "greet"


def test_standardize(calls: pd.DataFrame) -> None:
    out = run("standardize", calls, columns=["duration"])
    values = out["duration"].dropna()
    assert abs(values.mean()) < 1e-12
    assert values.std(ddof=0) == pytest.approx(1.0)
    assert out["duration"].isna().tolist()[2]
    stats = out.attrs["standardize"]["duration"]
    assert stats["mean"] == pytest.approx(4.5) and stats["std"] == pytest.approx(
        np.std([3.5, 3.5, 10, 1])
    )
    sample = run("standardize", calls, columns=["duration"], ddof=1)["duration"].dropna()
    assert sample.std(ddof=1) == pytest.approx(1.0)


def test_standardize_constant_and_nullable_columns() -> None:
    frame = pd.DataFrame({"c": [2, 2, 2], "n": pd.array([1, None, 3], dtype="Int64")})
    out = run("standardize", frame, columns=["c", "n"])
    assert out["c"].tolist() == [0.0, 0.0, 0.0]
    assert out["n"].tolist()[0] == pytest.approx(-1.0) and np.isnan(out["n"].tolist()[1])


def test_standardize_refuses_text(calls: pd.DataFrame) -> None:
    with pytest.raises(StepFailed, match="not numbers"):
        run("standardize", calls, columns=["intent"])


def test_sample(calls: pd.DataFrame) -> None:
    first = run("sample", calls.assign(n=range(5)), n=3)
    again = run("sample", calls.assign(n=range(5)), n=3)
    assert first["n"].tolist() == again["n"].tolist()
    assert first["n"].tolist() == sorted(first["n"].tolist()) and len(first) == 3
    assert list(first.index) == [0, 1, 2]
    other = run("sample", calls.assign(n=range(5)), n=3, seed=1)
    assert len(other) == 3
    assert len(run("sample", calls, n=100)) == 5
    assert len(run("sample", calls, frac=0.4)) == 2
    assert len(run("sample", calls, n=20, replace=True)) == 20
    assert len(run("sample", calls.iloc[:0], n=3)) == 0


def test_sample_settings() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        settings("sample")
    with pytest.raises(ValidationError, match="exactly one"):
        settings("sample", n=1, frac=0.5)
    with pytest.raises(ValidationError, match="replace"):
        settings("sample", frac=2)
    with pytest.raises(ValidationError):
        settings("sample", n=0)


def test_transforms_do_not_modify_their_input(calls: pd.DataFrame) -> None:
    before = calls.copy(deep=True)
    for name in ("lowercase", "strip"):
        run(name, calls, columns=["utterance"])
    run("fillna", calls, value="x")
    run("cast", calls, mapping={"call_id": "float"})
    run("standardize", calls, columns=["duration"])
    pd.testing.assert_frame_equal(calls, before)


def test_importing_transforms_does_not_import_pandas() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import skitflow.steps.transforms, skitflow.steps.sources, "
        "skitflow.steps.sinks; print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
