"""`expect`: data expectations as a step, dbt tests for the rows that flow through a recipe.

An `expect` step checks the data where it stands in `steps:` (or, as the split's `expect:`
option, the train and test sets) and passes it on unchanged. Every check has a name
(`not_null.intent`, `range.duration`, ...), so a failure says which check failed, how many rows
broke it and up to five of them. `severity: error` stops the task, and with it everything
downstream, before training or publishing; `warn` logs the failures and records them. The task
that runs an expect writes every result as KFP Metrics (the number of failing rows per check, 0
when it passed), so they show in the Kubeflow UI.

Each check is one whole-column pandas operation; example rows are gathered only for failing
checks, so a passing expect on a million rows costs about what the same checks hand-written in
pandas cost (benchmarks/expect_checks.py).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from skitflow.errors import StepFailed
from skitflow.steps.base import StepSettings, TransformStep
from skitflow.steps.columns import CastType, ColumnList
from skitflow.util.durations import parse_duration

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CheckResult", "Expect", "ExpectationsFailed", "check_frame", "failure_message"]

#: example rows shown per failing check
MAX_EXAMPLES = 5
#: characters of one example value shown in a message (long texts are cut)
MAX_EXAMPLE_VALUE = 80
Value = str | int | float | bool


class Bounds(StepSettings):
    min: float | None = Field(None, description="Smallest allowed value (inclusive).")
    max: float | None = Field(None, description="Largest allowed value (inclusive).")

    @model_validator(mode="after")
    def _some(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is larger than `max` ({self.max})")
        return self


class ClassBalance(StepSettings):
    column: str = Field(description="The label column.")
    min_share: float = Field(gt=0, lt=1, description="Each class's smallest allowed share of rows.")


class Freshness(StepSettings):
    column: str = Field(description="A date/time column; its newest value is checked.")
    max_age: str | int = Field(description="Oldest allowed newest row, e.g. 6h or 2d.")

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str | int) -> str | int:
        parse_duration(value)
        return value


class ExpectSettings(StepSettings):
    """Checks on the data; at least one. Column names are checked against the plan's columns."""

    row_count: Bounds | None = Field(None, description="Number of rows: `{min, max}`.")
    not_null: ColumnList | None = Field(None, description="Columns without nulls.")
    unique: ColumnList | None = Field(None, description="Columns whose non-null values are distinct.")
    accepted_values: dict[str, list[Value]] | None = Field(
        None, description="Column -> the only values it may hold (nulls pass).")
    range: dict[str, Bounds] | None = Field(
        None, description="Column -> `{min, max}` its values lie in (nulls pass).")
    class_balance: ClassBalance | None = Field(
        None, description="Each class of `column` has at least `min_share` of the rows.")
    freshness: Freshness | None = Field(
        None, description="The newest value of `column` is at most `max_age` old.")
    columns: dict[str, CastType] | None = Field(
        None, description="Column -> the type it must have: int, float, str, bool, category or "
        "datetime.")
    severity: Literal["error", "warn"] = Field(
        "error", description="`error` stops the run before anything downstream; `warn` logs and "
        "records the failures.")

    @model_validator(mode="after")
    def _one_check(self) -> ExpectSettings:
        if not any(getattr(self, name) for name in CHECKS):
            raise ValueError("name at least one check: " + ", ".join(CHECKS))
        return self


CHECKS = ("row_count", "not_null", "unique", "accepted_values", "range", "class_balance",
          "freshness", "columns")


@dataclass
class CheckResult:
    """One named check on one dataset."""

    name: str
    passed: bool
    failing: int  # failing rows (or classes, for class_balance); 0 when passed
    detail: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)
    severity: str = "error"

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "failing": self.failing,
                "detail": self.detail, "severity": self.severity}


class ExpectationsFailed(StepFailed):
    """An `expect` with severity error found failing checks."""


class Expect(TransformStep):
    """Check the data (row count, nulls, uniqueness, values, ranges, balance, freshness, types).

    The data passes on unchanged. `severity: error` (the default) stops the run with every
    failing check and up to 5 example rows of each; `warn` logs them and records them in the
    task's metrics and the evaluator's report.
    """

    name = "expect"
    reports_checks = True
    example: ClassVar[Mapping[str, Any]] = {
        "row_count": {"min": 1000}, "not_null": ["utterance", "intent"], "unique": ["call_id"],
        "accepted_values": {"lang": ["en", "hi"]}, "range": {"duration": {"min": 0, "max": 3600}},
        "class_balance": {"column": "intent", "min_share": 0.02},
        "freshness": {"column": "created_at", "max_age": "2d"}, "columns": {"duration": "float"},
        "severity": "error",
    }
    Settings = ExpectSettings

    def needs(self, settings: ExpectSettings) -> Sequence[str]:
        return _columns_named(settings)

    def run(self, frame: pd.DataFrame, settings: ExpectSettings) -> pd.DataFrame:
        results = check_frame(frame, settings)
        failed = [r for r in results if not r.passed]
        if failed and settings.severity == "error":
            raise ExpectationsFailed(failure_message(failed, len(results)),
                                     hint="fix the data upstream, or set `severity: warn` on this "
                                     "expect to record the failures and go on")
        return frame


def _columns_named(settings: ExpectSettings) -> list[str]:
    names: list[str] = [*(settings.not_null or []), *(settings.unique or []),
                        *(settings.accepted_values or {}), *(settings.range or {}),
                        *(settings.columns or {})]
    if settings.class_balance:
        names.append(settings.class_balance.column)
    if settings.freshness:
        names.append(settings.freshness.column)
    return list(dict.fromkeys(names))


def check_frame(frame: pd.DataFrame, settings: ExpectSettings,
                now: _dt.datetime | None = None) -> list[CheckResult]:
    """Run every check the settings name, in a fixed order; never raises for failing data."""
    missing = [c for c in _columns_named(settings) if c not in frame.columns]
    if missing:  # the plan checks names when columns are known; they may not be before run time
        from skitflow.steps.transforms import _require

        _require(frame, missing, "expect")
    results: list[CheckResult] = []
    if settings.row_count:
        rows, bounds = len(frame), settings.row_count
        low = bounds.min is not None and rows < bounds.min
        high = bounds.max is not None and rows > bounds.max
        wanted = " and ".join(f"{k} {_number(v)}" for k, v in (("min", bounds.min), ("max", bounds.max))
                              if v is not None)
        results.append(CheckResult("row_count", not (low or high), int(low or high),
                                   f"{rows:,} rows (expected {wanted})"))
    for column in settings.not_null or []:
        results.append(_mask_check(frame, f"not_null.{column}", frame[column].isna(), "null"))
    for column in settings.unique or []:
        series = frame[column]
        mask = series.duplicated(keep=False) & series.notna()
        results.append(_mask_check(frame, f"unique.{column}", mask, "duplicated"))
    for column, values in (settings.accepted_values or {}).items():
        series = frame[column]
        mask = ~series.isin(values) & series.notna()
        shown = ", ".join(map(repr, values[:10])) + (" ..." if len(values) > 10 else "")
        results.append(_mask_check(frame, f"accepted_values.{column}", mask,
                                   f"not one of {shown}"))
    for column, bounds in (settings.range or {}).items():
        results.append(_range_check(frame, column, bounds))
    if settings.class_balance:
        results.append(_balance_check(frame, settings.class_balance))
    if settings.freshness:
        results.append(_freshness_check(frame, settings.freshness, now))
    for column, kind in (settings.columns or {}).items():
        dtype = frame[column].dtype
        ok = _has_type(dtype, kind)
        results.append(CheckResult(f"columns.{column}", ok, int(not ok),
                                   f"`{column}` is {dtype}" + ("" if ok else f", not {kind}")))
    for result in results:
        result.severity = settings.severity
    return results


def _mask_check(frame: pd.DataFrame, name: str, mask: pd.Series, what: str) -> CheckResult:
    failing = int(mask.sum())
    if not failing:
        return CheckResult(name, True, 0, f"no {what} values")
    return CheckResult(name, False, failing, f"{failing:,} of {len(frame):,} rows {_are(failing)} {what}",
                       _examples(frame[mask]))


def _range_check(frame: pd.DataFrame, column: str, bounds: Bounds) -> CheckResult:
    import pandas as pd

    series = frame[column]
    name = f"range.{column}"
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return CheckResult(name, False, len(frame), f"`{column}` holds {series.dtype}, not numbers")
    mask = pd.Series(False, index=frame.index)
    if bounds.min is not None:
        mask |= series < bounds.min
    if bounds.max is not None:
        mask |= series > bounds.max
    wanted = " and ".join(f"{'>=' if k == 'min' else '<='} {_number(v)}"
                          for k, v in (("min", bounds.min), ("max", bounds.max)) if v is not None)
    return _mask_check(frame, name, mask.fillna(False).astype(bool), f"outside {wanted}")


def _balance_check(frame: pd.DataFrame, balance: ClassBalance) -> CheckResult:
    name = f"class_balance.{balance.column}"
    shares = frame[balance.column].value_counts(normalize=True, dropna=True)
    small = shares[shares < balance.min_share]
    if shares.empty:
        return CheckResult(name, False, 1, f"`{balance.column}` has no values")
    if small.empty:
        return CheckResult(name, True, 0, f"{len(shares)} classes, smallest share "
                           f"{float(shares.min()):.3f}")
    listed = ", ".join(f"{_short(k)} {float(v):.3f}" for k, v in small.head(MAX_EXAMPLES).items())
    examples = [{"class": _plain(k), "share": round(float(v), 4)} for k, v in small.head(MAX_EXAMPLES).items()]
    return CheckResult(name, False, len(small), f"{len(small)} of {len(shares)} classes under "
                       f"{balance.min_share}: {listed}", examples)


def _freshness_check(frame: pd.DataFrame, fresh: Freshness, now: _dt.datetime | None) -> CheckResult:
    import pandas as pd

    name = f"freshness.{fresh.column}"
    series = frame[fresh.column]
    stamps = series if pd.api.types.is_datetime64_any_dtype(series.dtype) else pd.to_datetime(
        series, errors="coerce", utc=True)
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    newest = stamps.max()
    limit = _dt.timedelta(seconds=parse_duration(fresh.max_age))
    if pd.isna(newest):
        return CheckResult(name, False, 1, f"`{fresh.column}` has no date/time values")
    current = now or _dt.datetime.now(_dt.UTC)
    age = current - newest.to_pydatetime()
    if age <= limit:
        return CheckResult(name, True, 0, f"newest {newest.isoformat()} ({_age(age)} old)")
    latest = frame.loc[stamps.nlargest(MAX_EXAMPLES).index]
    return CheckResult(name, False, 1, f"newest {newest.isoformat()} is {_age(age)} old, over "
                       f"{fresh.max_age}", _examples(latest))


def _has_type(dtype: Any, kind: str) -> bool:
    import pandas as pd

    api = pd.api.types
    if kind == "int":
        return api.is_integer_dtype(dtype) and not api.is_bool_dtype(dtype)
    if kind == "float":
        return api.is_float_dtype(dtype)
    if kind == "bool":
        return api.is_bool_dtype(dtype)
    if kind == "category":
        return isinstance(dtype, pd.CategoricalDtype)
    if kind == "datetime":
        return api.is_datetime64_any_dtype(dtype)
    return api.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)


def _examples(rows: pd.DataFrame) -> list[dict[str, Any]]:
    head = rows.head(MAX_EXAMPLES)
    return [{"row": _plain(index), **{str(k): _plain(v) for k, v in record.items()}}
            for index, record in zip(head.index, head.to_dict("records"), strict=True)]


def _plain(value: Any) -> Any:
    """A JSON-friendly, short example value (numpy scalars, timestamps, long texts)."""
    import pandas as pd

    if value is None or (not isinstance(value, str | bytes | list | dict) and pd.isna(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str | int | float | bool):
        return _short(value) if isinstance(value, str) else value
    return _short(str(value))


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_EXAMPLE_VALUE else text[:MAX_EXAMPLE_VALUE - 3] + "..."


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _age(age: _dt.timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 48 else f"{hours:.1f}h"


def failure_message(failed: Sequence[CheckResult], total: int, where: str = "") -> str:
    """The failing checks, each with its example rows, as the run shows them."""
    lines = [f"expect{f' on {where}' if where else ''}: {len(failed)} of {total} checks failed"]
    for result in failed:
        lines.append(f"  - {result.name}: {result.detail}")
        lines.extend(f"      {json.dumps(example, default=str)}" for example in result.examples)
    return "\n".join(lines)


EXPECT_STEPS = [Expect]
