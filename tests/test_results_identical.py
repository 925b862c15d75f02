"""Speed-ups must not change results: the benchmark recipe on the shipped tickets CSV publishes the
same dataset rows and Parquet bytes, the same model and the same metrics as the implementation
before the performance work (issue 15; reference recorded from commit 914e496 with this
environment's pandas 3.1.1, pyarrow 26.0.1 and xgboost 3.2.0)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "benchmarks" / "recipes" / "local-run.yaml"
DATA = REPO / "examples" / "data" / "tickets.csv"

REFERENCE = {
    "shape": (2909, 10),
    "rows_sha256": "3725dc8929402c5fa5747bfcd1bb39b0da9d6ebf772b44c23e378757572f9e49",
    "parquet_sha256": "cc9af0ff871cf7dca55a6ee573a6b197559f268f59b92b4132a7de1302db6d56",
    "model_ubj_sha256": "ed8cae9fbf6ec733cf1adee9a241b469844906cdc77d52d8b8f4abd21939d5bc",
    "metrics": {"accuracy": 0.8814432989690721, "f1_macro": 0.8689334006852145,
                "f1_weighted": 0.882066605634038, "log_loss": 0.3253576457500458,
                "precision_macro": 0.864433461574117, "precision_weighted": 0.885210055409066,
                "recall_macro": 0.8761920514955697, "recall_weighted": 0.8814432989690721,
                "roc_auc": 0.9772448406717764},
}


@pytest.mark.slow
@pytest.mark.parametrize("warm", ["1", "0"], ids=["warm-worker", "fresh-interpreters"])
def test_the_benchmark_recipe_publishes_what_it_published_before(tmp_path: Path, warm: str) -> None:
    """Tasks forked from the warm worker and tasks in fresh interpreters publish the same bytes."""
    import pandas as pd

    out = tmp_path / "run"
    env = {**os.environ, "SKITFLOW_WARM_WORKER": warm,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "skitflow", "run", str(RECIPE), "--no-cache", "--out", str(out),
         "-p", f"data={DATA}", "-p", f"out_dir={out / 'published'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    published = out / "published"

    frame = pd.read_parquet(published / "dataset.parquet")
    rows = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).values.tobytes()).hexdigest()
    assert (frame.shape, rows) == (REFERENCE["shape"], REFERENCE["rows_sha256"])
    parquet = hashlib.sha256((published / "dataset.parquet").read_bytes()).hexdigest()
    assert parquet == REFERENCE["parquet_sha256"]
    with zipfile.ZipFile(published / "model.json") as bundle:
        model = hashlib.sha256(bundle.read("model.ubj")).hexdigest()
    assert model == REFERENCE["model_ubj_sha256"]
    metrics = json.loads((published / "metrics.json").read_text())["metrics"]
    assert metrics == REFERENCE["metrics"]
