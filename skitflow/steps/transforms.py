"""Built-in transforms: a DataFrame in, a DataFrame out.

Each transform states its column contract (`needs`, `columns_after`) so a recipe that uses a
column dropped or renamed earlier fails at compile time, and checks the same columns again when
it runs (the columns may not have been known before). Work is done with whole-column pandas
operations, never a Python loop over rows. Steps that drop rows renumber them from 0 (the index
of a dataset carries no meaning here, and a clean RangeIndex keeps written files free of an
index column).

pandas is imported inside `run`, so importing this module (as `skitflow validate` does) is cheap.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from skitflow.errors import StepFailed, did_you_mean
from skitflow.steps.base import Columns, FittedTransform, StepSettings, TransformStep
from skitflow.steps.columns import CastType, ColumnList, convert_column

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRANSFORMS"]

Category = str | int | float | bool  # a category value as YAML can write it


# -- shared helpers ---------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Sequence[str], step: str) -> None:
    """Fail clearly when the data lacks columns the step needs (unknown until run time)."""
    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return
    present = [str(c) for c in frame.columns]
    listed = ", ".join(f"`{c}`" for c in missing)
    hint = (
        did_you_mean(missing[0], present) or f"the data has: {', '.join(present) or 'no columns'}"
    )
    noun = "column" if len(missing) == 1 else "columns"
    raise StepFailed(f"{step}: {noun} {listed} not in the data", hint=hint)


def _renumber(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index(drop=True)


def _is_text(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_object_dtype(series.dtype) or isinstance(series.dtype, pd.StringDtype)


def _text_transform(
    frame: pd.DataFrame, columns: Sequence[str], step: str, change: Callable[[Any], pd.Series]
) -> pd.DataFrame:
    """Apply a `.str` operation to text columns, leaving nulls and non-text values as they were.

    Works for object columns and for pandas' string dtypes (pandas 3's default `str`, which may
    be backed by pyarrow). `.str` on an object column turns non-text values into NaN; those are
    put back, so a stray number in a text column survives.
    """
    import pandas as pd

    _require(frame, columns, step)
    changed = {}
    for column in columns:
        series = frame[column]
        if not _is_text(series):
            raise StepFailed(
                f"{step}: column `{column}` holds {series.dtype}, not text",
                hint="cast it first: `- cast: {mapping: {" + column + ": str}}`",
            )
        result = change(series.str)
        if pd.api.types.is_object_dtype(series.dtype):
            result = result.where(result.notna() | series.isna(), series)
        changed[column] = result
    return frame.assign(**changed)


# -- column selection -------------------------------------------------------------------------


class SelectColumns(TransformStep):
    """Keep only the listed columns, in the listed order.

    Every other column is dropped. Listing the columns a model should see is the easiest way to
    keep an identifier or a leaking column out of training.
    """

    name = "select_columns"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {"columns": ["utterance", "intent"]}

    class Settings(StepSettings):
        """Which columns to keep."""

        columns: ColumnList = Field(min_length=1, description="Columns to keep, in this order.")

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def columns_after(self, settings: Settings, columns: Columns) -> Columns:
        return list(settings.columns)

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        _require(frame, settings.columns, self.name)
        return frame[list(settings.columns)]


class DropColumns(TransformStep):
    """Remove the listed columns.

    A listed column that is not there is an error, which catches typos and re-ordered steps.
    """

    name = "drop_columns"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {"columns": ["call_id"]}

    class Settings(StepSettings):
        """Which columns to remove."""

        columns: ColumnList = Field(min_length=1, description="Columns to remove.")

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def columns_after(self, settings: Settings, columns: Columns) -> Columns:
        if columns is None:
            return None
        dropped = set(settings.columns)
        return [c for c in columns if c not in dropped]

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        _require(frame, settings.columns, self.name)
        return frame.drop(columns=list(settings.columns))


class RenameColumns(TransformStep):
    """Rename columns; the others keep their names and every column keeps its place.

    Later steps must use the new names; the compiler checks that they do.
    """

    name = "rename_columns"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {"mapping": {"utterance": "text", "intent": "label"}}

    class Settings(StepSettings):
        """Old name -> new name."""

        mapping: dict[str, str] = Field(
            min_length=1, description="Each column to rename, mapped to its new name."
        )

        @field_validator("mapping")
        @classmethod
        def _new_names_distinct(cls, mapping: dict[str, str]) -> dict[str, str]:
            if len(set(mapping.values())) != len(mapping):
                raise ValueError("two columns would get the same new name")
            if any(not new for new in mapping.values()):
                raise ValueError("a new column name cannot be empty")
            return mapping

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.mapping)

    def columns_after(self, settings: Settings, columns: Columns) -> Columns:
        if columns is None:
            return None
        return [settings.mapping.get(c, c) for c in columns]

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        _require(frame, list(settings.mapping), self.name)
        after = Counter(settings.mapping.get(c, c) for c in frame.columns)
        clash = next((c for c, count in after.items() if count > 1), None)
        if clash is not None:
            raise StepFailed(
                f"{self.name}: renaming would give two columns named `{clash}`",
                hint=f"drop or rename the existing `{clash}` first",
            )
        return frame.rename(columns=dict(settings.mapping))


# -- missing values and duplicates -------------------------------------------------------------


class Dropna(TransformStep):
    """Drop rows with missing values.

    By default a row goes when any of the listed columns (or, without a list, any column) is
    null; with `how: all` only when all of them are. Empty text is not null.
    """

    name = "dropna"
    streamable = True
    changes_rows = True
    example: ClassVar[Mapping[str, Any]] = {"columns": ["utterance", "intent"]}

    class Settings(StepSettings):
        """Which columns to look at and how many nulls make a row go."""

        columns: ColumnList | None = Field(
            None, min_length=1, description="Columns to check for nulls; all columns if omitted."
        )
        how: Literal["any", "all"] = Field(
            "any", description="`any`: drop a row with a null in any of them; `all`: in all."
        )

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns or ())

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        subset = list(settings.columns) if settings.columns else None
        _require(frame, subset or (), self.name)
        return _renumber(frame.dropna(subset=subset, how=settings.how))


class Fillna(FittedTransform):
    """Replace missing values with a given value, or with a statistic of the column.

    Either one value per column (`values`), or one `value` for the listed `columns`. Without
    `columns`, `value` fills every column it fits (a number fills numeric columns, text fills
    text columns) and leaves the others alone. A value that does not fit a listed column's type
    is an error rather than a silent change of the column's type. With `strategy` (mean, median,
    most_frequent) and `columns`, the fill values are learnt from the train rows after the split
    and kept in the model bundle.
    """

    name = "fillna"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {"values": {"intent": "unknown", "duration": 0}}

    class Settings(StepSettings):
        """What to fill with: `values`, or `value` (+ optional `columns`)."""

        values: dict[str, bool | int | float | str] | None = Field(
            None, min_length=1, description="Column -> the value its nulls become."
        )
        value: bool | int | float | str | None = Field(
            None, description="One value for every column in `columns` (all columns if omitted)."
        )
        columns: ColumnList | None = Field(
            None, min_length=1, description="With `value` or `strategy`: the columns to fill."
        )
        strategy: Literal["mean", "median", "most_frequent"] | None = Field(
            None,
            description="Fill `columns` with their mean, median or most frequent value, learnt "
            "from the train rows.",
        )

        @model_validator(mode="after")
        def _one_way(self) -> Fillna.Settings:
            given = [self.values is not None, self.value is not None, self.strategy is not None]
            if sum(given) > 1:
                raise ValueError(
                    "give either `values`, `value` (+ optional `columns`) or `strategy` "
                    "(+ `columns`), not several"
                )
            if not any(given):
                raise ValueError(
                    "give `values` (a mapping column -> value), `value`, or `strategy` with "
                    "`columns`"
                )
            if self.values is not None and self.columns is not None:
                raise ValueError("give either `values`, or `value` with optional `columns`")
            if self.strategy is not None and self.columns is None:
                raise ValueError("`strategy` needs `columns`: the columns to fill")
            return self

    def is_fitted(self, settings: Settings) -> bool:
        return settings.strategy is not None

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.values or settings.columns or ())

    def fit(self, frame: pd.DataFrame, settings: Settings) -> dict[str, Any]:
        """The fill value of each column: given, or the statistic of these rows."""
        if settings.strategy is None:
            return {}
        import pandas as pd

        columns = list(settings.columns or ())
        _require(frame, columns, self.name)
        values: dict[str, Any] = {}
        for column in columns:
            series = frame[column].dropna()
            numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
                series.dtype
            )
            if settings.strategy != "most_frequent" and not numeric:
                raise StepFailed(
                    f"{self.name}: `strategy: {settings.strategy}` needs numbers, but column "
                    f"`{column}` holds {frame[column].dtype}",
                    hint="use `strategy: most_frequent` for text and categories",
                )
            if series.empty:
                raise StepFailed(f"{self.name}: column `{column}` has no values to learn a fill from")
            if settings.strategy == "mean":
                value: Any = float(series.mean())
            elif settings.strategy == "median":
                value = float(series.median())
            else:  # the most frequent value; ties go to the smallest, as scikit-learn's imputer
                counts = series.value_counts(sort=False)
                value = sorted(counts[counts == counts.max()].index.tolist())[0]
            values[column] = value.item() if hasattr(value, "item") else value
        return {"values": values}

    def apply(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        fills: dict[Any, Any]
        if settings.strategy is not None:
            fills, strict = dict(state["values"]), True
        elif settings.values is not None:
            fills, strict = dict(settings.values), True
        elif settings.columns is not None:
            fills, strict = dict.fromkeys(settings.columns, settings.value), True
        else:
            fills, strict = dict.fromkeys(frame.columns, settings.value), False
        _require(frame, list(fills), self.name)
        filled = {}
        for column, value in fills.items():
            series = frame[column]
            if settings.strategy in ("mean", "median") and not _is_float(series):
                series = series.astype("float64")  # a mean of whole numbers is rarely whole
            fill = _fill_value(series, value)
            if fill is _NO_FIT:
                if strict:
                    raise StepFailed(
                        f"{self.name}: {value!r} does not fit column `{column}` ({series.dtype})",
                        hint="fill with a value of the column's type, or cast the column first",
                    )
                continue
            if series.hasnans:
                if series.dtype == "category" and fill not in series.cat.categories:
                    series = series.cat.add_categories([fill])
                filled[column] = series.fillna(fill)
        return frame.assign(**filled) if filled else frame


_NO_FIT = object()


def _is_float(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_float_dtype(series.dtype))


def _fill_value(series: pd.Series, value: Any) -> Any:
    """The value to fill `series` with, or _NO_FIT when it would change the column's type.

    pandas would silently turn an int column filled with text into an object column; that is
    almost always a mistake in the recipe, so it is refused instead.
    """
    import pandas as pd

    api = pd.api.types
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return value
    if api.is_bool_dtype(dtype):
        return value if isinstance(value, bool) else _NO_FIT
    if api.is_numeric_dtype(dtype):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _NO_FIT
        whole = isinstance(value, int) or value.is_integer()
        return value if api.is_float_dtype(dtype) or whole else _NO_FIT
    if isinstance(dtype, pd.StringDtype):
        return value if isinstance(value, str) else _NO_FIT
    if api.is_datetime64_any_dtype(dtype):
        try:
            return pd.Timestamp(value) if isinstance(value, str) else _NO_FIT
        except ValueError:
            return _NO_FIT
    return value


class DropDuplicates(TransformStep):
    """Drop repeated rows, keeping the first (or last) of each group.

    Rows are duplicates when they agree on `subset` (all columns if omitted).
    """

    name = "drop_duplicates"
    changes_rows = True
    example: ClassVar[Mapping[str, Any]] = {"subset": ["call_id"]}

    class Settings(StepSettings):
        """Which columns decide that two rows are the same, and which one stays."""

        subset: ColumnList | None = Field(
            None, min_length=1, description="Columns compared; all columns if omitted."
        )
        keep: Literal["first", "last"] = Field("first", description="Which duplicate stays.")

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.subset or ())

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        subset = list(settings.subset) if settings.subset else None
        _require(frame, subset or (), self.name)
        return _renumber(frame.drop_duplicates(subset=subset, keep=settings.keep))

    def streamer(self, settings: Settings) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
        """With `keep: first`, chunk by chunk: a row stays when its key is new in its chunk and
        was in no earlier chunk. The keys seen are kept exactly (no hashes), so the rows kept
        are pandas' own."""
        if settings.keep != "first":
            return None
        subset = list(settings.subset) if settings.subset else None
        seen = _SeenKeys()

        def step(frame: pd.DataFrame) -> pd.DataFrame:
            _require(frame, subset or (), self.name)
            return _renumber(frame[seen.first_seen(frame[subset] if subset else frame)])

        return step


class _SeenKeys:
    """The keys drop_duplicates saw in earlier chunks, exactly (no hashes): one integer column,
    or one ASCII text column, as sorted numpy arrays (8 bytes, or a byte a character, a key);
    any other key as a set of tuples. Nulls are one key, as in pandas."""

    def __init__(self) -> None:
        self.runs: list[Any] = []  # sorted arrays, each at least twice the next one's size
        self.kind = ""  # "int" | "bytes" for runs; "set" once keys are tuples
        self.null_seen = False
        self.keys: set[Any] = set()

    def first_seen(self, keys: pd.DataFrame) -> Any:
        """A bool mask: rows first in their chunk whose key no earlier chunk had."""
        import numpy as np

        values: Any
        nulls: Any
        values, nulls = self._sortable(keys) if self.kind != "set" else (None, None)
        if values is None:
            return self._first_in_set(keys, ~keys.duplicated(keep="first").to_numpy())
        # first of each key in the chunk: np.unique's indices come from a stable sort
        present = np.flatnonzero(~nulls)
        new_here = np.zeros(len(values), dtype=bool)
        new_here[present[np.unique(values[present], return_index=True)[1]]] = True
        if len(present) < len(values):
            new_here[np.flatnonzero(nulls)[0]] = True
        fresh = new_here.copy()
        fresh[nulls & new_here] = not self.null_seen
        self.null_seen = self.null_seen or bool((nulls & new_here).any())
        for run in self.runs:
            at = np.searchsorted(run, values).clip(max=len(run) - 1)
            fresh &= (run[at] != values) | nulls
        self._add(np.sort(values[fresh & ~nulls]))  # distinct keys: any sort will do
        return fresh

    def _sortable(self, keys: pd.DataFrame) -> tuple[Any, Any]:  # (values, nulls)
        """The key column as a numpy array that sorts and compares exactly, and its nulls;
        (None, None) when it has none (then every key goes to the set from now on)."""
        import numpy as np
        import pandas as pd

        if keys.shape[1] != 1:
            return None, None
        column = keys.iloc[:, 0]
        kind = ""
        if str(column.dtype) in ("int64", "int32", "int16", "int8"):
            kind, values = "int", column.to_numpy(dtype="int64")
        elif isinstance(column.dtype, pd.StringDtype) and not column.str.endswith("\x00").any():
            # numpy bytes drop trailing NULs: keys ending in one (or not ASCII) go to the set
            with contextlib.suppress(UnicodeEncodeError):
                kind, values = "bytes", np.array(column.to_numpy(dtype=object, na_value=""), dtype="S")
        if not kind or self.kind not in ("", kind):
            return None, None
        self.kind = kind
        if kind == "bytes" and self.runs and values.dtype.itemsize != self.runs[0].dtype.itemsize:
            width = max(values.dtype.itemsize, self.runs[0].dtype.itemsize)
            values = values.astype(f"S{width}")
            self.runs = [run.astype(f"S{width}") for run in self.runs]
        return values, column.isna().to_numpy()

    def _first_in_set(self, keys: pd.DataFrame, new_here: Any) -> Any:
        import numpy as np

        if self.kind != "set":  # keys seen so far move into the set
            decode = (lambda v: v.decode("ascii")) if self.kind == "bytes" else int
            self.keys.update((decode(v),) for run in self.runs for v in run)
            if self.null_seen:
                self.keys.add((None,))
            self.runs, self.kind = [], "set"
        nulls = keys.isna().to_numpy()
        rows = zip(*(np.where(nulls[:, i], None, keys.iloc[:, i].to_numpy(dtype=object))
                     for i in range(keys.shape[1])), strict=True)
        fresh = new_here.copy()
        for i, (row, first) in enumerate(zip(rows, new_here, strict=True)):
            if first:
                if row in self.keys:
                    fresh[i] = False
                else:
                    self.keys.add(row)
        return fresh

    def _add(self, values: Any) -> None:
        import numpy as np

        if len(values):
            self.runs.append(values)
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            # a stable sort of two sorted runs is a linear merge (timsort)
            self.runs[-1] = np.sort(np.concatenate([self.runs[-1], last]), kind="stable")


class FilterRows(TransformStep):
    """Keep the rows where an expression is true.

    The expression language is small and safe: comparisons, `and`/`or`/`not`, `in [...]`,
    arithmetic, `col("odd name")` and a few functions (isnull, notnull, len, lower, upper,
    contains, startswith, endswith, abs, between). Nulls follow SQL: a comparison with a null is
    unknown, `not` of unknown is unknown, and only rows where the condition is true are kept, so
    `intent != 'spam'` and `not (intent == 'spam')` both drop rows without an intent; test nulls
    with `x == null` or isnull(x).
    """

    name = "filter_rows"
    streamable = True
    changes_rows = True
    example: ClassVar[Mapping[str, Any]] = {"expr": "duration > 3 and intent != 'spam'"}

    class Settings(StepSettings):
        """The condition a row must meet to stay."""

        expr: str = Field(
            description="A condition over the columns, e.g. `duration > 3 and intent != 'spam'`."
        )

        @field_validator("expr")
        @classmethod
        def _parses(cls, expr: str) -> str:
            from skitflow.expressions import parse  # its parser: only for tasks that filter

            expression = parse(expr)  # raises ExpressionError (a ValueError) pointing into `expr`
            for name in sorted(expression.params):
                raise expression.error_at(
                    f"params.{name}",
                    f"filter_rows cannot read `params.{name}`: its expression reads columns",
                    "write the value itself, e.g. `duration > 3`",
                )
            return expr

    def needs(self, settings: Settings) -> Sequence[str]:
        from skitflow.expressions import parse

        return sorted(parse(settings.expr).names)

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        from skitflow.expressions import parse

        mask = parse(settings.expr).evaluate_frame(frame)
        return _renumber(frame[mask])


# -- types ----------------------------------------------------------------------------------------


class Cast(TransformStep):
    """Convert columns to another type: int, float, str, bool, category or datetime.

    Text is trimmed and read leniently (`" 12 "` is 12; `yes`/`no`, `true`/`false`, `1`/`0` are
    booleans). A value that cannot be converted stops the run with the column, a sample value and
    its row. int/bool columns with nulls become pandas' nullable Int64/boolean.
    """

    name = "cast"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {"mapping": {"duration": "float", "intent": "category"}}

    class Settings(StepSettings):
        """Column -> type."""

        mapping: dict[str, CastType] = Field(
            min_length=1,
            description="Each column to convert, mapped to int, float, str, bool, category or "
            "datetime.",
        )

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.mapping)

    def streamer(self, settings: Settings) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
        """Categories and datetime formats depend on all the rows: those casts take them all."""
        if any(to in ("category", "datetime") for to in settings.mapping.values()):
            return None
        return super().streamer(settings)

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        _require(frame, list(settings.mapping), self.name)
        converted = {
            column: convert_column(frame[column], to, column, self.name)
            for column, to in settings.mapping.items()
        }
        return frame.assign(**converted)


# -- text -----------------------------------------------------------------------------------------


class Lowercase(TransformStep):
    """Lower-case text columns.

    Nulls stay null; works on object and string columns alike.
    """

    name = "lowercase"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {"columns": ["utterance"]}

    class Settings(StepSettings):
        """Which text columns to lower-case."""

        columns: ColumnList = Field(min_length=1, description="Text columns to lower-case.")

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        return _text_transform(frame, settings.columns, self.name, lambda s: s.lower())


class Strip(TransformStep):
    """Remove leading and trailing whitespace (or the given characters) from text columns.

    Nulls stay null; works on object and string columns alike.
    """

    name = "strip"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {"columns": ["utterance"]}

    class Settings(StepSettings):
        """Which text columns to strip, and of what."""

        columns: ColumnList = Field(min_length=1, description="Text columns to strip.")
        chars: str | None = Field(
            None, description="Characters to remove from both ends; whitespace if omitted."
        )

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        return _text_transform(
            frame, settings.columns, self.name, lambda s: s.strip(settings.chars)
        )


class RegexReplace(TransformStep):
    r"""Replace every match of a regular expression in text columns.

    Python `re` syntax, in the pattern and in the replacement (`\1` or `\g<name>` for groups).
    The pattern is checked when the recipe is compiled. Nulls stay null.
    """

    name = "regex_replace"
    streamable = True
    example: ClassVar[Mapping[str, Any]] = {
        "columns": ["utterance"],
        "pattern": r"\s+",
        "replacement": " ",
    }

    class Settings(StepSettings):
        """What to look for, what to put instead, and where."""

        columns: ColumnList = Field(
            min_length=1, description="Text columns to change (a single name is accepted too)."
        )
        pattern: str = Field(min_length=1, description="A Python regular expression.")
        replacement: str = Field("", description="What each match becomes; empty deletes it.")
        ignore_case: bool = Field(False, description="Match regardless of upper/lower case.")

        @field_validator("columns", mode="before")
        @classmethod
        def _one_column(cls, value: Any) -> Any:
            return [value] if isinstance(value, str) else value

        @field_validator("pattern")
        @classmethod
        def _compiles(cls, pattern: str) -> str:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"invalid regular expression: {error}") from None
            return pattern

        @model_validator(mode="after")
        def _replacement_valid(self) -> RegexReplace.Settings:
            """Expand the replacement once against an empty match with the same groups, so a
            bad group reference (`\\3` with two groups) is caught at compile time too."""
            compiled = re.compile(self.pattern)
            names = {number: name for name, number in compiled.groupindex.items()}
            groups = "".join(
                f"(?P<{names[i]}>)" if i in names else "()" for i in range(1, compiled.groups + 1)
            )
            try:
                re.sub(groups, self.replacement, "", count=1)
            except (re.error, IndexError) as error:
                raise ValueError(f"invalid replacement: {error}") from None
            return self

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        # A compiled pattern makes pandas use Python's `re` for pyarrow strings too (instead of
        # RE2), so the data is matched by exactly the syntax that was validated.
        pattern = re.compile(settings.pattern, re.IGNORECASE if settings.ignore_case else 0)
        return _text_transform(
            frame,
            settings.columns,
            self.name,
            lambda s: s.replace(pattern, settings.replacement, regex=True),
        )


# -- encoding and scaling -------------------------------------------------------------------------


def _categories_valid(
    categories: dict[str, list[Category]] | None, columns: list[str]
) -> dict[str, list[Category]] | None:
    if categories is None:
        return None
    for column, values in categories.items():
        if column not in columns:
            raise ValueError(f"categories given for `{column}`, which is not in `columns`")
        if not values:
            raise ValueError(f"no categories given for `{column}`")
        if len(set(values)) != len(values):
            raise ValueError(f"a category of `{column}` is listed twice")
    return categories


class OneHot(FittedTransform):
    """Replace categorical columns by one 0/1 column per category.

    The new columns are named `<prefix><separator><value>` (prefix: the column's name) and come
    after the remaining columns; they are int8. Nulls get all zeros. Categories are the sorted
    distinct values seen, so a dataset decides which columns exist; declare `categories` to fix
    them instead (then unseen values get all zeros, train and serving data get the same columns,
    and later steps can be checked at compile time: without declared categories the columns
    after this step are unknown until it runs).
    """

    name = "one_hot"
    example: ClassVar[Mapping[str, Any]] = {"columns": ["channel"], "drop_first": False}

    class Settings(StepSettings):
        """Which columns to encode, how to name the new columns, and a size guard."""

        columns: ColumnList = Field(min_length=1, description="Categorical columns to encode.")
        prefix: str | dict[str, str] | None = Field(
            None,
            description="Prefix of the new columns' names: the column's name if omitted; a "
            "mapping column -> prefix when encoding several columns.",
        )
        separator: str = Field("_", description="Between the prefix and the value.")
        drop_first: bool = Field(
            False, description="Leave out the first category's column (it is implied by zeros)."
        )
        max_categories: int = Field(
            50,
            ge=1,
            description="Fail when a column has more distinct values than this (a free-text "
            "column would otherwise explode into thousands of columns).",
        )
        categories: dict[str, list[Category]] | None = Field(
            None,
            description="Column -> its categories, fixed in this order. Values outside them get "
            "all zeros.",
        )

        @model_validator(mode="after")
        def _consistent(self) -> OneHot.Settings:
            if isinstance(self.prefix, str) and len(self.columns) > 1:
                raise ValueError("with several columns, `prefix` must map each column to a prefix")
            if isinstance(self.prefix, dict):
                stray = [c for c in self.prefix if c not in self.columns]
                if stray:
                    raise ValueError(f"prefix given for `{stray[0]}`, which is not in `columns`")
            _categories_valid(self.categories, self.columns)
            return self

        def prefix_of(self, column: str) -> str:
            if isinstance(self.prefix, dict):
                return self.prefix.get(column, column)
            return self.prefix or column

        def names(self, column: str, categories: Sequence[Any]) -> list[str]:
            kept = categories[1:] if self.drop_first else categories
            return [f"{self.prefix_of(column)}{self.separator}{value}" for value in kept]

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def columns_after(self, settings: Settings, columns: Columns) -> Columns:
        declared = settings.categories or {}
        if columns is None or any(c not in declared for c in settings.columns):
            return None
        encoded = set(settings.columns)
        new = [n for c in settings.columns for n in settings.names(c, declared[c])]
        return [c for c in columns if c not in encoded] + new

    def fit(self, frame: pd.DataFrame, settings: Settings) -> dict[str, Any]:
        """The categories of each column: declared, or the sorted distinct values of these rows."""
        _require(frame, settings.columns, self.name)
        declared = settings.categories or {}
        learnt: dict[str, list[Any]] = {}
        for column in settings.columns:
            if column in declared:
                learnt[column] = list(declared[column])
                continue
            _, categories = _categorise(frame[column], None, column, self.name)
            if len(categories) > settings.max_categories:
                raise StepFailed(
                    f"{self.name}: column `{column}` has {len(categories)} distinct values, more "
                    f"than max_categories ({settings.max_categories})",
                    hint="raise max_categories, declare `categories`, use label_encode, or tfidf "
                    "for text",
                )
            learnt[column] = categories
        return {"categories": learnt}

    def apply(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        import pandas as pd

        _require(frame, settings.columns, self.name)
        declared = settings.categories or {}
        new: dict[str, Any] = {}
        for column in settings.columns:
            series = frame[column]
            categories = list(state["categories"][column])
            codes, _ = _categorise(series, categories, column, self.name, column in declared)
            names = settings.names(column, categories)
            first = 1 if settings.drop_first else 0
            for position, name in enumerate(names, start=first):
                if name in new or (name in frame.columns and name not in settings.columns):
                    raise StepFailed(
                        f"{self.name}: two columns would be named `{name}`",
                        hint="choose a different `prefix` or `separator`",
                    )
                new[name] = (codes == position).astype("int8")
        kept = frame.drop(columns=list(settings.columns))
        return pd.concat([kept, pd.DataFrame(new, index=frame.index)], axis=1)


def _categorise(
    series: pd.Series, declared: list[Category] | None, column: str, step: str,
    strict: bool = True,
) -> tuple[Any, list[Any]]:
    """(category code per row, -1 for null/unknown; the categories, as plain Python values).

    `strict`: no value among declared categories is an error (their type is probably wrong);
    categories learnt from train rows are not strict, as a batch of new rows may hold none.
    """
    import pandas as pd

    if declared is None:
        categorical = pd.Categorical(series)  # categories sorted
        return categorical.codes, categorical.categories.tolist()
    codes = pd.Index(declared).get_indexer(series)
    if strict and series.notna().any() and (codes < 0).all():
        raise StepFailed(
            f"{step}: no value of column `{column}` is among its declared categories",
            hint=f"values look like {series.dropna().iloc[0]!r}; check the categories' type",
        )
    return codes, list(declared)


class LabelEncode(FittedTransform):
    """Replace categorical values by integer codes 0, 1, 2, ... in sorted order of the values.

    The mapping is deterministic (sorted distinct values, or the declared `categories` in their
    order); nulls and values outside declared categories become -1. The mapping of each column
    is recorded in `frame.attrs["label_encoding"][column]` (a list: code -> value), which
    pandas keeps in Parquet files.
    """

    name = "label_encode"
    example: ClassVar[Mapping[str, Any]] = {"columns": ["intent"]}

    class Settings(StepSettings):
        """Which columns to encode and, optionally, their fixed categories."""

        columns: ColumnList = Field(min_length=1, description="Categorical columns to encode.")
        categories: dict[str, list[Category]] | None = Field(
            None, description="Column -> its categories; code i is the i-th. Others become -1."
        )

        @model_validator(mode="after")
        def _consistent(self) -> LabelEncode.Settings:
            _categories_valid(self.categories, self.columns)
            return self

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def fit(self, frame: pd.DataFrame, settings: Settings) -> dict[str, Any]:
        """The code -> value list of each column: declared, or the sorted values of these rows."""
        _require(frame, settings.columns, self.name)
        declared = settings.categories or {}
        learnt = {}
        for column in settings.columns:
            _, categories = _categorise(frame[column], declared.get(column), column, self.name)
            learnt[column] = list(categories)
        return {"categories": learnt}

    def apply(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        import pandas as pd

        _require(frame, settings.columns, self.name)
        declared = settings.categories or {}
        encoded, mappings = {}, {}
        for column in settings.columns:
            categories = list(state["categories"][column])
            codes, _ = _categorise(frame[column], categories, column, self.name, column in declared)
            encoded[column] = pd.Series(codes.astype("int64"), index=frame.index)
            mappings[column] = categories
        out = frame.assign(**encoded)
        out.attrs = {
            **frame.attrs,
            "label_encoding": {**frame.attrs.get("label_encoding", {}), **mappings},
        }
        return out


class Standardize(FittedTransform):
    """Scale numeric columns to mean 0 and standard deviation 1: (x - mean) / std.

    The standard deviation is the population one (ddof 0, as scikit-learn's StandardScaler) unless
    `ddof: 1`. A constant column becomes all 0 rather than NaN. Nulls are ignored and stay null.
    The mean and std used are recorded in `frame.attrs["standardize"][column]`.
    """

    name = "standardize"
    example: ClassVar[Mapping[str, Any]] = {"columns": ["duration"]}

    class Settings(StepSettings):
        """Which numeric columns to scale."""

        columns: ColumnList = Field(min_length=1, description="Numeric columns to scale.")
        ddof: Literal[0, 1] = Field(
            0, description="0: population standard deviation; 1: sample standard deviation."
        )

    def needs(self, settings: Settings) -> Sequence[str]:
        return list(settings.columns)

    def fit(self, frame: pd.DataFrame, settings: Settings) -> dict[str, Any]:
        """The mean and standard deviation of each column over these rows."""
        stats = {}
        for column, values in self._numbers(frame, settings).items():
            stats[column] = {"mean": float(values.mean()), "std": float(values.std(ddof=settings.ddof))}
        return {"columns": stats}

    def apply(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        scaled, stats = {}, {}
        for column, values in self._numbers(frame, settings).items():
            mean, std = state["columns"][column]["mean"], state["columns"][column]["std"]
            centred = values - mean
            scaled[column] = centred / std if std > 0 else centred * 0.0
            stats[column] = {"mean": float(mean), "std": float(std)}
        out = frame.assign(**scaled)
        out.attrs = {**frame.attrs, "standardize": {**frame.attrs.get("standardize", {}), **stats}}
        return out

    def _numbers(self, frame: pd.DataFrame, settings: Settings) -> dict[str, pd.Series]:
        import pandas as pd

        _require(frame, settings.columns, self.name)
        numbers = {}
        for column in settings.columns:
            series = frame[column]
            if not pd.api.types.is_numeric_dtype(series.dtype):
                raise StepFailed(
                    f"{self.name}: column `{column}` holds {series.dtype}, not numbers",
                    hint="cast it first: `- cast: {mapping: {" + column + ": float}}`",
                )
            numbers[column] = series.astype("float64")
        return numbers


class Sample(TransformStep):
    """Keep a random sample of rows, reproducibly.

    Give `n` (a number of rows) or `frac` (a share of them). The same seed and data always give
    the same rows, which keep their original order. Without replacement, asking for more rows
    than there are returns them all.
    """

    name = "sample"
    changes_rows = True
    example: ClassVar[Mapping[str, Any]] = {"n": 1000, "seed": 0}

    class Settings(StepSettings):
        """How many rows, and the randomness."""

        n: int | None = Field(None, ge=1, description="Number of rows to keep.")
        frac: float | None = Field(None, gt=0, description="Share of rows to keep, e.g. 0.1.")
        seed: int = Field(0, description="Seed of the random generator.")
        replace: bool = Field(False, description="Draw with replacement (a row may repeat).")

        @model_validator(mode="after")
        def _one_size(self) -> Sample.Settings:
            if (self.n is None) == (self.frac is None):
                raise ValueError("give exactly one of `n` and `frac`")
            if self.frac is not None and self.frac > 1 and not self.replace:
                raise ValueError("`frac` above 1 needs `replace: true`")
            return self

    def reads(self, settings: Settings) -> Sequence[str]:
        return []  # rows are drawn by position, whatever they hold

    def run(self, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
        import numpy as np

        rows = len(frame)
        size = settings.n if settings.n is not None else round((settings.frac or 0) * rows)
        if not settings.replace:
            size = min(size, rows)
        if rows == 0:
            return frame
        generator = np.random.default_rng(settings.seed)
        positions = np.sort(generator.choice(rows, size=size, replace=settings.replace))
        return _renumber(frame.iloc[positions])


TRANSFORMS: list[type[TransformStep]] = [
    SelectColumns,
    DropColumns,
    RenameColumns,
    Dropna,
    Fillna,
    DropDuplicates,
    FilterRows,
    Cast,
    Lowercase,
    Strip,
    RegexReplace,
    OneHot,
    LabelEncode,
    Standardize,
    Sample,
]
