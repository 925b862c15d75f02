"""Compiled packages executed as Kubeflow's driver and launcher execute them (tests/launcher/harness.py).

Every task runs from the package's own `command` and `args`, in a venv built like the image, with
cluster-shaped artifact URIs, its artifacts moved through the S3 test server and its secrets
mapped from the platform spec. What passes here is what the cluster would run.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from skitflow.api import compile_recipe
from skitflow.recipe.loader import load_recipe_text
from tests.launcher.harness import Launcher, ObjectStore, evaluate_condition
from tests.launcher.runtime_env import RuntimeEnv, ensure_runtime_env

REPO = Path(__file__).resolve().parents[2]
TICKETS = REPO / "examples" / "data" / "tickets.csv"
pytestmark = [pytest.mark.services, pytest.mark.slow]
#: Seconds each harness run took, reported at the end of the session (see tests/launcher/conftest.py).
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def runtime_env() -> RuntimeEnv:
    env = ensure_runtime_env()
    TIMINGS["runtime venv (" + ("built" if env.built else "reused") + ")"] = env.seconds
    return env


@pytest.fixture(scope="session")
def store(s3_server: Any) -> ObjectStore:
    client = s3_server.client()
    if "mlpipeline" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket="mlpipeline")  # the artifact bucket of a KFP install
    return ObjectStore(client)


def object_store_secret(s3_server: Any) -> dict[str, dict[str, str]]:
    """The Kubernetes secret `object-store` the seed workflow names, pointing at the test server."""
    return {"object-store": {"access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
                             "endpoint": s3_server.endpoint_url}}


def launch(text: str, runtime_env: RuntimeEnv, store: ObjectStore, tmp_path: Path, label: str,
           arguments: dict[str, Any] | None = None, **options: Any) -> Any:
    started = time.monotonic()
    run = Launcher(text, runtime_env, store, tmp_path / label, **options).run(arguments)
    TIMINGS[label] = time.monotonic() - started
    return run


def compile_text(recipe: str, tmp_path: Path) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    return compile_recipe(load_recipe_text(recipe, str(path))).text


def failure_log(run: Any) -> str:
    return "\n".join(f"--- {n}: {t.status} {t.error}\n{t.log[-3000:]}" for n, t in run.tasks.items()
                     if t.status == "failed")


# -- the seed workflow -----------------------------------------------------------------------------


def test_seed_workflow_runs_as_kubeflow_runs_it(runtime_env: RuntimeEnv, store: ObjectStore,
                                                s3_server: Any, labelstudio_server: Any,
                                                tmp_path: Path) -> None:
    bucket = s3_server.create_bucket()
    s3_server.client().upload_file(str(TICKETS), bucket, "in/tickets.csv")
    package = compile_recipe(REPO / "recipes" / "seed-workflow.yaml").text
    created = "2031-01-02T23:59:58Z"  # two seconds before midnight: every task must still say the 2nd
    project = f"parity {secrets.token_hex(4)}"
    run = launch(package, runtime_env, store, tmp_path, "seed-workflow",
                 {"data": f"s3://{bucket}/in/tickets.csv", "bucket": bucket, "project": project,
                  "min_f1": 0.5},
                 secrets={**object_store_secret(s3_server),
                          "labelstudio": {"url": labelstudio_server.url, "token": labelstudio_server.token}},
                 created=created, run_name="seed-workflow-parity")
    assert run.status == "succeeded", failure_log(run)
    assert run.ran() == ["csv-to-drop-columns", "evaluate-classification", "labelstudio-dataset",
                         "s3-dataset", "s3-model", "split-train-test", "train-xgboost"]
    client = s3_server.client()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    # `run.date` is the run's creation day, in every task, however long the run takes
    assert {"seed-workflow/2031-01-02/dataset.parquet", "seed-workflow/2031-01-02/model.zip"} <= keys
    # every artifact went through the object store at its cluster-shaped URI
    for name in ("csv-to-drop-columns", "split-train-test", "train-xgboost", "evaluate-classification"):
        for output, artifact in run.task(name).artifacts.items():
            if output == "classification":  # metadata only (a confusion matrix): no file to move
                continue
            assert artifact.uri.startswith(f"minio://mlpipeline/v2/artifacts/seed-workflow/{run.run_id}/{name}/")
            prefix = artifact.uri.removeprefix("minio://mlpipeline/")
            assert client.list_objects_v2(Bucket="mlpipeline", Prefix=prefix)["KeyCount"] >= 1, artifact.uri
    # tasks that use run.* got the driver's values, and recorded them
    sink_input = run.task("s3-dataset").executor_input["inputs"]["parameterValues"]
    assert sink_input["run_created"] == created
    assert "run_created" not in run.task("train-xgboost").executor_input["inputs"]["parameterValues"]
    assert '"date": "2031-01-02"' in run.task("s3-dataset").log


def test_seed_workflow_as_shipped_fails_on_the_cluster(runtime_env: RuntimeEnv, store: ObjectStore,
                                                       tmp_path: Path) -> None:
    """Its default `data` is a relative local CSV, which the image does not contain."""
    package = compile_recipe(REPO / "recipes" / "seed-workflow.yaml").text
    run = launch(package, runtime_env, store, tmp_path, "seed-workflow-default-data",
                 secrets={"object-store": {"access_key": "a", "secret_key": "b", "endpoint": "http://x"},
                          "labelstudio": {"url": "http://x", "token": "t"}})
    assert run.status == "failed"
    prepare = run.task("csv-to-drop-columns")
    assert prepare.status == "failed"
    assert "no such file: examples/data/tickets.csv" in prepare.log
    assert all(t.status in ("not run", "skipped") for n, t in run.tasks.items() if n != "csv-to-drop-columns")


def _old_run_id(uri: str) -> str:
    """The guess `skitflow.run.runtime._run_id` made before run identity came from kfp (a copy)."""
    parts = [p for p in uri.rstrip("/").split("/") if p]
    return parts[-3] if len(parts) >= 3 else "local"


def test_the_old_run_id_guess_fails_on_cluster_shaped_paths(runtime_env: RuntimeEnv, store: ObjectStore,
                                                            s3_server: Any, tmp_path: Path) -> None:
    bucket = s3_server.create_bucket()
    s3_server.client().upload_file(str(TICKETS), bucket, "tickets.csv")
    recipe = f"""\
apiVersion: skitflow/v1
name: run-identity
defaults:
  secrets: [{{secret: object-store, env: {{AWS_ACCESS_KEY_ID: access_key, AWS_SECRET_ACCESS_KEY: secret_key, AWS_ENDPOINT_URL: endpoint}}}}]
source:
  csv: {{path: "s3://{bucket}/tickets.csv", columns: [ticket_id, subject]}}
sinks:
  - s3: {{uri: "s3://{bucket}/out/{{{{ run.id }}}}/{{{{ run.date }}}}/rows.csv", format: csv}}
"""
    run = launch(compile_text(recipe, tmp_path), runtime_env, store, tmp_path, "run-identity",
                 secrets=object_store_secret(s3_server), created="2030-06-30T23:59:59Z")
    assert run.status == "succeeded", failure_log(run)
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]]
    assert keys == [f"out/{run.run_id}/2030-06-30/rows.csv"]
    # What the old guess makes of the paths a cluster task sees: a task name, never the run id.
    sink = run.task("s3-dataset").executor_input
    input_path = Launcher._local(Path("/"), sink["inputs"]["artifacts"]["data"]["artifacts"][0]["uri"])
    assert _old_run_id(str(input_path)) == "csv"  # the producer task's name
    assert _old_run_id(str(input_path)) != run.run_id


# -- conditions, gates, parameters -------------------------------------------------------------------

SPLIT_RECIPE = """\
apiVersion: skitflow/v1
name: parity-split
parameters:
  min_accuracy: {{type: float, default: 0.0}}
  bucket: {{type: str, default: {bucket}}}
defaults:
  secrets: [{{secret: object-store, env: {{AWS_ACCESS_KEY_ID: access_key, AWS_SECRET_ACCESS_KEY: secret_key, AWS_ENDPOINT_URL: endpoint}}}}]
source:
  csv: {{path: "s3://{bucket}/{data}"}}
split:
  train_test: {{test_size: 0.25, stratify: label, seed: 3}}
  when: "'split' not in columns"
  otherwise:
    by_column: {{column: split}}
trainer:
  xgboost: {{target: label, params: {{n_estimators: 20}}}}
evaluator:
  classification: {{target: label}}
  gate: {{metric: accuracy, min: "{{{{ params.min_accuracy }}}}"}}
sinks:
  - s3: {{uri: "s3://{{{{ params.bucket }}}}/model.json"}}
    input: model
"""


def _rows(with_split: bool) -> bytes:
    import pandas as pd

    frame = pd.DataFrame({"x": range(80), "y": [i % 7 for i in range(80)],
                          "label": ["a" if i % 2 else "b" for i in range(80)]})
    if with_split:
        frame["split"] = ["test" if i % 4 == 0 else "train" for i in range(80)]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@pytest.mark.parametrize("with_split", [False, True], ids=["random-split", "split-column"])
def test_a_data_condition_picks_the_branch_from_the_ir(with_split: bool, runtime_env: RuntimeEnv,
                                                       store: ObjectStore, s3_server: Any,
                                                       tmp_path: Path) -> None:
    bucket = s3_server.create_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="rows.csv", Body=_rows(with_split))
    package = compile_text(SPLIT_RECIPE.format(bucket=bucket, data="rows.csv"), tmp_path)
    run = launch(package, runtime_env, store, tmp_path, f"conditional-split-{with_split}",
                 secrets=object_store_secret(s3_server))
    assert run.status == "succeeded", failure_log(run)
    chosen, other = ("split-by-column", "split-train-test") if with_split else (
        "split-train-test", "split-by-column")
    assert run.task(chosen).status == "succeeded"
    assert other not in run.tasks  # its condition DAG was skipped: the task was never created
    assert sorted(t.status for n, t in run.tasks.items() if n.startswith("condition-") and n[-1] != "/") == ["skipped"]
    # the OneOf output of the branches fed the trainer from the branch that ran
    train_input = run.task("train-xgboost").executor_input["inputs"]["artifacts"]["train"]["artifacts"][0]
    assert f"/{chosen}/" in train_input["uri"]
    assert run.task("s3-model").status == "succeeded"


def test_a_gated_sink_is_skipped_by_a_parameter_override(runtime_env: RuntimeEnv, store: ObjectStore,
                                                         s3_server: Any, tmp_path: Path) -> None:
    bucket = s3_server.create_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="rows.csv", Body=_rows(False))
    package = compile_text(SPLIT_RECIPE.format(bucket=bucket, data="rows.csv"), tmp_path)
    run = launch(package, runtime_env, store, tmp_path, "gated-sink", {"min_accuracy": 1.01},
                 secrets=object_store_secret(s3_server))
    assert run.status == "succeeded", failure_log(run)
    evaluate = run.task("evaluate-classification")
    assert evaluate.executor_input["inputs"]["parameterValues"]["param_min_accuracy"] == 1.01
    assert evaluate.parameters["passed"] is False
    assert "s3-model" not in run.tasks
    assert [n for n, t in run.tasks.items() if t.status == "skipped"] == ["condition-3", "condition-4"]
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket, Prefix="model.json")


def test_a_parameter_condition_is_decided_by_the_trigger_policy() -> None:
    """The CEL the compiler writes, evaluated as the driver does (pure)."""
    values = {"pipelinechannel--holdout": True, "pipelinechannel--n": 3}
    assert evaluate_condition("inputs.parameter_values['pipelinechannel--holdout'] == true", values)
    assert not evaluate_condition("!(inputs.parameter_values['pipelinechannel--holdout'] == true)", values)
    assert evaluate_condition("int(inputs.parameter_values['pipelinechannel--n']) >= 3 && "
                              "!(inputs.parameter_values['pipelinechannel--holdout'] == false)", values)
    assert not evaluate_condition("inputs.parameter_values['pipelinechannel--n'] == '&& true'", values)


def test_an_exit_handler_runs_after_a_failure(runtime_env: RuntimeEnv, store: ObjectStore,
                                              tmp_path: Path) -> None:
    """Exit handlers come from the IR too: the handler runs although the guarded task failed, and
    gets its final status (a plain kfp pipeline: skitflow compiles none yet)."""
    from kfp import compiler

    from tests.launcher.exit_pipeline import pipeline

    path = tmp_path / "exit.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    run = launch(path.read_text(), runtime_env, store, tmp_path, "exit-handler")
    assert run.status == "failed"
    assert run.task("fail").status == "failed"
    assert run.task("report").status == "succeeded"
    assert json.loads(json.dumps(run.task("report").parameters))["Output"] == "FAILED"


NOTIFY_RECIPE = """\
apiVersion: skitflow/v1
name: notify-parity
source:
  csv: {{path: {path}}}
steps:
  - drop_duplicates: {{subset: [ticket_id]}}
notify:
  - webhook: {{url_env: HOOK_URL, on: [failure, success], secret: hooks, secret_key: url}}
"""


@pytest.mark.parametrize("fails", [True, False], ids=["failed-run", "succeeded-run"])
def test_notify_runs_as_the_exit_handler_with_the_final_status(fails: bool, runtime_env: RuntimeEnv,
                                                               store: ObjectStore, tmp_path: Path) -> None:
    """skitflow's own exit handler: the notify task runs after the guarded tasks whatever they did,
    gets the URL only from the Kubernetes secret, and posts the final status it was given."""
    from tests.notify_receiver import running_receiver

    path = tmp_path / "missing.csv" if fails else TICKETS
    package = compile_text(NOTIFY_RECIPE.format(path=path), tmp_path)
    secret_url = "/hooks/T024BE7LD/Xk9vQ2mZ8pL4rT6wY1nB3cD5"
    with running_receiver() as receiver:
        assert receiver.url not in package
        run = launch(package, runtime_env, store, tmp_path, f"notify-{'failed' if fails else 'ok'}",
                     secrets={"hooks": {"url": receiver.url + secret_url}})
    assert run.status == ("failed" if fails else "succeeded"), failure_log(run)
    assert run.task("notify").status == "succeeded", failure_log(run)
    [body] = receiver.bodies(secret_url)
    assert body["event"] == ("failure" if fails else "success")
    assert body["run"]["id"] == run.run_id and body["run"]["name"]
    assert body["seconds"] is not None and body["seconds"] >= 0
    assert "metrics" not in body and "cannot read the outputs" in body["notes"][0]
    if fails:
        assert body["failure"]["error"], body
    assert "Xk9vQ2mZ8pL4rT6wY1nB3cD5" not in run.task("notify").log
