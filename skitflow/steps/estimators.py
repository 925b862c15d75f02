"""Trained models as the bundle holds them: bytes in a library's own format, and a scorer.

Two families: xgboost boosters (xgboost's own UBJSON format) and linear models (their
coefficients as JSON). Each knows how to write itself as files inside a bundle and to be rebuilt
from those files without running any code from them, and how to score a design matrix. The
design matrix is built here too, in one place, so training, evaluation and prediction cannot
disagree about feature order, categories or sparse blocks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skitflow.errors import StepFailed

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass
class FeatureBlock:
    """A sparse feature block made by a text step: CSR rows aligned with the frame's rows."""

    name: str  # "tfidf:utterance"
    matrix: Any  # scipy.sparse.csr_matrix
    names: list[str] = field(default_factory=list)  # empty when too many to name (hashing)

    @property
    def width(self) -> int:
        return int(self.matrix.shape[1])


@dataclass
class Rows:
    """What flows after the split: a DataFrame plus the sparse blocks made from its text."""

    frame: pd.DataFrame
    blocks: list[FeatureBlock] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class Design:
    """Which inputs a model reads, in order: dense columns, their categories, sparse blocks."""

    features: list[str]
    categorical: dict[str, list[Any]]
    blocks: list[dict[str, Any]]  # [{"name": ..., "width": ...}]

    def to_json(self) -> dict[str, Any]:
        return {"features": self.features, "categorical": self.categorical, "blocks": self.blocks}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Design:
        return cls(list(data["features"]), dict(data.get("categorical") or {}),
                   [dict(b) for b in data.get("blocks") or []])

    @property
    def width(self) -> int:
        return len(self.features) + sum(int(b["width"]) for b in self.blocks)


def design_matrix(rows: Rows, design: Design, *, categorical_ok: bool = True) -> Any:
    """The model's input: a DataFrame (dense, categories fixed) or a CSR matrix (with blocks).

    Categories are the training ones (a value unseen in training becomes missing), blocks must
    have the width they had in training, and missing columns are named all at once.
    """
    import pandas as pd

    frame = rows.frame
    missing = [c for c in design.features if c not in frame.columns]
    blocks = {b.name: b for b in rows.blocks}
    missing += [f"{b['name']} (sparse features)" for b in design.blocks if b["name"] not in blocks]
    if missing:
        raise StepFailed(f"the model needs column(s) missing from the data: {', '.join(missing)}",
                         hint="score rows with the columns the model was trained on")
    x = frame[list(design.features)]
    if design.categorical:
        if not categorical_ok:
            raise StepFailed("this model cannot read categorical columns",
                             hint="one_hot or label_encode them first")
        typed = {column: pd.Categorical.from_codes(pd.Index(cats).get_indexer(x[column]), categories=cats)
                 for column, cats in design.categorical.items()}
        x = x.assign(**typed)
    if not design.blocks:
        return x
    if design.categorical:
        raise StepFailed("categorical columns cannot be combined with sparse text features",
                         hint="one_hot or label_encode the categorical columns instead")
    import numpy as np
    import scipy.sparse as sp

    parts = []
    if design.features:
        parts.append(sp.csr_matrix(x.to_numpy(dtype=np.float64, na_value=np.nan)))
    for spec in design.blocks:
        block = blocks[spec["name"]]
        if block.width != int(spec["width"]):
            raise StepFailed(f"sparse features `{spec['name']}` have {block.width} columns, the model "
                             f"was trained on {spec['width']}")
        parts.append(block.matrix)
    return sp.hstack(parts, format="csr") if len(parts) > 1 else parts[0].tocsr()


def checked_target(frame: pd.DataFrame, column: str, where: str) -> pd.Series:
    """The target column of the train or test set: present, without nulls, not empty."""
    if column not in frame.columns:
        raise StepFailed(f"target column `{column}` is not in the {where}")
    target = frame[column]
    if target.isna().any():
        raise StepFailed(
            f"target `{column}` has {int(target.isna().sum())} missing value(s) in the {where}",
            hint="drop those rows first (e.g. a `dropna` transform)",
        )
    if len(target) == 0:
        raise StepFailed(f"the {where} is empty")
    return target


def take_rows(x: Any, positions: Any) -> Any:
    """Rows of a DataFrame or a sparse matrix by position."""
    return x.iloc[positions] if hasattr(x, "iloc") else x[positions]


class XGBoostModel:
    """A booster; files: `model.ubj` (xgboost's UBJSON format)."""

    library = "xgboost"

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def files(self) -> dict[str, bytes]:
        return {"model.ubj": bytes(self.booster.save_raw(raw_format="ubj"))}

    @classmethod
    def load(cls, files: Mapping[str, bytes], metadata: Mapping[str, Any]) -> XGBoostModel:
        import xgboost as xgb

        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(files["model.ubj"]))
        except (KeyError, xgb.core.XGBoostError) as exc:
            raise StepFailed(f"the bundle's xgboost model is unreadable: {exc}") from None
        return cls(booster)

    def importance(self, width: int) -> list[float]:
        """Total gain of each input column (0 for columns no tree splits on)."""
        scores = self.booster.get_score(importance_type="total_gain")
        index = {name: i for i, name in enumerate(self.booster.feature_names or [])}
        values = [0.0] * width
        for key, value in scores.items():
            position = index.get(key)
            if position is None and key[:1] == "f" and key[1:].isdigit():
                position = int(key[1:])
            if position is not None and position < width:
                values[position] = float(value)
        return values

    def scores(self, x: Any, design: Design) -> np.ndarray:
        import xgboost as xgb

        data = xgb.DMatrix(x, enable_categorical=bool(design.categorical))
        self.booster.set_param({"device": "cpu"})  # scoring runs without a GPU, even for cuda models
        return self.booster.predict(data)


class LinearModel:
    """Coefficients and intercepts of a logistic or ridge regression; files: `model.json`."""

    library = "linear"

    def __init__(self, kind: str, coef: Any, intercept: Any) -> None:
        import numpy as np

        self.kind = kind  # "logistic" | "ridge"
        self.coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        self.intercept = np.atleast_1d(np.asarray(intercept, dtype=np.float64))

    def files(self) -> dict[str, bytes]:
        document = {"kind": self.kind, "coef": self.coef.tolist(), "intercept": self.intercept.tolist()}
        return {"model.json": json.dumps(document, separators=(",", ":")).encode()}

    @classmethod
    def load(cls, files: Mapping[str, bytes], metadata: Mapping[str, Any]) -> LinearModel:
        try:
            document = json.loads(files["model.json"])
            return cls(document["kind"], document["coef"], document["intercept"])
        except (KeyError, ValueError, TypeError) as exc:
            raise StepFailed(f"the bundle's linear model is unreadable: {exc}") from None

    def importance(self, width: int) -> list[float]:
        """Mean absolute coefficient of each input column over the classes (comparable between
        columns only when they are on one scale: standardize dense columns)."""
        return [float(v) for v in abs(self.coef).mean(axis=0)[:width]]

    def scores(self, x: Any, design: Design) -> np.ndarray:
        """Class probabilities (softmax, or the logistic of one score for two classes) or values,
        exactly as scikit-learn's predict_proba / predict compute them."""
        import numpy as np
        from scipy.special import expit, softmax

        if self.coef.shape[1] != design.width:
            raise StepFailed(f"the linear model has {self.coef.shape[1]} coefficients for "
                             f"{design.width} features")
        if hasattr(x, "iloc"):
            x = x.to_numpy(dtype=np.float64)
        decision = np.asarray(x @ self.coef.T) + self.intercept
        if self.kind == "ridge":
            return decision[:, 0]
        if decision.shape[1] == 1:
            return expit(decision[:, 0])
        return softmax(decision, axis=1)


#: library name in a bundle -> the class that rebuilds it; nothing else is ever loaded.
MODEL_LOADERS: dict[str, Any] = {"xgboost": XGBoostModel, "linear": LinearModel}


def class_probabilities(raw: np.ndarray) -> np.ndarray:
    """(rows, classes) probabilities from a classifier's output (binary gives P(class 1))."""
    import numpy as np

    return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw


def frame_hash(frame: pd.DataFrame) -> str:
    """A sha256 of the rows and columns a model was trained on, in row order (provenance).

    The frame is digested as one Arrow IPC record batch (column names, Arrow types, values),
    with every column made one contiguous array first, so the digest does not depend on how
    the rows happen to be chunked or sliced in memory. For 776,000 rows of the benchmark it
    takes 0.06 s in a warm process and about 0.2 s in a fresh task (most of it the copy into
    new memory), against 0.35 to 0.55 s for pandas' row hashes, which hash every text value
    as a Python object. A frame Arrow cannot type (a column of mixed Python objects, duplicate
    names) is digested with pandas' row hashes instead.
    """
    import hashlib

    import pandas as pd
    import pyarrow as pa

    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        batch = pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns],
                                           names=table.column_names)
    except (ValueError, TypeError):  # pyarrow's ArrowInvalid and ArrowTypeError among them
        if len(frame):
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()
    with pa.ipc.new_stream(_Digesting(digest), batch.schema) as writer:
        writer.write_batch(batch)
    return digest.hexdigest()


class _Digesting:
    """A write-only file that feeds what is written to a hash (nothing is kept)."""

    closed = False

    def __init__(self, digest: Any) -> None:
        self.digest = digest

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def versions(libraries: Sequence[str]) -> dict[str, str]:
    """Versions of skitflow and the libraries that made a bundle."""
    from importlib import metadata

    import skitflow

    found = {"skitflow": skitflow.__version__}
    for name in libraries:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
