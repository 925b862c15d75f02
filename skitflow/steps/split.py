"""Split steps: turn one dataset into a train set and a test set.

Both steps keep every column (except `by_column`'s split column, when asked to drop it) and reset
the row index, so the halves write to Parquet without a stray index column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from skitflow.errors import StepFailed
from skitflow.steps.base import Columns, SplitStep, StepSettings

if TYPE_CHECKING:
    import pandas as pd

Size = float | int


def _check_size(value: Any, name: str) -> Any:
    """A size is a fraction in (0, 1) or a positive row count; `true` is neither."""
    if value is None:
        return value
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a fraction like 0.2 or a row count like 1000")
    if isinstance(value, float) and not 0.0 < value < 1.0:
        raise ValueError(
            f"`{name}` = {value} is not a fraction in (0, 1); write a row count as an integer"
        )
    if isinstance(value, int) and value < 1:
        raise ValueError(f"`{name}` = {value} must be at least 1 row")
    return value


class TrainTestSettings(StepSettings):
    """A random (optionally stratified) train/test split, reproducible for a given seed."""

    test_size: Size = Field(
        0.2, description="Fraction of rows for the test set (0 < f < 1), or a row count."
    )
    train_size: Size | None = Field(
        None, description="Fraction or row count for the train set; default: all other rows."
    )
    stratify: str | None = Field(
        None, description="Column whose class proportions both halves keep (e.g. the target)."
    )
    seed: int = Field(42, description="Random seed; the same seed gives the same split.")
    shuffle: bool = Field(
        True, description="Shuffle before splitting; false takes the last rows as the test set."
    )

    @field_validator("test_size", "train_size", mode="before")
    @classmethod
    def _valid_size(cls, value: Any, info: Any) -> Any:
        return _check_size(value, info.field_name)

    @model_validator(mode="after")
    def _consistent(self) -> TrainTestSettings:
        if self.stratify and not self.shuffle:
            raise ValueError(
                "`stratify` needs `shuffle: true`; an unshuffled split cannot stratify"
            )
        both_fractions = isinstance(self.test_size, float) and isinstance(self.train_size, float)
        if both_fractions and self.test_size + self.train_size > 1.0:  # type: ignore[operator]
            raise ValueError(
                f"`test_size` + `train_size` = {self.test_size + self.train_size:g} exceeds 1"  # type: ignore[operator]
            )
        return self


class TrainTest(SplitStep):
    """Split rows at random into train and test, optionally stratified by a column."""

    name = "train_test"
    Settings = TrainTestSettings
    example = {"test_size": 0.2, "stratify": "label", "seed": 42}

    def needs(self, settings: TrainTestSettings) -> list[str]:
        return [settings.stratify] if settings.stratify else []

    def run(
        self, frame: pd.DataFrame, settings: TrainTestSettings
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        import numpy as np
        from sklearn.model_selection import train_test_split

        n = len(frame)
        if n < 2:
            raise StepFailed(f"cannot split {n} row(s) into train and test; need at least 2")
        strata = None
        if settings.stratify:
            strata = _strata(frame, settings.stratify, settings.test_size)
        try:
            train_idx, test_idx = train_test_split(
                np.arange(n),
                test_size=settings.test_size,
                train_size=settings.train_size,
                random_state=settings.seed,
                shuffle=settings.shuffle,
                stratify=strata,
            )
        except ValueError as exc:  # sizes that do not fit the data, said in sklearn's words
            raise StepFailed(
                f"cannot split {n} rows with test_size={settings.test_size}: {exc}",
                hint="lower `test_size`/`train_size`, or give them as fractions",
            ) from exc
        from skitflow.util.overlap import side_by_side

        def rows(indices: Any) -> pd.DataFrame:
            return frame.iloc[indices].reset_index(drop=True)

        # the test rows are gathered on a second core (pyarrow's take releases the GIL)
        test, train = side_by_side(lambda: rows(test_idx), lambda: rows(train_idx))
        return train, test


def _strata(frame: pd.DataFrame, column: str, test_size: Size) -> Any:
    """Integer class codes for stratifying, after checking every class can go on both sides."""
    import numpy as np
    import pandas as pd

    if column not in frame.columns:
        raise StepFailed(f"stratify column `{column}` is not in the dataset")
    values = frame[column]
    codes, uniques = pd.factorize(values, sort=True)
    if (codes < 0).any():
        missing = int((codes < 0).sum())
        raise StepFailed(
            f"stratify column `{column}` has {missing} missing value(s)",
            hint="drop or fill them before the split (e.g. a `dropna` transform)",
        )
    counts = np.bincount(codes, minlength=len(uniques))
    rare = [(uniques[i], int(c)) for i, c in enumerate(counts) if c < 2]
    if rare:
        shown = ", ".join(f"`{label}` ({count} row)" for label, count in rare[:10])
        more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
        raise StepFailed(
            f"cannot stratify by `{column}`: class(es) with fewer than 2 rows: {shown}{more}",
            hint="drop or merge the rare classes, or remove `stratify`",
        )
    return codes


class ByColumnSettings(StepSettings):
    """Split by a column that already says which rows are train and which are test."""

    column: str = Field("split", description="Column holding each row's side, e.g. `split`.")
    train_values: list[str | int | bool] = Field(
        ["train"], description="Values of `column` that mark train rows."
    )
    test_values: list[str | int | bool] = Field(
        ["test"], description="Values of `column` that mark test rows."
    )
    drop_column: bool = Field(True, description="Remove `column` from both halves afterwards.")

    @model_validator(mode="after")
    def _disjoint(self) -> ByColumnSettings:
        if not self.train_values or not self.test_values:
            raise ValueError("`train_values` and `test_values` must each list at least one value")
        both = {str(v) for v in self.train_values} & {str(v) for v in self.test_values}
        if both:
            raise ValueError(f"values in both train_values and test_values: {sorted(both)}")
        return self


class ByColumn(SplitStep):
    """Split rows by the values of a column (e.g. `split` = train / test); other rows are dropped."""

    name = "by_column"
    Settings = ByColumnSettings
    example = {"column": "split", "train_values": ["train"], "test_values": ["test"]}

    def needs(self, settings: ByColumnSettings) -> list[str]:
        return [settings.column]

    def columns_after(self, settings: ByColumnSettings, columns: Columns) -> Columns:
        if columns is None or not settings.drop_column:
            return columns
        return [c for c in columns if c != settings.column]

    def run(
        self, frame: pd.DataFrame, settings: ByColumnSettings
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        if settings.column not in frame.columns:
            raise StepFailed(f"split column `{settings.column}` is not in the dataset")
        values = frame[settings.column]
        train_mask = _matches(values, settings.train_values)
        test_mask = _matches(values, settings.test_values)
        for side, mask, wanted in (
            ("train", train_mask, settings.train_values),
            ("test", test_mask, settings.test_values),
        ):
            if not mask.any():
                found = values.value_counts(dropna=False).head(10)
                listing = ", ".join(f"`{v}` ({n})" for v, n in found.items()) or "none (no rows)"
                raise StepFailed(
                    f"no {side} rows: `{settings.column}` has none of {wanted}; "
                    f"values found: {listing}",
                    hint=f"set `{side}_values` to the values that mark {side} rows",
                )
        if settings.drop_column:
            frame = frame.drop(columns=[settings.column])
        train = frame[train_mask.to_numpy()].reset_index(drop=True)
        test = frame[test_mask.to_numpy()].reset_index(drop=True)
        return train, test


def _matches(values: pd.Series, wanted: list[str | int | bool]) -> pd.Series:
    """Rows whose value is one of `wanted`, comparing as text too (YAML `1` matches "1")."""
    import pandas as pd

    mask = values.isin(wanted)
    if not (pd.api.types.is_string_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype)):
        mask |= values.astype(str).isin([str(v) for v in wanted])
    return mask


SPLITS: list[type[SplitStep]] = [TrainTest, ByColumn]
