"""Hand-written kfp pipeline of the same shape as recipes/seed-workflow.yaml, compiled by kfp.

Seven lightweight components on skitflow's base image: prepare -> S3 dataset sink, Label Studio
sink, split -> train -> evaluate (metrics, classification metrics, HTML report) -> S3 model sink
under `dsl.If` on the gate. Same pipeline parameters and defaults, and on every task the same
options: 1 CPU / 2Gi requested, 2 retries with a 30 s backoff, two Kubernetes secrets as env.
`run.py` checks that both packages have the same tasks and parameters.

    python benchmarks/baselines/compile_seed.py OUT.yaml
"""

import sys
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

IMAGE = "ghcr.io/skitflow/skitflow:0.1.0"
COLUMNS = ["ticket_id", "created_at", "subject", "channel", "priority", "customer_age",
           "account_months", "num_previous_tickets", "response_minutes", "label"]
SECRETS = {
    "object-store": {"access_key": "AWS_ACCESS_KEY_ID", "secret_key": "AWS_SECRET_ACCESS_KEY",
                     "endpoint": "AWS_ENDPOINT_URL"},
    "labelstudio": {"url": "LABEL_STUDIO_URL", "token": "LABEL_STUDIO_API_KEY"},
}


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare(out: Output[Dataset], path: str, columns: list) -> NamedTuple(
    "Outputs", [("rows", int), ("probe", bool)]
):
    """Read the CSV, clean it and one-hot encode channel and priority."""
    import pandas as pd

    frame = pd.read_csv(path, usecols=columns)[columns]
    frame = frame.drop_duplicates(subset=["ticket_id"]).dropna(subset=["label", "subject"])
    frame["subject"] = frame["subject"].str.strip().str.lower()
    frame["response_minutes"] = frame["response_minutes"].fillna(0)
    frame = pd.get_dummies(frame.drop(columns=["created_at"]), columns=["channel", "priority"],
                           dtype="int8")
    frame.to_parquet(out.path, index=False)
    out.metadata["rows"] = len(frame)
    return len(frame), True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def s3_upload(data: Input[Artifact], bucket: str, key: str) -> str:
    """Upload an artifact to S3 (credentials and endpoint from the environment)."""
    import boto3

    boto3.client("s3").upload_file(data.path, bucket, key)
    return f"s3://{bucket}/{key}"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def labelstudio_import(data: Input[Dataset], project: str, text_column: str, labels: list,
                       data_columns: list, key_column: str) -> str:
    """Create (or find) a Label Studio project and import the rows not imported yet."""
    import os

    import pandas as pd
    import requests

    url, headers = os.environ["LABEL_STUDIO_URL"], {
        "Authorization": f"Token {os.environ['LABEL_STUDIO_API_KEY']}"}
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    config = (f'<View><Text name="text" value="${text_column}"/><Choices name="label" '
              f'toName="text">{choices}</Choices></View>')
    projects = requests.get(f"{url}/api/projects", headers=headers, timeout=30).json()["results"]
    found = next((p for p in projects if p["title"] == project), None)
    if found is None:
        found = requests.post(f"{url}/api/projects", headers=headers, timeout=30,
                              json={"title": project, "label_config": config}).json()
    frame = pd.read_parquet(data.path, columns=data_columns)
    tasks = [{"data": row} for row in frame.astype(str).to_dict("records")]
    requests.post(f"{url}/api/projects/{found['id']}/import", headers=headers, json=tasks,
                  timeout=300).raise_for_status()
    return f"{url}/projects/{found['id']} ({len(tasks)} rows, keyed by {key_column})"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def split(data: Input[Dataset], train: Output[Dataset], test: Output[Dataset], test_size: float,
          stratify: str, seed: int) -> NamedTuple("Outputs", [("train_rows", int), ("test_rows", int)]):
    """Stratified random train/test split."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_parquet(data.path)
    left, right = train_test_split(frame, test_size=test_size, stratify=frame[stratify],
                                   random_state=seed)
    left.to_parquet(train.path, index=False)
    right.to_parquet(test.path, index=False)
    return len(left), len(right)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(train: Input[Dataset], model: Output[Model], target: str, params: dict,
          early_stopping_rounds: int):
    """Train an xgboost classifier on the numeric columns."""
    import pandas as pd
    import xgboost as xgb
    from sklearn.model_selection import train_test_split

    frame = pd.read_parquet(train.path)
    y, classes = pd.factorize(frame[target], sort=True)
    x = frame.drop(columns=[target]).select_dtypes("number")
    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=0.1, stratify=y, random_state=42)
    classifier = xgb.XGBClassifier(**params, early_stopping_rounds=early_stopping_rounds)
    classifier.fit(x_fit, y_fit, eval_set=[(x_val, y_val)], verbose=False)
    classifier.get_booster().set_attr(classes=",".join(map(str, classes)))
    classifier.get_booster().save_model(model.path)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(model: Input[Model], test: Input[Dataset], metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], report: Output[HTML], target: str,
             min_f1: float) -> NamedTuple("Outputs", [("passed", bool), ("score", float)]):
    """Score the model, log metrics and a confusion matrix, decide the gate."""
    import pandas as pd
    import xgboost as xgb
    from sklearn import metrics as skm

    booster = xgb.Booster(model_file=model.path)
    classes = booster.attr("classes").split(",")
    frame = pd.read_parquet(test.path)
    truth = pd.Index(classes).get_indexer(frame[target])
    x = frame.drop(columns=[target]).select_dtypes("number")
    predicted = booster.predict(xgb.DMatrix(x)).argmax(axis=1)
    f1 = float(skm.f1_score(truth, predicted, average="macro"))
    metrics.log_metric("f1_macro", f1)
    matrix = skm.confusion_matrix(truth, predicted, labels=list(range(len(classes))))
    classification.log_confusion_matrix(classes, matrix.tolist())
    with open(report.path, "w") as handle:
        handle.write(f"<html><body><p>F1 macro {f1:.4f}</p></body></html>")
    return f1 >= min_f1, f1


def configure(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """The recipe's `defaults`: resources, retries and secrets, on every task."""
    task.set_cpu_request("1").set_memory_request("2Gi")
    task.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)
    for secret, keys in SECRETS.items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=keys)
    return task


@dsl.pipeline(name="seed-workflow", description="Route support tickets to the right team; "
              "publish the dataset, annotation tasks and model.")
def seed_workflow(data: str = "examples/data/tickets.csv", bucket: str = "skitflow-demo",
                  project: str = "Support tickets", test_size: float = 0.2, min_f1: float = 0.7):
    prepared = configure(prepare(path=data, columns=COLUMNS))
    configure(s3_upload(data=prepared.outputs["out"], bucket=bucket,
                        key=f"seed-workflow/{dsl.PIPELINE_JOB_NAME_PLACEHOLDER}/dataset.parquet"))
    configure(labelstudio_import(data=prepared.outputs["out"], project=project,
                                 text_column="subject", labels=["account", "billing", "other",
                                                                "technical"],
                                 data_columns=["ticket_id", "subject"], key_column="ticket_id"))
    halves = configure(split(data=prepared.outputs["out"], test_size=test_size, stratify="label",
                             seed=7))
    trained = configure(train(train=halves.outputs["train"], target="label",
                              early_stopping_rounds=20,
                              params={"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1}))
    scored = configure(evaluate(model=trained.outputs["model"], test=halves.outputs["test"],
                                target="label", min_f1=min_f1))
    with dsl.If(scored.outputs["passed"] == True, name="gate-f1-macro"):  # noqa: E712
        configure(s3_upload(data=trained.outputs["model"], bucket=bucket,
                            key=f"seed-workflow/{dsl.PIPELINE_JOB_NAME_PLACEHOLDER}/model.json"))


if __name__ == "__main__":
    compiler.Compiler().compile(seed_workflow, sys.argv[1])
