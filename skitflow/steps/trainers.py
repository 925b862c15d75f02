"""Trainer steps: fit a model on the train set and save it as one self-describing file.

The xgboost trainer writes the model in xgboost's JSON format (`Booster.save_raw("json")`, the
same bytes `save_model("model.json")` writes, whatever `model_path`'s extension) and embeds
everything needed to use it later as one booster attribute, ``skitflow_metadata`` (a JSON
string): task, target, features, categorical columns with their categories, classes, parameters
and library versions. So the file alone is enough to evaluate or serve the model:
:func:`read_model` returns the booster and that metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from skitflow.errors import StepFailed, did_you_mean
from skitflow.steps.base import RunContext, StepSettings, TrainerStep

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb

#: Booster attribute holding the model's metadata as JSON.
METADATA_ATTR = "skitflow_metadata"
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


class XGBoostSettings(StepSettings):
    """Gradient-boosted trees with xgboost, for classification or regression.

    `task: auto` means classification when the target is not numeric (text, category, bool) or
    holds at most 20 distinct integer values, and regression otherwise. Class labels are
    encoded in sorted order; the model file keeps them, so predictions map back to labels.
    """

    target: str = Field(description="Column to predict.")
    task: Literal["classification", "regression", "auto"] = Field(
        "auto", description="classification | regression | auto (see above)."
    )
    features: list[str] | None = Field(
        None,
        description="Feature columns; default: every numeric and bool column except the target, "
        "plus the `categorical` columns.",
    )
    categorical: list[str] = Field(
        default_factory=list,
        description="Columns used as categories (pandas `category` dtype, xgboost "
        "enable_categorical); text columns must be listed here or encoded before training.",
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
            if not self.features:
                raise ValueError("`features` is empty; list columns or leave it out")
            duplicated = sorted({f for f in self.features if self.features.count(f) > 1})
            if duplicated:
                raise ValueError(f"`features` lists {duplicated} more than once")
            if self.target in self.features:
                raise ValueError(f"the target `{self.target}` cannot also be a feature")
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
    """Train an xgboost classifier or regressor; the model file carries its own metadata."""

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

    def run(
        self, train: pd.DataFrame, settings: XGBoostSettings, model_path: str, ctx: RunContext
    ) -> dict:
        import numpy as np
        import pandas as pd
        import xgboost as xgb

        log = ctx.log or (lambda _line: None)
        started = time.perf_counter()
        if settings.target not in train.columns:
            raise StepFailed(f"target column `{settings.target}` is not in the train set")
        target = train[settings.target]
        if target.isna().any():
            raise StepFailed(
                f"target `{settings.target}` has {int(target.isna().sum())} missing value(s)",
                hint="drop those rows before training (e.g. a `dropna` transform)",
            )
        task = settings.task if settings.task != "auto" else infer_task(target)
        features = _resolve_features(train, settings, log)
        categories = {
            c: _categories_of(train[c]) for c in features if c in set(settings.categorical)
        }
        x = prepare_features(train, features, categories)

        classes: list[Any] | None = None
        if task == "classification":
            codes, uniques = pd.factorize(target, sort=True)
            classes = uniques.tolist()
            if len(classes) < 2:
                raise StepFailed(
                    f"target `{settings.target}` has a single class ({classes[0]!r}); "
                    "a classifier needs at least two"
                )
            y = codes.astype(np.int32, copy=False)
        else:
            if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
                raise StepFailed(
                    f"regression target `{settings.target}` is not numeric ({target.dtype})",
                    hint="use `task: classification`, or convert the column to numbers",
                )
            y = target.to_numpy(dtype=np.float64)

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
            x_fit, y_fit = x.iloc[fit_idx], y[fit_idx]
            eval_set = [(x.iloc[val_idx], y[val_idx])]
            kwargs["early_stopping_rounds"] = settings.early_stopping_rounds

        n_rounds = int(params.get("n_estimators") or 100)
        kwargs["callbacks"] = [_progress_callback(xgb, log, n_rounds)]
        model_class = xgb.XGBClassifier if task == "classification" else xgb.XGBRegressor
        model = model_class(**kwargs)
        log(
            f"xgboost {xgb.__version__}: training {task} on {len(x_fit):,} rows x "
            f"{len(features)} features"
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
            "format": "xgboost-json",
            "library": "xgboost",
            "recipe": ctx.recipe_name,
            "run_id": ctx.run_id or None,  # known when the recipe uses run.*
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
            "train_rows": len(x_fit),
            "validation_rows": len(eval_set[0][1]) if eval_set else 0,
            "versions": _versions(),
        }
        metadata = json.loads(json.dumps(metadata, default=_jsonable))  # plain JSON types only
        booster.set_attr(**{METADATA_ATTR: json.dumps(metadata)})
        with open(model_path, "wb") as handle:
            handle.write(booster.save_raw(raw_format="json"))
        elapsed = time.perf_counter() - started
        log(f"model saved: {booster.num_boosted_rounds()} boosting rounds in {elapsed:.1f} s")
        return metadata


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


def _resolve_features(frame: pd.DataFrame, settings: XGBoostSettings, log: Any) -> list[str]:
    """The feature columns, checked: present, and numeric unless declared categorical."""
    import pandas as pd

    categorical = set(settings.categorical)
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
            log(f"not used as features (not numeric): {', '.join(map(str, ignored))}")
        if not features:
            raise StepFailed(
                "no numeric feature columns in the train set",
                hint="list `features`, declare text columns in `categorical`, or encode them",
            )
    text = [c for c in features if c not in categorical and not numeric(c)]
    if text:
        kinds = ", ".join(f"`{c}` ({frame[c].dtype})" for c in text)
        raise StepFailed(
            f"feature column(s) are not numeric: {kinds}",
            hint="add them to `categorical`, or encode them first (one_hot / label_encode)",
        )
    return [str(c) for c in features]


def _categories_of(column: pd.Series) -> list[Any]:
    """The categories of a column, sorted, as stored in the model for use at prediction time."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.categories.tolist()
    return column.astype("category").cat.categories.tolist()


def prepare_features(
    frame: pd.DataFrame, features: Sequence[str], categories: dict[str, list[Any]]
) -> pd.DataFrame:
    """The feature frame in training order, categorical columns typed with the training categories.

    Fixing the categories (not re-inferring them from the data at hand) keeps category codes the
    same at training and prediction time; a value unseen in training becomes missing.
    """
    import pandas as pd

    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise StepFailed(f"the model needs column(s) missing from the data: {', '.join(missing)}")
    x = frame[list(features)]
    if categories:
        typed = {
            column: pd.Categorical.from_codes(
                pd.Index(cats).get_indexer(x[column]), categories=cats
            )
            for column, cats in categories.items()
        }
        x = x.assign(**typed)
    return x


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


def _versions() -> dict[str, str]:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    import skitflow

    return {
        "skitflow": skitflow.__version__,
        "xgboost": xgb.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }


def _jsonable(value: Any) -> Any:
    """numpy scalars and timestamps in metadata become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_model(model_path: str) -> tuple[xgb.Booster, dict[str, Any]]:
    """Load a model file written by the xgboost trainer: the booster and its embedded metadata."""
    import xgboost as xgb

    with open(model_path, "rb") as handle:
        raw = bytearray(handle.read())
    booster = xgb.Booster()
    try:
        booster.load_model(raw)  # bytes: no guessing the format from the file name
    except xgb.core.XGBoostError as exc:
        raise StepFailed(f"{model_path} is not an xgboost model: {exc}") from exc
    text = booster.attr(METADATA_ATTR)
    if not text:
        raise StepFailed(
            f"{model_path} has no skitflow metadata",
            hint="evaluate models trained by a skitflow trainer",
        )
    return booster, json.loads(text)


TRAINERS: list[type[TrainerStep]] = [XGBoost]
