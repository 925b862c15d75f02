"""The evaluators: metrics on real models, unseen classes, and standalone HTML reports."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skitflow.errors import StepFailed
from skitflow.steps.evaluators import EVALUATORS, Classification, Regression
from skitflow.steps.split import TrainTest
from tests.test_trainers import context, learnable, train


def evaluate_classifier(frame: pd.DataFrame, tmp_path: Path, **settings: object):
    train_set, test_set = TrainTest().run(frame, TrainTest.Settings(stratify="label"))
    path, _ = train(train_set, tmp_path, target="label", **settings)
    step = Classification()
    return step.run(path, test_set, Classification.Settings(target="label"), context(tmp_path))


def pngs(page: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_registered() -> None:
    assert [e.name for e in EVALUATORS] == ["classification", "regression"]
    assert Classification().needs(Classification.Settings(target="label")) == ["label"]


def test_learnable_dataset_scores_high(tmp_path: Path) -> None:
    evaluation = evaluate_classifier(learnable(), tmp_path, categorical=["channel"])
    scalars = evaluation.scalars
    assert scalars["f1_macro"] > 0.8 and scalars["accuracy"] > 0.8
    expected = {"accuracy", "log_loss", "roc_auc"} | {
        f"{m}_{a}" for m in ("precision", "recall", "f1") for a in ("macro", "weighted")
    }
    assert set(scalars) == expected
    assert all(isinstance(v, float) for v in scalars.values())
    assert 0.9 < scalars["roc_auc"] <= 1.0 and scalars["log_loss"] < 0.5

    labels, rows = evaluation.confusion_matrix
    assert labels == ["account", "billing", "technical"]
    assert sum(map(sum, rows)) == 300 and all(isinstance(c, int) for row in rows for c in row)
    per_class = evaluation.details["per_class"]
    assert set(per_class) == set(labels)
    assert sum(c["support"] for c in per_class.values()) == 300
    assert set(per_class["billing"]) == {"precision", "recall", "f1", "support"}


def test_random_labels_score_low(tmp_path: Path) -> None:
    frame = learnable()
    frame["label"] = np.random.default_rng(1).choice(["x", "y", "z"], size=len(frame))
    scalars = evaluate_classifier(frame, tmp_path, features=["a", "b"]).scalars
    assert scalars["f1_macro"] < 0.5
    assert 0.35 < scalars["roc_auc"] < 0.65


def test_report_is_standalone_html_with_pictures(tmp_path: Path) -> None:
    page = evaluate_classifier(learnable(600), tmp_path, features=["a", "b"]).report_html
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "f1_macro" in page and "tickets" in page
    pictures = pngs(page)
    assert len(pictures) == 2  # confusion-matrix heatmap and per-class table
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pictures)
    assert "http" not in page  # nothing fetched from elsewhere


def test_binary_and_single_class_test_set(tmp_path: Path) -> None:
    frame = learnable(800)
    frame["label"] = np.where(frame["a"] > 0, "yes", "no")
    path, meta = train(frame, tmp_path, target="label", features=["a", "b"])
    assert meta["objective"] == "binary:logistic"
    step, settings = Classification(), Classification.Settings(target="label")
    evaluation = step.run(path, frame, settings, context(tmp_path))
    assert evaluation.scalars["roc_auc"] > 0.95
    only_yes = frame[frame["label"] == "yes"]
    evaluation = step.run(path, only_yes, settings, context(tmp_path))
    assert "roc_auc" not in evaluation.scalars  # undefined with one class
    assert evaluation.scalars["accuracy"] > 0.9


def test_unseen_classes_count_as_errors(tmp_path: Path) -> None:
    frame = learnable(600)
    path, _ = train(
        frame, tmp_path, target="label", features=["a", "b", "channel"], categorical=["channel"]
    )
    test = frame.head(100).copy()
    test.loc[:9, "label"] = "refund"
    test.loc[:4, "channel"] = "carrier pigeon"  # an unseen category becomes missing
    lines: list[str] = []
    evaluation = Classification().run(
        path, test, Classification.Settings(target="label"), context(tmp_path, lines)
    )
    labels, rows = evaluation.confusion_matrix
    assert labels[-1] == "refund"
    assert sum(rows[-1]) == 10 and all(row[-1] == 0 for row in rows)
    assert evaluation.details["unseen_rows"] == 10
    assert evaluation.scalars["accuracy"] <= 0.9
    assert "log_loss" in evaluation.scalars
    assert any("never saw" in line for line in lines)


def test_regression(tmp_path: Path) -> None:
    frame = learnable(1200)
    train_set, test_set = TrainTest().run(frame, TrainTest.Settings())
    path, _ = train(
        train_set,
        tmp_path,
        target="amount",
        features=["a", "b"],
        params={"n_estimators": 200, "max_depth": 4},
    )
    evaluation = Regression().run(
        path, test_set, Regression.Settings(target="amount"), context(tmp_path)
    )
    assert set(evaluation.scalars) == {"rmse", "mae", "r2"}
    assert evaluation.scalars["r2"] > 0.9
    assert evaluation.scalars["mae"] <= evaluation.scalars["rmse"]
    assert evaluation.details["n"] == 240
    assert evaluation.details["mean_target"] == pytest.approx(test_set["amount"].mean())
    assert evaluation.confusion_matrix is None
    assert len(pngs(evaluation.report_html)) == 1


def test_wrong_evaluator_and_missing_columns(tmp_path: Path) -> None:
    frame = learnable(300)
    path, _ = train(frame, tmp_path, target="label", features=["a", "b"])
    with pytest.raises(StepFailed, match="not a regressor"):
        Regression().run(path, frame, Regression.Settings(target="amount"), context(tmp_path))
    settings = Classification.Settings(target="label")
    with pytest.raises(StepFailed, match="lack 1 column.*`b`"):
        Classification().run(path, frame.drop(columns=["b"]), settings, context(tmp_path))
    with pytest.raises(StepFailed, match="not in the test set"):
        Classification().run(path, frame.drop(columns=["label"]), settings, context(tmp_path))


def test_not_a_skitflow_model(tmp_path: Path) -> None:
    bogus = tmp_path / "model.json"
    bogus.write_text("not a model")
    with pytest.raises(StepFailed, match="not a skitflow model bundle"):
        Classification().run(
            str(bogus), learnable(10), Classification.Settings(target="label"), context(tmp_path)
        )
