"""Hand-written twin of benchmarks/recipes/local-run.yaml: pandas + xgboost in one process.

Same steps, parameters and model settings as the recipe (and as skitflow's steps implement
them; `one_hot` and `standardize` are fitted on the train rows after the split, so the published
dataset is the one before them), same outputs: a Parquet dataset, the xgboost model (JSON) and a metrics JSON. What it
does not do, being one script: pass artifacts between tasks, write the HTML report with its two
matplotlib figures, or embed skitflow's metadata in the model.

    python benchmarks/baselines/local_run.py DATA.csv OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn import metrics
from sklearn.model_selection import train_test_split

COLUMNS = ["ticket_id", "created_at", "subject", "channel", "priority", "customer_age",
           "account_months", "num_previous_tickets", "response_minutes", "label"]
NUMERIC = ["customer_age", "account_months", "num_previous_tickets", "response_minutes"]
TARGET = "label"
MIN_F1 = 0.5


def prepare(path: str) -> pd.DataFrame:
    """Read and clean: dedupe, dropna, filter, strip + lowercase (the published dataset)."""
    frame = pd.read_csv(path, usecols=COLUMNS)[COLUMNS]
    frame = frame.drop_duplicates(subset=["ticket_id"]).dropna(subset=[TARGET, "subject"])
    frame = frame[(frame["account_months"] >= 1) & (frame["customer_age"] < 80)]
    frame = frame.reset_index(drop=True)
    frame["subject"] = frame["subject"].str.strip().str.lower()
    return frame


def fit_encoding(train: pd.DataFrame) -> dict:
    """One-hot categories and standardize statistics, learnt from the train rows only (as
    skitflow fits `one_hot` and `standardize` after the split)."""
    categories = {c: pd.Categorical(train[c]).categories.tolist() for c in ("channel", "priority")}
    stats = {c: (train[c].astype("float64").mean(), train[c].astype("float64").std(ddof=0))
             for c in NUMERIC}
    return {"categories": categories, "stats": stats}


def encode(frame: pd.DataFrame, state: dict) -> pd.DataFrame:
    """Apply the fitted one-hot columns and standardization to some rows."""
    encoded = {}
    for column, categories in state["categories"].items():
        codes = pd.Index(categories).get_indexer(frame[column])
        for code, value in enumerate(categories):
            encoded[f"{column}_{value}"] = (codes == code).astype("int8")
    frame = pd.concat([frame.drop(columns=list(state["categories"])),
                       pd.DataFrame(encoded, index=frame.index)], axis=1)
    for column, (mean, std) in state["stats"].items():
        frame[column] = (frame[column].astype("float64") - mean) / std
    return frame


def main(data: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages, started = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal started
        stages[stage] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()

    frame = prepare(data)
    lap("prepare")
    frame.to_parquet(out / "dataset.parquet", engine="pyarrow", index=False, compression="snappy")
    lap("write dataset")

    codes, classes = pd.factorize(frame[TARGET], sort=True)
    train_idx, test_idx = train_test_split(
        np.arange(len(frame)), test_size=0.2, random_state=7, stratify=codes
    )
    y = codes.astype(np.int32)
    state = fit_encoding(frame.iloc[train_idx])
    x_train, x_test = encode(frame.iloc[train_idx], state), encode(frame.iloc[test_idx], state)
    features = [c for c in x_train.columns if c != TARGET and pd.api.types.is_numeric_dtype(x_train[c])]
    x_train, x_test = x_train[features], x_test[features]
    model = xgb.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.1,
                              tree_method="hist", random_state=42)
    lap("split")
    model.fit(x_train, y[train_idx], verbose=False)
    lap("train")

    truth = y[test_idx]
    probabilities = model.predict_proba(x_test)
    predicted = probabilities.argmax(axis=1)
    scores = {"accuracy": metrics.accuracy_score(truth, predicted)}
    for average in ("macro", "weighted"):
        p, r, f, _ = metrics.precision_recall_fscore_support(
            truth, predicted, average=average, zero_division=0
        )
        scores.update({f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f})
    scores["log_loss"] = metrics.log_loss(truth, probabilities, labels=range(len(classes)))
    scores["roc_auc"] = float(np.mean([
        metrics.roc_auc_score(truth == c, probabilities[:, c]) for c in range(len(classes))
    ]))
    matrix = metrics.confusion_matrix(truth, predicted).tolist()
    result = {"metrics": {k: float(v) for k, v in scores.items()}, "classes": classes.tolist(),
              "n": len(truth), "confusion_matrix": matrix}
    (out / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    if scores["f1_macro"] >= MIN_F1:  # the recipe's gate
        model.get_booster().save_model(str(out / "model.json"))
    lap("evaluate")
    print(f"rows {len(frame)}, train {len(train_idx)}, test {len(test_idx)}, "
          f"f1_macro {scores['f1_macro']:.4f}")
    print("BENCH-STAGES " + json.dumps(stages))


if __name__ == "__main__":
    main(*sys.argv[1:3])
