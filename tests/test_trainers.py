"""The xgboost trainer: settings validation, features, categories, early stopping, model file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from skitflow.errors import StepFailed
from skitflow.steps.base import RunContext
from skitflow.steps.bundle import load_bundle
from skitflow.steps.trainers import TRAINERS, XGBoost, infer_task

SMALL = {"n_estimators": 30, "max_depth": 3}


def learnable(rows: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Three classes decided by two numbers and a channel, plus a little label noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.normal(size=rows),
            "channel": rng.choice(["chat", "email", "phone"], size=rows),
            "note": rng.choice(["hello", "world"], size=rows),
        }
    )
    score = frame["a"] + 0.5 * frame["b"] + np.where(frame["channel"] == "chat", 1.5, 0.0)
    label = np.select([score < -0.3, score < 0.9], ["billing", "technical"], "account")
    noisy = rng.random(rows) < 0.03
    label[noisy] = rng.choice(["billing", "technical", "account"], size=int(noisy.sum()))
    frame["label"] = label
    frame["amount"] = 3.0 * frame["a"] - 2.0 * frame["b"] + rng.normal(scale=0.1, size=rows)
    return frame


def context(tmp_path: Path, lines: list[str] | None = None) -> RunContext:
    sink = lines.append if lines is not None else (lambda _line: None)
    return RunContext("tickets", "run-1", "2024-05-01", str(tmp_path), log=sink)


def train(
    frame: pd.DataFrame, tmp_path: Path, lines: list[str] | None = None, **settings: object
) -> tuple[str, dict]:
    settings.setdefault("params", SMALL)
    path = str(tmp_path / "model.json")
    meta = XGBoost().run(frame, XGBoost.Settings(**settings), path, context(tmp_path, lines))
    return path, meta


def test_registered() -> None:
    assert [t.name for t in TRAINERS] == ["xgboost", "linear"]


def test_classifier_model_file_is_self_describing(tmp_path: Path) -> None:
    lines: list[str] = []
    path, meta = train(learnable(), tmp_path, lines, target="label", categorical=["channel"])
    bundle = load_bundle(path)
    booster, embedded = bundle.model.booster, bundle.metadata
    assert embedded == {k: v for k, v in meta.items() if k != "bundle_bytes"}
    assert meta["task"] == "classification"
    assert meta["classes"] == ["account", "billing", "technical"]  # sorted
    assert meta["features"] == ["a", "b", "channel", "amount"]  # `note` is text, not declared
    assert meta["categorical"] == {"channel": ["chat", "email", "phone"]}
    assert meta["objective"] == "multi:softprob"
    assert meta["recipe"] == "tickets" and meta["target"] == "label"
    assert meta["params"]["tree_method"] == "hist" and meta["params"]["max_depth"] == 3
    assert set(meta["versions"]) >= {"skitflow", "xgboost", "pandas", "scikit-learn"}
    assert meta["n_rounds"] == 30 == booster.num_boosted_rounds()
    assert meta["train_rows"] == 1500 and len(meta["train_data_sha256"]) == 64
    # The file is a zip of the manifest and xgboost's own UBJSON model: nothing to unpickle.
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["bundle.json", "model.ubj"]
    assert any("not used as features" in line and "note" in line for line in lines)
    assert any(line.startswith("xgboost") for line in lines)


def test_model_file_without_extension_is_still_a_bundle(tmp_path: Path) -> None:
    path = str(tmp_path / "model")
    XGBoost().run(
        learnable(300),
        XGBoost.Settings(target="label", features=["a"], params=SMALL),
        path,
        context(tmp_path),
    )
    assert Path(path).read_bytes().startswith(b"PK") and load_bundle(path).task == "classification"


def test_training_is_deterministic(tmp_path: Path) -> None:
    frame = learnable(500)
    settings = {"target": "label", "features": ["a", "b"], "params": {**SMALL, "subsample": 0.7}}
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first, _ = train(frame, tmp_path / "1", **settings)
    second, _ = train(frame, tmp_path / "2", **settings)
    assert Path(first).read_bytes() == Path(second).read_bytes()


def test_regressor(tmp_path: Path) -> None:
    path, meta = train(learnable(), tmp_path, target="amount", features=["a", "b"])
    assert meta["task"] == "regression"  # auto: a float target
    assert meta["classes"] is None
    assert meta["objective"] == "reg:squarederror"
    assert load_bundle(path).metadata["target"] == "amount"


def test_integer_and_bool_labels(tmp_path: Path) -> None:
    frame = learnable(400)
    frame["code"] = (frame["a"] > 0).astype(int) + (frame["b"] > 0).astype(int)
    frame["flag"] = frame["a"] > 0
    _, meta = train(frame, tmp_path, target="code", features=["a", "b"])
    assert (meta["task"], meta["classes"]) == ("classification", [0, 1, 2])
    _, meta = train(frame, tmp_path, target="flag", features=["a", "b"])
    assert (meta["classes"], meta["objective"]) == ([False, True], "binary:logistic")


def test_auto_task_rule() -> None:
    assert infer_task(pd.Series(["a", "b"])) == "classification"
    assert infer_task(pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series(range(20))) == "classification"
    assert infer_task(pd.Series(range(21))) == "regression"
    assert infer_task(pd.Series([1.0, 2.0, 3.0])) == "classification"
    assert infer_task(pd.Series([1.5, 2.0, 3.0])) == "regression"


def test_text_feature_must_be_declared_categorical(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="`channel`") as caught:
        train(learnable(200), tmp_path, target="label", features=["a", "channel"])
    assert "categorical" in (caught.value.problems[0].hint or "")


def test_categorical_numbers_and_prepared_categories(tmp_path: Path) -> None:
    frame = learnable(300)
    frame["store"] = np.arange(300) % 4
    _, meta = train(frame, tmp_path, target="label", features=["a", "store"], categorical=["store"])
    assert meta["categorical"] == {"store": [0, 1, 2, 3]}


def test_early_stopping_keeps_the_best_rounds(tmp_path: Path) -> None:
    lines: list[str] = []
    params = {"n_estimators": 500, "max_depth": 3, "learning_rate": 0.3}
    path, meta = train(
        learnable(1000),
        tmp_path,
        lines,
        target="label",
        features=["a", "b"],
        params=params,
        early_stopping_rounds=5,
        validation_fraction=0.2,
    )
    assert meta["best_iteration"] is not None and meta["best_iteration"] < 499
    assert meta["n_rounds"] == meta["best_iteration"] + 1
    assert load_bundle(path).model.booster.num_boosted_rounds() == meta["n_rounds"]
    assert (meta["fit_rows"], meta["validation_rows"], meta["train_rows"]) == (800, 200, 1000)
    assert any(line.startswith("early stopping") for line in lines)
    assert any(line.startswith("round ") and "mlogloss" in line for line in lines)


def test_unknown_param_suggests_the_right_name() -> None:
    with pytest.raises(ValidationError, match=r"unknown xgboost parameter `max_dept`.*`max_depth`"):
        XGBoost.Settings(target="y", params={"max_dept": 3})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_jobs": 2}, "use `n_jobs`"),
        ({"random_state": 1}, "use `seed`"),
        ({"device": "cuda"}, "use `device`"),
        ({"eta": 0.1, "learning_rate": 0.2}, "same parameter"),
    ],
)
def test_params_set_elsewhere_are_rejected(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        XGBoost.Settings(target="y", params=params)


def test_aliases_are_normalised() -> None:
    settings = XGBoost.Settings(target="y", params={"eta": 0.1, "lambda": 2})
    assert settings.params == {"learning_rate": 0.1, "reg_lambda": 2}


@pytest.mark.parametrize(
    "settings",
    [
        {"target": "y", "features": ["y", "a"]},
        {"target": "y", "features": ["a"], "categorical": ["b"]},
        {"target": "y", "task": "classification", "params": {"objective": "multi:softmax"}},
        {"target": "y", "task": "regression", "params": {"objective": "binary:logistic"}},
        {"target": "y", "device": "tpu"},
        {"target": "y", "validation_fraction": 1.0},
        {"target": "y", "learning_rate": 0.1},
    ],
)
def test_invalid_settings(settings: dict) -> None:
    with pytest.raises(ValidationError):
        XGBoost.Settings(**settings)


def test_accelerator_follows_the_device() -> None:
    step = XGBoost()
    assert step.accelerator(XGBoost.Settings(target="y", device="cuda")) == ("nvidia.com/gpu", 1)
    assert step.accelerator(XGBoost.Settings(target="y")) is None


def test_needs_lists_target_and_declared_columns() -> None:
    settings = XGBoost.Settings(target="y", features=["a", "c"], categorical=["c"])
    assert XGBoost().needs(settings) == ["y", "a", "c"]
    assert XGBoost().needs(XGBoost.Settings(target="y")) == ["y"]


def test_data_errors(tmp_path: Path) -> None:
    frame = learnable(200)
    with pytest.raises(StepFailed, match="not in the train set"):
        train(frame, tmp_path, target="nope")
    with pytest.raises(StepFailed, match="single class"):
        train(frame.assign(label="x"), tmp_path, target="label", features=["a"])
    with pytest.raises(StepFailed, match="missing value"):
        train(frame.assign(amount=np.nan), tmp_path, target="amount", features=["a"])
    with pytest.raises(StepFailed, match="not numeric"):
        train(frame, tmp_path, target="label", task="regression", features=["a"])
