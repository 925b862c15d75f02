"""The annotation loop of the seed workflow, end to end against real servers on 127.0.0.1.

examples/annotation/prepare-for-annotation.yaml reads tickets from PostgreSQL, writes a reference
copy to S3 and sends a sample to Label Studio; annotators (played here through Label Studio's API)
label them; examples/annotation/train-from-annotations.yaml reads the annotations back as a source,
trains, evaluates and uploads the model to S3 through the same sink as datasets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "annotation"
pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def loop_env(s3_server: Any, postgres_server: Any, labelstudio_server: Any) -> dict[str, str]:
    tickets = pd.read_csv(REPO / "examples" / "data" / "tickets.csv")
    from sqlalchemy import create_engine

    engine = create_engine(postgres_server.url)
    with engine.begin() as connection:
        tickets.drop(columns=["label"]).to_sql("tickets", connection, if_exists="replace", index=False)
    engine.dispose()
    bucket = s3_server.create_bucket(f"loop-{uuid.uuid4().hex[:8]}")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ.update(s3_server.env())
    environ.update({
        "DATABASE_URL": postgres_server.url,
        "LABEL_STUDIO_URL": labelstudio_server.url,
        "LABEL_STUDIO_API_KEY": labelstudio_server.token,
        "BUCKET": bucket,
        "PROJECT": f"tickets-{uuid.uuid4().hex[:8]}",
    })
    return environ


def run(recipe: str, environ: dict[str, str], out: Path, *params: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "skitflow", "run", str(EXAMPLES / recipe), "--out", str(out),
            "--param", f"bucket={environ['BUCKET']}", "--param", f"project={environ['PROJECT']}"]
    for param in params:
        args += ["--param", param]
    return subprocess.run(args, cwd=out.parent, env=environ, capture_output=True, text=True, timeout=600)


def test_prepare_annotate_train(loop_env: dict[str, str], s3_server: Any, labelstudio_server: Any,
                                tmp_path: Path) -> None:
    from skitflow.connectors.labelstudio import LabelStudioClient

    first = run("prepare-for-annotation.yaml", loop_env, tmp_path / "prepare-1", "sample_rows=120")
    assert first.returncode == 0, first.stdout + first.stderr
    client = LabelStudioClient.from_env(loop_env)
    project = client.find_project(loop_env["PROJECT"])
    tasks = list(client.iter_tasks(project["id"]))
    assert len(tasks) == 120

    again = run("prepare-for-annotation.yaml", loop_env, tmp_path / "prepare-2", "sample_rows=120")
    assert again.returncode == 0, again.stderr
    assert len(list(client.iter_tasks(project["id"]))) == 120, "a re-run must not duplicate tasks"

    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=loop_env["BUCKET"])["Contents"]]
    assert any(k.startswith("tickets-for-annotation/") and k.endswith("tickets.parquet") for k in keys)

    # Annotators label every task (the truth comes from the example's labels).
    truth = pd.read_csv(REPO / "examples" / "data" / "tickets.csv").drop_duplicates("ticket_id")
    label_of = dict(zip(truth["ticket_id"], truth["label"], strict=True))
    for task in tasks:
        label = label_of[task["data"]["ticket_id"]]
        client.create_annotation(task["id"], [{
            "from_name": "label", "to_name": "subject", "type": "choices",
            "value": {"choices": [label]},
        }])

    train = run("train-from-annotations.yaml", loop_env, tmp_path / "train", "min_f1=0.3")
    assert train.returncode == 0, train.stdout + train.stderr
    summary = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert summary["gate"]["passed"] is True
    assert summary["tasks"]["labelstudio-fillna"]["rows"] == 120
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=loop_env["BUCKET"])["Contents"]]
    model_key = next(k for k in keys if k.startswith("tickets-from-annotations/") and k.endswith("model.zip"))
    assert any(k.endswith("report.html") for k in keys)
    body = s3_server.client().get_object(Bucket=loop_env["BUCKET"], Key=model_key)["Body"].read()
    (tmp_path / "model.zip").write_bytes(body)
    import skitflow

    metadata = skitflow.load_model(tmp_path / "model.zip").metadata
    assert metadata["target"] == "team"
    assert metadata["recipe"] == "tickets-from-annotations"


def test_the_seed_workflow_end_to_end(loop_env: dict[str, str], s3_server: Any, tmp_path: Path) -> None:
    """recipes/seed-workflow.yaml: CSV -> steps -> S3 + Label Studio -> split -> train -> gated S3."""
    from skitflow.connectors.labelstudio import LabelStudioClient

    args = [sys.executable, "-m", "skitflow", "run", "recipes/seed-workflow.yaml", "--out",
            str(tmp_path / "run"), "--no-cache", "--param", f"bucket={loop_env['BUCKET']}",
            "--param", f"project={loop_env['PROJECT']}"]
    result = subprocess.run(args, cwd=REPO, env=loop_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["gate"]["passed"] is True
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=loop_env["BUCKET"])["Contents"]}
    assert any(k.startswith("seed-workflow/") and k.endswith("/dataset.parquet") for k in keys)
    assert any(k.startswith("seed-workflow/") and k.endswith("/model.zip") for k in keys)
    client = LabelStudioClient.from_env(loop_env)
    project = client.find_project(loop_env["PROJECT"])
    assert len(list(client.iter_tasks(project["id"]))) == 2941
