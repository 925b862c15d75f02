"""The evaluators: metrics on real models, unseen classes, and standalone HTML reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skitflow.errors import StepFailed
from skitflow.steps.evaluators import EVALUATORS, Classification, Regression
from skitflow.steps.gate import decide
from skitflow.steps.split import TrainTest
from tests.html_tables import ReportPage
from tests.test_trainers import context, learnable, train


def evaluate_classifier(frame: pd.DataFrame, tmp_path: Path, **settings: object):
    train_set, test_set = TrainTest().run(frame, TrainTest.Settings(stratify="label"))
    path, _ = train(train_set, tmp_path, target="label", **settings)
    step = Classification()
    return step.run(path, test_set, Classification.Settings(target="label"), context(tmp_path))


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
    assert set(scalars) == expected == set(Classification.metrics)  # what a gate may name
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


def test_report_is_standalone_html_with_real_tables(tmp_path: Path) -> None:
    evaluation = evaluate_classifier(learnable(600), tmp_path, features=["a", "b"])
    page = evaluation.report.render()
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "tickets" in page and "http" not in page  # nothing fetched from elsewhere
    report = ReportPage(page)
    assert report.pairs("Metrics") == {k: f"{v:.4f}" for k, v in evaluation.scalars.items()}
    # per-class scores: a table, not a picture
    rows = report.table("Per class")
    assert rows[0] == ["class", "precision", "recall", "F1", "support"]
    per_class = evaluation.details["per_class"]
    assert {r[0]: (float(r[1]), float(r[3]), int(r[4])) for r in rows[1:]} == {
        label: (round(s["precision"], 4), round(s["f1"], 4), s["support"])
        for label, s in per_class.items()}
    assert "Per class" not in report.images
    # the confusion matrix as a table (true class by row), plus its heatmap
    labels, matrix = evaluation.confusion_matrix
    grid = report.table("Confusion matrix")
    assert grid[0][1:] == labels and [r[0] for r in grid[1:]] == labels
    assert [[int(c) for c in r[1:]] for r in grid[1:]] == matrix
    curves = report.images["ROC and precision-recall curves"]
    assert len(report.images["Confusion matrix"]) == 1 and len(curves) == 1
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in [*curves, *report.images["Confusion matrix"]])
    # features used and ignored (with the reason), importance, parameters, data, versions
    assert [r[0] for r in report.table("Features")[1:]] == ["a", "b"]
    ignored = report.pairs("Features", 1)
    assert set(ignored) == {"channel", "note", "amount"}
    assert ignored["amount"] == "not listed in the trainer's `features`"
    importance = report.table("Feature importance")
    assert {r[0] for r in importance[1:]} <= {"a", "b"} and float(importance[1][1]) > 0
    assert report.pairs("Parameters")["trainer"] == "xgboost"
    assert report.pairs("Parameters")["max_depth"] == "3"
    tested = sum(map(sum, matrix))
    assert report.pairs("Data") == {"train": f"{600 - tested:,}", "test": f"{tested:,}"}
    versions = report.pairs("Library versions")
    assert {"skitflow", "xgboost", "scikit-learn"} <= set(versions)
    assert "Gate" not in report.tables  # no gate, no verdict


def test_report_shows_the_gate_and_champion_beside_challenger(tmp_path: Path) -> None:
    evaluation = evaluate_classifier(learnable(600), tmp_path, features=["a", "b"])
    champion = {**evaluation.scalars, "f1_macro": evaluation.scalars["f1_macro"] + 0.05}
    verdict = decide("f1_macro", "higher", evaluation.scalars, minimum=0.5, beat="out/model.zip",
                     by=0.01, champion=champion)
    assert not verdict.passed
    report = ReportPage(evaluation.report.render(verdict.to_json()))
    assert report.texts["Gate"][0] == "gate FAILED"
    gate = report.pairs("Gate")
    assert gate["metric"] == "f1_macro" and gate["better when"] == "higher"
    assert gate["published model"] == "out/model.zip"
    assert float(gate["published model's score"]) == pytest.approx(champion["f1_macro"], abs=1e-4)
    assert "does not beat the published model" in gate["reason"]
    side = report.table("Champion vs challenger")
    assert side[0][:3] == ["metric", "challenger (this run)", "champion (out/model.zip)"]
    f1 = next(r for r in side if r[0] == "f1_macro (gate)")
    assert float(f1[3]) == pytest.approx(-0.05, abs=1e-4) and f1[4] == "published"
    log_loss = next(r for r in side if r[0] == "log_loss")
    assert log_loss[4] == "same"


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
    assert set(evaluation.scalars) == set(Regression.metrics)
    report = ReportPage(evaluation.report.render())
    assert len(report.images["Predicted vs actual"]) == 1
    assert report.pairs("Metrics")["n"] == "240"
    assert report.pairs("Data") == {"train": "960", "test": "240"}


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


# -- the gate's verdict (pure) -------------------------------------------------------------------


def test_gate_bounds_are_direction_aware_and_nan_never_passes() -> None:
    assert decide("f1_macro", "higher", {"f1_macro": 0.8}, minimum=0.7).passed
    low = decide("f1_macro", "higher", {"f1_macro": 0.6}, minimum=0.7)
    assert not low.passed and low.reason == "f1_macro 0.6000 is below the minimum 0.7"
    assert decide("rmse", "lower", {"rmse": 3.0}, maximum=5).passed
    high = decide("rmse", "lower", {"rmse": 19.29}, maximum=5)
    assert not high.passed and "above the maximum 5" in high.reason
    nan = decide("r2", "higher", {"r2": float("nan")}, minimum=-10.0)
    assert not nan.passed and "not a number" in nan.reason
    assert nan.to_json()["score"] is None  # JSON has no NaN


@pytest.mark.parametrize(("direction", "new", "old", "by", "passed"), [
    ("higher", 0.80, 0.79, 0.005, True),
    ("higher", 0.80, 0.797, 0.005, False),  # better, but not by enough
    ("higher", 0.80, 0.85, 0.0, False),
    ("higher", 0.80, 0.80, 0.0, True),  # at least as good
    ("lower", 2.0, 2.5, 0.1, True),  # an error metric: lower is better
    ("lower", 2.5, 2.0, 0.0, False),
])
def test_champion_challenger(direction: str, new: float, old: float, by: float, passed: bool) -> None:
    metric = "f1_macro" if direction == "higher" else "rmse"
    verdict = decide(metric, direction, {metric: new}, beat="s3://models/m.zip", by=by,  # type: ignore[arg-type]
                     champion={metric: old, "other": 1.0})
    assert verdict.passed is passed, verdict.reason
    assert verdict.champion == "scored" and verdict.champion_score == old
    assert verdict.champion_metrics == {metric: old, "other": 1.0}
    assert ("beats the published model" in verdict.reason) is passed


def test_champion_challenger_also_needs_the_threshold_and_says_when_nothing_is_published() -> None:
    worse_than_min = decide("f1_macro", "higher", {"f1_macro": 0.65}, minimum=0.7, beat="m.zip",
                            champion={"f1_macro": 0.5})
    assert not worse_than_min.passed and "below the minimum" in worse_than_min.reason
    first = decide("f1_macro", "higher", {"f1_macro": 0.75}, minimum=0.7, beat="out/m.zip", by=0.01)
    assert first.passed and first.champion == "none yet" and first.champion_score is None
    assert first.reason.startswith("no published model at out/m.zip yet: the threshold alone decides")
    refused = decide("f1_macro", "higher", {"f1_macro": 0.65}, minimum=0.7, beat="out/m.zip")
    assert not refused.passed and "threshold alone decides" in refused.reason
