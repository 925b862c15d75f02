"""Column helpers every step kind shares: a column-list setting, cast types and conversion.

Sources (`csv`, `sql`, `s3`, `labelstudio`) and transforms (`cast`) all convert columns the same
way, so the conversion lives here rather than in any one kind's module. pandas is imported
inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator

from skitflow.errors import StepFailed

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CastType", "ColumnList", "convert_column"]

CastType = Literal["int", "float", "str", "bool", "category", "datetime"]

_TRUE_WORDS = ("true", "t", "yes", "y", "1", "1.0", "on")
_FALSE_WORDS = ("false", "f", "no", "n", "0", "0.0", "off")


def _distinct(names: list[str]) -> list[str]:
    """Pydantic validator body: a column listed twice is a mistake worth reporting early."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"column `{name}` is listed twice")
        seen.add(name)
    return names


ColumnList = Annotated[list[str], AfterValidator(_distinct)]


def _bad_values(
    step: str, column: str, to: str, target: str, original: pd.Series, bad: pd.Series
) -> None:
    """Raise for the first value that could not be converted, with how many there are."""
    if not bad.any():
        return
    offenders = original[bad]
    count = len(offenders)
    sample = offenders.iloc[0]
    sample = sample.item() if hasattr(sample, "item") else sample  # np.int64(2) -> 2
    values = "1 value is" if count == 1 else f"{count} values are"
    raise StepFailed(
        f"{step}: column `{column}` cannot become {to}: {values} not {target}, "
        f"e.g. {sample!r} (row {offenders.index[0]})",
        hint="clean those values first (regex_replace, filter_rows) or drop them (dropna)",
    )


def convert_column(series: pd.Series, to: str, column: str, step: str = "cast") -> pd.Series:
    """Convert one column to a skitflow type; fail naming the column and a bad value.

    int becomes int64, or the nullable Int64 when the column has nulls; bool becomes bool or the
    nullable boolean likewise. Text is trimmed and read case-insensitively for numbers and
    booleans (true/false, yes/no, t/f, y/n, on/off, 1/0). Nulls stay null.
    """
    import pandas as pd

    api = pd.api.types
    if to == "str":
        return series.astype("str")
    if to == "category":
        return series.astype("category")
    if to == "datetime":
        if api.is_datetime64_any_dtype(series.dtype):
            return series
        converted = pd.to_datetime(series, errors="coerce")
        _bad_values(step, column, to, "a date/time", series, converted.isna() & series.notna())
        return converted
    if to == "bool":
        if api.is_bool_dtype(series.dtype):
            return series
        if api.is_numeric_dtype(series.dtype):
            _bad_values(
                step, column, to, "true/false", series, series.notna() & ~series.isin([0, 1])
            )
            flags = series
        else:
            words = series.astype("str").str.strip().str.lower()
            lookup = {**dict.fromkeys(_TRUE_WORDS, True), **dict.fromkeys(_FALSE_WORDS, False)}
            flags = words.map(lookup)
            _bad_values(step, column, to, "true/false", series, flags.isna() & series.notna())
        return flags.astype("boolean" if flags.isna().any() else bool)
    # int or float
    if api.is_bool_dtype(series.dtype) or api.is_numeric_dtype(series.dtype):
        numbers = series
    else:
        numbers = pd.to_numeric(series, errors="coerce")
        _bad_values(step, column, to, "a number", series, numbers.isna() & series.notna())
    if to == "float":
        return numbers.astype("float64")
    if api.is_float_dtype(numbers.dtype):
        _bad_values(
            step, column, to, "a whole number", series, numbers.notna() & (numbers % 1 != 0)
        )
    return numbers.astype("Int64" if numbers.isna().any() else "int64")
