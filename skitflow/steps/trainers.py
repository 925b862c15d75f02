"""Trainer steps: fit a model on the rows the preprocessing made from the train set.

A trainer's `fit` gets :class:`Rows` (a DataFrame and any sparse text blocks) and returns a
:class:`Trained`: the model in its library's own format, its design (which columns and blocks it
reads, in order) and its metadata (task, target, features, categories, classes, parameters,
library versions). The train task puts that together with the fitted preprocessing into one
model bundle (`skitflow.steps.bundle`). `xgboost` trains gradient-boosted trees; `linear` a
logistic (classification) or ridge (regression) model with scikit-learn. Both share the target,
`task: auto` and feature contract.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from skitflow.errors import StepFailed, did_you_mean
from skitflow.steps.base import RunContext, StepSettings, Trained, TrainerStep

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb

    from skitflow.steps.estimators import Design, Rows

# skitflow.steps.estimators (the fitted models and their design matrices) is imported by `fit`:
# validating a recipe needs only the settings below.

#: Version of the metadata layout, bumped when keys change meaning.
METADATA_VERSION = 1
#: `task: auto` picks classification for an integer target with at most this many values.
AUTO_MAX_CLASSES = 20

#: Hyper-parameters passed through to xgboost (its scikit-learn names and native names).
XGBOOST_PARAMS = frozenset(
    {
        # scikit-learn API names
        "n_estimators", "max_depth", "max_leaves", "max_bin", "grow_policy", "learning_rate",
        "verbosity", "objective", "booster", "tree_method", "gamma", "min_child_weight",
        "max_delta_step", "subsample", "sampling_method", "colsample_bytree",
        "colsample_bylevel", "colsample_bynode", "reg_alpha", "reg_lambda", "scale_pos_weight",
        "base_score", "missing", "num_parallel_tree", "monotone_constraints",
        "interaction_constraints", "importance_type", "validate_parameters",
        "max_cat_to_onehot", "max_cat_threshold", "multi_strategy", "eval_metric",
        # native names without a scikit-learn twin
        "max_cached_hist_node", "refresh_leaf", "process_type", "updater",
        "tweedie_variance_power", "huber_slope", "quantile_alpha", "aft_loss_distribution",
        "aft_loss_distribution_scale", "sample_type", "normalize_type", "rate_drop", "one_drop",
        "skip_drop", "feature_selector", "top_k", "disable_default_eval_metric",
        "seed_per_iteration",
    }
)  # fmt: skip
#: Native aliases, rewritten to the scikit-learn name so one value cannot be given twice.
PARAM_ALIASES = {
    "eta": "learning_rate",
    "alpha": "reg_alpha",
    "lambda": "reg_lambda",
    "min_split_loss": "gamma",
    "num_boost_round": "n_estimators",
}
#: xgboost parameters that skitflow sets from its own settings: name -> the setting to use.
RESERVED_PARAMS = {
    "n_jobs": "n_jobs",
    "nthread": "n_jobs",
    "random_state": "seed",
    "seed": "seed",
    "device": "device",
    "gpu_id": "device",
    "enable_categorical": "categorical",
    "early_stopping_rounds": "early_stopping_rounds",
    "num_class": "(set from the classes in the data)",
    "callbacks": "(not supported in recipes)",
    "feature_types": "categorical",
}


class TrainerSettings(StepSettings):
    """What every trainer shares: the target, the task and the feature columns."""

    target: str = Field(description="Column to predict.")
    task: Literal["classification", "regression", "auto"] = Field(
        "auto", description="classification | regression | auto (see above)."
    )
    features: list[str] | None = Field(
        None,
        description="Dense feature columns; default: every numeric and bool column except the "
        "target (plus `categorical` columns for xgboost). Sparse text features made by `tfidf` "
        "or `hashing` are always used.",
    )
    seed: int = Field(42, description="Random seed.")

    @model_validator(mode="after")
    def _features_valid(self) -> TrainerSettings:
        if self.features is not None:
            if not self.features:
                raise ValueError("`features` is empty; list columns or leave it out")
            duplicated = sorted({f for f in self.features if self.features.count(f) > 1})
            if duplicated:
                raise ValueError(f"`features` lists {duplicated} more than once")
            if self.target in self.features:
                raise ValueError(f"the target `{self.target}` cannot also be a feature")
        return self


class XGBoostSettings(TrainerSettings):
    """Gradient-boosted trees with xgboost, for classification or regression.

    `task: auto` means classification when the target is not numeric (text, category, bool) or
    holds at most 20 distinct integer values, and regression otherwise. Class labels are
    encoded in sorted order; the model bundle keeps them, so predictions map back to labels.
    """

    categorical: list[str] = Field(
        default_factory=list,
        description="Columns used as categories (pandas `category` dtype, xgboost "
        "enable_categorical); text columns must be listed here or encoded before training.",
    )
    max_categories: int = Field(
        10000, ge=2, description="Fail when a `categorical` column has more distinct values (free "
        "text is a job for `tfidf` or `hashing`).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="xgboost hyper-parameters (n_estimators, max_depth, learning_rate, ...), "
        "passed through; tree_method defaults to hist.",
    )
    early_stopping_rounds: int | None = Field(
        None, ge=1, description="Stop when the validation score has not improved for N rounds."
    )
    validation_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="Share of the train set held out for early stopping (stratified for "
        "classification); used only with `early_stopping_rounds`.",
    )
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="cpu, or cuda to train on an NVIDIA GPU (requests one on Kubernetes)."
    )
    seed: int = Field(42, description="Random seed for sampling and the validation split.")
    n_jobs: int | None = Field(None, ge=1, description="CPU threads; default: all cores.")

    @field_validator("params")
    @classmethod
    def _known_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        problems = []
        normalised: dict[str, Any] = {}
        for name, value in params.items():
            if name in RESERVED_PARAMS:
                problems.append(f"`{name}` is set by skitflow; use `{RESERVED_PARAMS[name]}`")
                continue
            canonical = PARAM_ALIASES.get(name, name)
            if canonical not in XGBOOST_PARAMS:
                hint = did_you_mean(name, [*XGBOOST_PARAMS, *PARAM_ALIASES])
                problems.append(
                    f"unknown xgboost parameter `{name}`" + (f"; {hint}" if hint else "")
                )
                continue
            if canonical in normalised:
                problems.append(f"`{name}` and `{canonical}` are the same parameter; keep one")
                continue
            normalised[canonical] = value
        if problems:
            raise ValueError("; ".join(problems))
        return normalised

    @model_validator(mode="after")
    def _consistent_columns(self) -> XGBoostSettings:
        if self.features is not None:
            outside = [c for c in self.categorical if c not in self.features]
            if outside:
                raise ValueError(f"`categorical` columns {outside} are not in `features`")
        if self.target in self.categorical:
            raise ValueError(f"the target `{self.target}` cannot be a categorical feature")
        if self.task == "classification" and self.params.get("objective") is not None:
            objective = str(self.params["objective"])
            if objective not in ("binary:logistic", "multi:softprob"):
                raise ValueError(
                    f"objective `{objective}` does not give class probabilities; skitflow picks "
                    "binary:logistic or multi:softprob from the classes, so leave it out"
                )
        if self.task == "regression" and str(self.params.get("objective", "")).startswith(
            ("binary:", "multi:")
        ):
            raise ValueError(f"objective `{self.params['objective']}` is for classification")
        return self


class XGBoost(TrainerStep):
    """Train an xgboost classifier or regressor on dense columns and sparse text features."""

    name = "xgboost"
    Settings = XGBoostSettings
    example = {
        "target": "label",
        "task": "classification",
        "categorical": ["channel"],
        "params": {"max_depth": 6, "n_estimators": 200, "learning_rate": 0.1},
        "early_stopping_rounds": 20,
    }

    def needs(self, settings: XGBoostSettings) -> list[str]:
        wanted = [settings.target, *(settings.features or []), *settings.categorical]
        return list(dict.fromkeys(wanted))

    def accelerator(self, settings: XGBoostSettings) -> tuple[str, int] | None:
        return ("nvidia.com/gpu", 1) if settings.device == "cuda" else None

    def fit(self, rows: Rows, settings: XGBoostSettings, ctx: RunContext) -> Trained:
        import xgboost as xgb

        from skitflow.steps.estimators import XGBoostModel, design_matrix, take_rows, versions

        log, started, train, target, task, features = _begin(rows, settings, settings.categorical, ctx)
        categories = {
            c: _categories_of(train[c], c, settings.max_categories)
            for c in features if c in set(settings.categorical)
        }
        design = _design(features, categories, rows)
        x = design_matrix(rows, design)
        y, classes = _labels(target, task, settings.target)

        params: dict[str, Any] = {"tree_method": "hist", **settings.params}
        kwargs = {
            **params,
            "device": settings.device,
            "random_state": settings.seed,
            "n_jobs": settings.n_jobs,
            "enable_categorical": bool(categories),
        }
        if task == "classification":
            kwargs.pop("objective", None)  # chosen by XGBClassifier from the number of classes

        eval_set = None
        x_fit, y_fit = x, y
        if settings.early_stopping_rounds:
            fit_idx, val_idx = _validation_split(y, task, settings, log)
            x_fit, y_fit = take_rows(x, fit_idx), y[fit_idx]
            eval_set = [(take_rows(x, val_idx), y[val_idx])]
            kwargs["early_stopping_rounds"] = settings.early_stopping_rounds

        n_rounds = int(params.get("n_estimators") or 100)
        kwargs["callbacks"] = [_progress_callback(xgb, log, n_rounds)]
        model_class = xgb.XGBClassifier if task == "classification" else xgb.XGBRegressor
        model = model_class(**kwargs)
        log(
            f"xgboost {xgb.__version__}: training {task} on {x_fit.shape[0]:,} rows x "
            f"{design.width:,} features"
            + (f" ({len(rows.blocks)} sparse block(s))" if rows.blocks else "")
            + (f", {len(classes)} classes" if classes else "")
            + f", device {settings.device}"
        )
        try:
            model.fit(x_fit, y_fit, eval_set=eval_set, verbose=False)
        except xgb.core.XGBoostError as exc:
            raise StepFailed(f"xgboost failed: {str(exc).strip().splitlines()[0]}") from exc

        booster = model.get_booster()
        best_iteration = None
        if settings.early_stopping_rounds:
            best_iteration = int(model.best_iteration)
            booster = booster[: best_iteration + 1]  # keep the best model, not the last rounds
            log(
                f"early stopping: best round {best_iteration + 1} of {model.get_num_boosting_rounds()}"
            )
        for attr in ("best_iteration", "best_score"):
            booster.set_attr(**{attr: None})

        metadata = {
            "metadata_version": METADATA_VERSION,
            "library": "xgboost",
            "task": task,
            "target": settings.target,
            "features": features,
            "categorical": categories,
            "classes": classes,
            "objective": json.loads(booster.save_config())["learner"]["objective"]["name"],
            "params": {
                **params,
                "seed": settings.seed,
                "n_jobs": settings.n_jobs,
                "early_stopping_rounds": settings.early_stopping_rounds,
            },
            "device": settings.device,
            "n_rounds": booster.num_boosted_rounds(),
            "best_iteration": best_iteration,
            "fit_rows": int(x_fit.shape[0]),
            "validation_rows": int(eval_set[0][1].shape[0]) if eval_set else 0,
            "versions": versions(["xgboost", "scikit-learn", "scipy", "numpy", "pandas"]),
        }
        elapsed = time.perf_counter() - started
        log(f"trained: {booster.num_boosted_rounds()} boosting rounds in {elapsed:.1f} s")
        return Trained(XGBoostModel(booster), design, metadata)


class LinearSettings(TrainerSettings):
    """A linear model with scikit-learn: logistic regression to classify, ridge to regress.

    `task: auto` decides as for xgboost. The strong, fast baseline for sparse text features
    (`tfidf`, `hashing`); scale dense columns first (`standardize`). Columns must be numeric:
    one_hot or label_encode categories first.
    """

    C: float = Field(1.0, gt=0, description="Inverse regularisation strength of the logistic "
                     "regression (smaller: simpler model).")
    alpha: float = Field(1.0, ge=0, description="Regularisation strength of the ridge regression.")
    class_weight: Literal["balanced"] | None = Field(
        None, description="`balanced` weights classes inversely to their frequency."
    )
    max_iter: int = Field(1000, ge=1, description="Most solver iterations.")
    tol: float = Field(1e-4, gt=0, description="Solver tolerance.")
    solver: Literal["lbfgs", "saga", "newton-cg", "sag"] = Field(
        "lbfgs", description="scikit-learn solver of the logistic regression."
    )
    fit_intercept: bool = Field(True, description="Learn an intercept.")


class Linear(TrainerStep):
    """Train a logistic regression (classification) or ridge regression; coefficients as JSON."""

    name = "linear"
    Settings = LinearSettings
    example = {"target": "intent", "C": 4.0}

    def needs(self, settings: LinearSettings) -> list[str]:
        return list(dict.fromkeys([settings.target, *(settings.features or [])]))

    def fit(self, rows: Rows, settings: LinearSettings, ctx: RunContext) -> Trained:
        import warnings

        import numpy as np
        import sklearn
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression, Ridge

        from skitflow.steps.estimators import LinearModel, design_matrix, versions

        log, started, train, target, task, features = _begin(rows, settings, [], ctx)
        design = _design(features, {}, rows)
        x = design_matrix(rows, design, categorical_ok=False)
        if hasattr(x, "iloc"):
            x = x.to_numpy(dtype=np.float64, na_value=np.nan)
        nan = np.isnan(x.data if hasattr(x, "data") and not isinstance(x, np.ndarray) else x)
        if nan.any():
            raise StepFailed("linear: the features have missing values",
                             hint="fill them first, e.g. `- fillna: {strategy: median, columns: [...]}`")
        y, classes = _labels(target, task, settings.target)
        log(f"scikit-learn {sklearn.__version__}: training "
            f"{'logistic' if task == 'classification' else 'ridge'} regression on {x.shape[0]:,} "
            f"rows x {design.width:,} features" + (f", {len(classes)} classes" if classes else ""))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if task == "classification":
                model: Any = LogisticRegression(
                    C=settings.C, class_weight=settings.class_weight, max_iter=settings.max_iter,
                    tol=settings.tol, solver=settings.solver, fit_intercept=settings.fit_intercept,
                    random_state=settings.seed)
            else:
                model = Ridge(alpha=settings.alpha, fit_intercept=settings.fit_intercept,
                              max_iter=settings.max_iter, tol=settings.tol, random_state=settings.seed)
            model.fit(x, y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if not converged:
            log(f"warning: the solver did not converge in {settings.max_iter} iterations; raise "
                "`max_iter` or scale the features")
        kind = "logistic" if task == "classification" else "ridge"
        intercept = np.atleast_1d(model.intercept_)
        metadata = {
            "metadata_version": METADATA_VERSION,
            "library": "linear",
            "model": "LogisticRegression" if kind == "logistic" else "Ridge",
            "task": task,
            "target": settings.target,
            "features": features,
            "categorical": {},
            "classes": classes,
            "params": settings.model_dump(mode="json", exclude={"target", "task", "features"}),
            "converged": converged,
            "n_iter": int(np.max(getattr(model, "n_iter_", [0]) or [0])) if hasattr(model, "n_iter_") and model.n_iter_ is not None else None,
            "fit_rows": int(x.shape[0]),
            "versions": versions(["scikit-learn", "scipy", "numpy", "pandas"]),
        }
        log(f"trained in {time.perf_counter() - started:.1f} s")
        return Trained(LinearModel(kind, model.coef_, intercept), design, metadata)


def _begin(rows: Rows, settings: TrainerSettings, categorical: Sequence[str], ctx: RunContext
           ) -> tuple[Any, float, pd.DataFrame, pd.Series, str, list[str]]:
    """What every trainer starts with: (log, start time, train frame, checked target, task,
    dense feature columns)."""
    from skitflow.steps.estimators import checked_target

    log = ctx.log or (lambda _line: None)
    started = time.perf_counter()
    train = rows.frame
    target = checked_target(train, settings.target, "train set")
    task = settings.task if settings.task != "auto" else infer_task(target)
    return log, started, train, target, task, _resolve_features(train, settings, categorical, log,
                                                                bool(rows.blocks))


def _labels(target: pd.Series, task: str, column: str) -> tuple[Any, list[Any] | None]:
    """(y, classes): class codes 0..k-1 in sorted order of the labels, or float values."""
    import numpy as np
    import pandas as pd

    if task == "classification":
        codes, uniques = pd.factorize(target, sort=True)
        classes = uniques.tolist()
        if len(classes) < 2:
            raise StepFailed(
                f"target `{column}` has a single class ({classes[0]!r}); "
                "a classifier needs at least two"
            )
        return codes.astype(np.int32, copy=False), classes
    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        raise StepFailed(
            f"regression target `{column}` is not numeric ({target.dtype})",
            hint="use `task: classification`, or convert the column to numbers",
        )
    return target.to_numpy(dtype=np.float64), None


def _design(features: list[str], categories: dict[str, list[Any]], rows: Rows) -> Design:
    from skitflow.steps.estimators import Design

    return Design(features, categories, [{"name": b.name, "width": b.width} for b in rows.blocks])


def infer_task(target: pd.Series) -> str:
    """`task: auto`: classification for non-numeric targets or few distinct integer values."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(target) or not pd.api.types.is_numeric_dtype(target):
        return "classification"
    values = target.dropna()
    if pd.api.types.is_float_dtype(values):
        as_array = values.to_numpy(dtype=np.float64)
        if not np.array_equal(as_array, np.floor(as_array)):
            return "regression"
    return "classification" if values.nunique() <= AUTO_MAX_CLASSES else "regression"


def _resolve_features(
    frame: pd.DataFrame, settings: TrainerSettings, categorical_columns: Sequence[str], log: Any,
    has_blocks: bool,
) -> list[str]:
    """The dense feature columns, checked: present, and numeric unless declared categorical."""
    import pandas as pd

    categorical = set(categorical_columns)
    missing = [c for c in [*(settings.features or []), *categorical] if c not in frame.columns]
    if missing:
        raise StepFailed(f"feature column(s) not in the train set: {', '.join(missing)}")

    def numeric(column: str) -> bool:
        dtype = frame[column].dtype
        return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)

    if settings.features is not None:
        features = list(settings.features)
    else:
        features = [
            c for c in frame.columns if c != settings.target and (c in categorical or numeric(c))
        ]
        ignored = [c for c in frame.columns if c != settings.target and c not in features]
        if ignored:
            shown = ", ".join(map(str, ignored[:20])) + (" ..." if len(ignored) > 20 else "")
            log(f"not used as features (not numeric): {shown}; turn text into features with "
                "`tfidf` or `hashing`")
        if not features and not has_blocks:
            raise StepFailed(
                "no numeric feature columns in the train set",
                hint="list `features`, add a `tfidf` step for text, declare categorical columns "
                "(xgboost), or encode them",
            )
    text = [c for c in features if c not in categorical and not numeric(c)]
    if text:
        kinds = ", ".join(f"`{c}` ({frame[c].dtype})" for c in text)
        where = "add them to `categorical`, " if isinstance(settings, XGBoostSettings) else ""
        raise StepFailed(
            f"feature column(s) are not numeric: {kinds}",
            hint=f"{where}encode them first (one_hot / label_encode), or use `tfidf` for text",
        )
    return [str(c) for c in features]


def _categories_of(column: pd.Series, name: str, limit: int) -> list[Any]:
    """The categories of a column, sorted, kept in the bundle for use at prediction time.

    A column with more distinct values than `limit`, or one where almost every row differs, is
    free text rather than a category: a clear error instead of a model that learns nothing.
    """
    import pandas as pd

    categories = (column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype)
                  else column.astype("category").cat.categories)
    distinct, rows = len(categories), len(column)
    if distinct > limit or (distinct > 1000 and distinct > 0.5 * rows):
        raise StepFailed(
            f"categorical column `{name}` has {distinct:,} distinct values in {rows:,} rows: it "
            "looks like free text, not a category",
            hint=f"turn it into features with `- tfidf: {{column: {name}}}` (or `hashing`), or "
            "raise `max_categories`",
        )
    return categories.tolist()


def _validation_split(y: Any, task: str, settings: XGBoostSettings, log: Any) -> tuple[Any, Any]:
    """Row positions to fit on and to validate on, stratified by class when possible."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(y))
    stratify = None
    if task == "classification":
        counts = np.bincount(y)
        if counts.min() >= 2 and round(len(y) * settings.validation_fraction) >= len(counts):
            stratify = y
        else:
            log("validation split not stratified: too few rows in some class")
    try:
        fit_idx, val_idx = train_test_split(
            positions,
            test_size=settings.validation_fraction,
            random_state=settings.seed,
            stratify=stratify,
        )
    except ValueError as exc:
        raise StepFailed(f"cannot hold out a validation set for early stopping: {exc}") from exc
    return np.sort(fit_idx), np.sort(val_idx)


def _progress_callback(xgb: Any, log: Any, n_rounds: int) -> xgb.callback.TrainingCallback:
    """A callback logging the first round and about ten more, with the validation score."""
    every = max(1, n_rounds // 10)

    class Progress(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            if epoch == 0 or (epoch + 1) % every == 0:
                scores = [
                    f"{metric} {history[-1]:.4f}"
                    for data in evals_log.values()
                    for metric, history in data.items()
                ]
                log(f"round {epoch + 1}/{n_rounds}" + (f": {', '.join(scores)}" if scores else ""))
            return False

    return Progress()


TRAINERS: list[type[TrainerStep]] = [XGBoost, Linear]
