"""The split steps: sizes, stratification, determinism, column contracts and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from skitflow.errors import StepFailed
from skitflow.steps.split import SPLITS, ByColumn, TrainTest


def tickets(rows: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "label": rng.choice(["billing", "technical", "account"], size=rows, p=[0.6, 0.3, 0.1]),
        }
    )


def split(frame: pd.DataFrame, **settings: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    return TrainTest().run(frame, TrainTest.Settings(**settings))


def test_registered() -> None:
    assert {s.name for s in SPLITS} == {"train_test", "by_column"}


def test_fraction_and_count_sizes() -> None:
    frame = tickets(1000)
    train, test = split(frame, test_size=0.2)
    assert (len(train), len(test)) == (800, 200)
    train, test = split(frame, test_size=150)
    assert (len(train), len(test)) == (850, 150)
    train, test = split(frame, test_size=0.25, train_size=0.5)
    assert (len(train), len(test)) == (500, 250)


def test_rows_are_partitioned_and_index_reset() -> None:
    frame = tickets(500)
    train, test = split(frame, test_size=0.3)
    assert list(train.index) == list(range(len(train)))
    both = pd.concat([train, test]).sort_values("x").reset_index(drop=True)
    pd.testing.assert_frame_equal(both, frame.sort_values("x").reset_index(drop=True))


def test_stratified_keeps_class_proportions() -> None:
    frame = tickets(2000)
    train, test = split(frame, test_size=0.2, stratify="label")
    whole = frame["label"].value_counts(normalize=True)
    for half in (train, test):
        shares = half["label"].value_counts(normalize=True)
        assert (shares - whole).abs().max() < 0.005


def test_same_seed_same_split_other_seed_other_split() -> None:
    frame = tickets(400)
    first, _ = split(frame, stratify="label", seed=3)
    again, _ = split(frame, stratify="label", seed=3)
    other, _ = split(frame, stratify="label", seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not first["x"].equals(other["x"])


def test_no_shuffle_takes_the_last_rows_as_test() -> None:
    frame = tickets(10)
    train, test = split(frame, test_size=3, shuffle=False)
    assert test["x"].tolist() == frame["x"].iloc[7:].tolist()


def test_rare_class_is_a_clear_error() -> None:
    frame = tickets(100)
    frame.loc[0, "label"] = "lonely"
    with pytest.raises(StepFailed, match=r"fewer than 2 rows: `lonely` \(1 row\)"):
        split(frame, stratify="label")


def test_missing_stratify_column_and_missing_values() -> None:
    frame = tickets(50)
    with pytest.raises(StepFailed, match="`nope` is not in the dataset"):
        split(frame, stratify="nope")
    frame.loc[3, "label"] = None
    with pytest.raises(StepFailed, match="missing value"):
        split(frame, stratify="label")


def test_sizes_that_do_not_fit_the_data() -> None:
    with pytest.raises(StepFailed, match="cannot split 10 rows"):
        split(tickets(10), test_size=50)


@pytest.mark.parametrize(
    "settings",
    [
        {"test_size": 1.5},
        {"test_size": 0},
        {"test_size": True},
        {"test_size": 0.6, "train_size": 0.6},
        {"stratify": "label", "shuffle": False},
        {"test_sizes": 0.2},
    ],
)
def test_invalid_settings(settings: dict) -> None:
    with pytest.raises(ValidationError):
        TrainTest.Settings(**settings)


def test_train_test_contract() -> None:
    step = TrainTest()
    assert step.needs(TrainTest.Settings(stratify="label")) == ["label"]
    assert step.needs(TrainTest.Settings()) == []
    assert step.columns_after(TrainTest.Settings(), ["a", "b"]) == ["a", "b"]


def folds() -> pd.DataFrame:
    return pd.DataFrame(
        {"x": range(6), "split": ["train", "train", "test", "train", "val", "test"]}
    )


def test_by_column_splits_and_drops_the_column() -> None:
    train, test = ByColumn().run(folds(), ByColumn.Settings())
    assert train["x"].tolist() == [0, 1, 3]
    assert test["x"].tolist() == [2, 5]
    assert list(train.columns) == ["x"]


def test_by_column_keeps_the_column_and_accepts_several_values() -> None:
    settings = ByColumn.Settings(train_values=["train", "val"], drop_column=False)
    train, test = ByColumn().run(folds(), settings)
    assert train["x"].tolist() == [0, 1, 3, 4]
    assert list(train.columns) == ["x", "split"]


def test_by_column_numeric_column_matches_yaml_values() -> None:
    frame = pd.DataFrame({"x": range(4), "fold": [0, 1, 0, 1]})
    train, test = ByColumn().run(
        frame, ByColumn.Settings(column="fold", train_values=["0"], test_values=[1])
    )
    assert train["x"].tolist() == [0, 2]
    assert test["x"].tolist() == [1, 3]


def test_by_column_empty_side_names_the_values_found() -> None:
    frame = pd.DataFrame({"x": range(3), "split": ["training", "training", "testing"]})
    with pytest.raises(StepFailed, match=r"no train rows.*values found: `training` \(2\)"):
        ByColumn().run(frame, ByColumn.Settings())


def test_by_column_settings_and_contract() -> None:
    with pytest.raises(ValidationError, match="both"):
        ByColumn.Settings(train_values=["a"], test_values=["a"])
    step = ByColumn()
    settings = ByColumn.Settings(column="fold")
    assert step.needs(settings) == ["fold"]
    assert step.columns_after(settings, ["x", "fold"]) == ["x"]
    assert step.columns_after(
        settings.model_copy(update={"drop_column": False}), ["x", "fold"]
    ) == [
        "x",
        "fold",
    ]
    assert step.columns_after(settings, None) is None
