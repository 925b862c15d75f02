"""Evaluator steps: score a trained model on the test set.

They read the model bundle alone (it holds the fitted preprocessing, and says which features,
categories and classes the model was trained with) and score through the same
:class:`~skitflow.steps.bundle.Bundle` code as `predict:` and `skitflow.load_model`, so an
evaluator needs no settings beyond the target column and cannot drift from serving. Each
declares the metrics it computes and their direction (`metrics`: what a gate may name), and
returns an :class:`Evaluation` whose `report` (:mod:`skitflow.steps.report`) the runtime draws
after the gate decided.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field

from skitflow.errors import StepFailed
from skitflow.steps.base import Direction, Evaluation, EvaluatorStep, RunContext, StepSettings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from skitflow.steps import report as pages
    from skitflow.steps.bundle import Bundle

# The bundle, estimator and report modules are imported where a task uses them: validating a
# recipe needs only the settings and metrics above.

#: Confusion matrices with more classes than this are drawn without numbers in the cells.
ANNOTATE_MAX_CLASSES = 25
#: A regression scatter plot draws at most this many points (a fixed random sample).
SCATTER_MAX_POINTS = 5000
#: ROC and precision-recall curves are drawn one-vs-rest for at most this many classes.
CURVES_MAX_CLASSES = 12

CLASSIFICATION_METRICS: dict[str, Direction] = {
    "accuracy": "higher", "log_loss": "lower", "roc_auc": "higher",
    **{f"{m}_{a}": "higher" for m in ("precision", "recall", "f1") for a in ("macro", "weighted")},
}
REGRESSION_METRICS: dict[str, Direction] = {"rmse": "lower", "mae": "lower", "r2": "higher"}


class ClassificationSettings(StepSettings):
    """Score a classifier: accuracy, precision/recall/F1, ROC-AUC, log loss, confusion matrix."""

    target: str = Field(description="Column holding the true class of each test row.")


class Classification(EvaluatorStep):
    """Score a classifier on the test set; report with a confusion-matrix heatmap."""

    name = "classification"
    Settings = ClassificationSettings
    example = {"target": "label"}
    metrics = CLASSIFICATION_METRICS

    def needs(self, settings: ClassificationSettings) -> list[str]:
        return [settings.target]

    def run(
        self, model_path: str, test: pd.DataFrame, settings: ClassificationSettings, ctx: RunContext
    ) -> Evaluation:
        import pandas as pd

        from skitflow.steps import report as pages
        from skitflow.steps.bundle import load_bundle

        bundle = load_bundle(model_path)
        meta = bundle.metadata
        if meta.get("task") != "classification":
            raise StepFailed(
                f"the model is a {meta.get('task')} model, not a classifier",
                hint="use the `regression` evaluator",
            )
        _target(test, settings.target)
        prepared, probabilities = _predict(bundle, test)
        truth = _target(prepared, settings.target)  # as the model saw it (e.g. label-encoded)
        classes = [str(c) for c in meta["classes"]]
        predicted = probabilities.argmax(axis=1)

        # Codes 0..k-1 are the model's classes; labels it never saw get codes k, k+1, ...
        known = pd.Index(meta["classes"]).get_indexer(truth)
        unseen_mask = known < 0
        unseen_labels = sorted({str(v) for v in truth[unseen_mask]})
        actual = known.copy()
        if unseen_labels:
            extra = {label: len(classes) + i for i, label in enumerate(unseen_labels)}
            actual[unseen_mask] = [extra[str(v)] for v in truth[unseen_mask]]
            _log(ctx)(
                f"{int(unseen_mask.sum())} test row(s) have classes the model never saw: "
                f"{', '.join(unseen_labels[:10])}; they count as errors"
            )
        labels = classes + unseen_labels
        scalars, per_class, matrix = _classification_metrics(
            actual, predicted, probabilities, labels, len(classes)
        )
        details = {
            "n": len(truth),
            "classes": classes,
            "unseen_classes": unseen_labels,
            "unseen_rows": int(unseen_mask.sum()),
            "per_class": per_class,
            "model": {k: meta.get(k) for k in ("recipe", "run_id", "target", "trainer", "n_rounds")},
        }
        report = _classification_report(ctx, settings.target, scalars, per_class, labels, matrix)
        seen = actual < len(classes)
        report.add("ROC and precision-recall curves",
                   lambda: _curves(actual[seen], probabilities[seen], classes))
        pages.model_sections(report, bundle, len(truth))
        _log(ctx)(
            "accuracy {:.4f}, F1 macro {:.4f} on {:,} rows".format(
                scalars["accuracy"], scalars["f1_macro"], len(truth)
            )
        )
        return Evaluation(
            scalars=scalars,
            confusion_matrix=(labels, matrix),
            details=details,
            report=report,
        )


def _classification_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    labels: list[str],
    n_known: int,
) -> tuple[dict[str, float], dict[str, dict[str, float]], list[list[int]]]:
    """Scalars, per-class scores and the confusion matrix (rows: true class, columns: predicted)."""
    import numpy as np
    from sklearn import metrics

    codes = list(range(len(labels)))
    present = sorted(set(np.unique(actual)) | set(np.unique(predicted)))
    scalars: dict[str, float] = {"accuracy": float(metrics.accuracy_score(actual, predicted))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            actual, predicted, labels=present, average=average, zero_division=0
        )
        scalars[f"precision_{average}"] = float(precision)
        scalars[f"recall_{average}"] = float(recall)
        scalars[f"f1_{average}"] = float(f1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        actual, predicted, labels=codes, average=None, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }

    # Probability scores are defined on the rows whose class the model knows.
    seen = actual < n_known
    y, p = actual[seen], probabilities[seen]
    if len(y):
        scalars["log_loss"] = float(metrics.log_loss(y, p, labels=list(range(n_known))))
    auc = _roc_auc(y, p, n_known)
    if auc is not None:
        scalars["roc_auc"] = auc
    matrix = metrics.confusion_matrix(actual, predicted, labels=codes)
    return scalars, per_class, matrix.astype(int).tolist()


def _roc_auc(y: np.ndarray, p: np.ndarray, n_classes: int) -> float | None:
    """Binary ROC-AUC, or one-vs-rest macro over classes in the test set; None when undefined."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if len(present) < 2:
        return None
    if n_classes == 2:
        return float(roc_auc_score(y, p[:, 1]))
    scores = [roc_auc_score(y == c, p[:, c]) for c in present]
    return float(np.mean(scores))


class RegressionSettings(StepSettings):
    """Score a regressor: RMSE, MAE and R², with a predicted-vs-actual scatter plot."""

    target: str = Field(description="Column holding the true value of each test row.")


class Regression(EvaluatorStep):
    """Score a regressor on the test set; report with a predicted-vs-actual plot."""

    name = "regression"
    Settings = RegressionSettings
    example = {"target": "price"}
    metrics = REGRESSION_METRICS

    def needs(self, settings: RegressionSettings) -> list[str]:
        return [settings.target]

    def run(
        self, model_path: str, test: pd.DataFrame, settings: RegressionSettings, ctx: RunContext
    ) -> Evaluation:
        import numpy as np
        import pandas as pd
        from sklearn import metrics

        from skitflow.steps import report as pages
        from skitflow.steps.bundle import load_bundle

        bundle = load_bundle(model_path)
        meta = bundle.metadata
        if meta.get("task") != "regression":
            raise StepFailed(
                f"the model is a {meta.get('task')} model, not a regressor",
                hint="use the `classification` evaluator",
            )
        _target(test, settings.target)
        prepared, scores = _predict(bundle, test)
        truth = _target(prepared, settings.target)
        if not pd.api.types.is_numeric_dtype(truth) or pd.api.types.is_bool_dtype(truth):
            raise StepFailed(
                f"regression target `{settings.target}` is not numeric ({truth.dtype})"
            )
        actual = truth.to_numpy(dtype=np.float64)
        predicted = np.asarray(scores, dtype=np.float64)
        scalars = {
            "rmse": float(math.sqrt(metrics.mean_squared_error(actual, predicted))),
            "mae": float(metrics.mean_absolute_error(actual, predicted)),
        }
        if len(actual) > 1:
            scalars["r2"] = float(metrics.r2_score(actual, predicted))
        details = {
            "n": len(actual),
            "mean_target": float(actual.mean()),
            "mean_prediction": float(predicted.mean()),
            "model": {k: meta.get(k) for k in ("recipe", "run_id", "target", "trainer", "n_rounds")},
        }
        report = pages.Report(f"Regression: {settings.target}", pages.subtitle(ctx), scalars)
        report.add("Metrics", lambda: pages.metrics_table({**scalars, "n": len(actual)}))
        report.add("Predicted vs actual", lambda: pages.img(
            _scatter_png(actual, predicted, settings.target), "predicted vs actual"))
        pages.model_sections(report, bundle, len(actual))
        _log(ctx)(f"rmse {scalars['rmse']:.4g}, r2 {scalars.get('r2', float('nan')):.4f}")
        return Evaluation(scalars=scalars, details=details, report=report)


# -- shared helpers ----------------------------------------------------------------------------


def _log(ctx: RunContext) -> Any:
    return ctx.log or (lambda _line: None)


def _target(test: pd.DataFrame, column: str) -> pd.Series:
    from skitflow.steps.estimators import checked_target

    return checked_target(test, column, "test set")


def _predict(bundle: Bundle, test: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The test rows as the model read them, and their scores: the split's output, so only the
    bundle's fitted (model-stage) steps are applied, with the state learnt on the train rows."""
    return bundle.scored(test, raw=False)


# -- HTML report -------------------------------------------------------------------------------


def _classification_report(
    ctx: RunContext,
    target: str,
    scalars: dict[str, float],
    per_class: dict[str, dict[str, float]],
    labels: list[str],
    matrix: list[list[int]],
) -> pages.Report:
    from skitflow.steps import report as pages

    report = pages.Report(f"Classification: {target}", pages.subtitle(ctx), scalars)
    report.add("Metrics", lambda: pages.metrics_table(scalars))
    report.add("Per class", lambda: pages.per_class_table(per_class))
    report.add("Confusion matrix", lambda: pages.confusion_table(labels, matrix)
               + pages.img(_confusion_png(labels, matrix), "confusion matrix heatmap"))
    return report


def _curves(actual: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> str:
    """ROC and precision-recall curves (binary, or one-vs-rest per class) where defined: a class
    needs positive and negative test rows."""
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    from skitflow.steps import report as pages

    positive = [1] if len(classes) == 2 else list(range(len(classes)))
    drawn = [c for c in positive if 0 < int(np.sum(actual == c)) < len(actual)][:CURVES_MAX_CLASSES]
    if not drawn:
        return "<p>Not defined: the test set has a single class.</p>"
    figure = Figure(figsize=(11.0, 5.0))
    roc_axes, pr_axes = figure.subplots(1, 2)
    for code in drawn:
        truth, score = actual == code, probabilities[:, code]
        fpr, tpr, _ = roc_curve(truth, score)
        # only the thresholds that show on the plot (a fifth of them at 194,000 test rows)
        precision, recall, _ = precision_recall_curve(truth, score, drop_intermediate=True)
        name = _short(classes[code])
        roc_axes.plot(fpr, tpr, linewidth=1.2, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        pr_axes.plot(recall, precision, linewidth=1.2, label=name)
    roc_axes.plot([0, 1], [0, 1], color="#999", linewidth=0.8, linestyle="--")
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_axes.set(xlabel="recall", ylabel="precision", title="precision-recall")
    for axes in (roc_axes, pr_axes):
        axes.legend(loc="lower right" if axes is roc_axes else "lower left", fontsize=8)
    note = "" if len(classes) == 2 else " (one class against the rest)"
    left = len([c for c in positive if c not in drawn])
    more = f"<p>{left} class(es) not drawn.</p>" if left else ""
    return pages.img(pages.png(figure), "ROC and precision-recall curves" + note) + more


def _confusion_png(labels: list[str], matrix: list[list[int]]) -> bytes:
    import numpy as np
    from matplotlib.figure import Figure

    from skitflow.steps import report as pages

    counts = np.asarray(matrix)
    n = len(labels)
    side = min(16.0, 2.5 + 0.6 * n)
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(n), labels=[_short(label) for label in labels], rotation=45, ha="right")
    axes.set_yticks(range(n), labels=[_short(label) for label in labels])
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    if n <= ANNOTATE_MAX_CLASSES:
        threshold = counts.max() / 2 if counts.size else 0
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if count > threshold else "black"
            axes.text(col, row, f"{count:,}", ha="center", va="center", color=colour, fontsize=9)
    return pages.png(figure)


def _scatter_png(actual: np.ndarray, predicted: np.ndarray, target: str) -> bytes:
    import numpy as np
    from matplotlib.figure import Figure

    from skitflow.steps import report as pages

    if len(actual) > SCATTER_MAX_POINTS:
        rows = np.random.default_rng(0).choice(len(actual), SCATTER_MAX_POINTS, replace=False)
        actual, predicted = actual[rows], predicted[rows]
    figure = Figure(figsize=(6.0, 6.0))
    axes = figure.add_subplot()
    axes.scatter(actual, predicted, s=8, alpha=0.4, edgecolors="none")
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="#c33", linewidth=1, label="perfect prediction")
    axes.set_xlabel(f"actual {target}")
    axes.set_ylabel(f"predicted {target}")
    axes.legend(loc="upper left")
    return pages.png(figure)


def _short(label: str, width: int = 24) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


EVALUATORS: list[type[EvaluatorStep]] = [Classification, Regression]
