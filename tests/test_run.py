"""`skitflow run` end to end: the compiled package executed on this machine by kfp.local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def skitflow(*args: object, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skitflow", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_example_runs_end_to_end(tmp_path: Path) -> None:
    out, published = tmp_path / "run", tmp_path / "published"
    result = skitflow("run", "examples/tickets.yaml", "--out", out, "--param", f"out_dir={published}",
                      "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["succeeded"] is True
    assert summary["gate"]["passed"] is True
    assert summary["tasks"]["csv-to-drop-columns"]["rows"] == 2941  # 59 duplicate ticket ids dropped
    assert summary["metrics"]["f1_macro"] > 0.7
    assert (out / "package.yaml").read_text().startswith("# PIPELINE DEFINITION")
    # progress and summary on stdout
    assert "drop_duplicates: 3000 -> 2941 rows" in result.stdout
    assert "gate passed" in result.stdout
    # artifacts by task and output
    run_dir = Path(summary["run_dir"])
    metrics = json.loads((run_dir / "evaluate-classification" / "metrics").read_text())
    assert set(metrics["metrics"]) >= {"accuracy", "f1_macro", "roc_auc"}
    report = (run_dir / "evaluate-classification" / "report").read_text()
    assert "data:image/png;base64," in report
    # the same sink wrote the dataset (before the fitted one_hot) and the model bundle (with it)
    import pandas as pd

    from skitflow import load_model

    dataset = pd.read_parquet(published / "tickets-classifier" / "dataset.parquet")
    assert len(dataset) == 2941 and "channel" in dataset.columns and "channel_email" not in dataset.columns
    bundle = load_model(published / "tickets-classifier" / "model.zip")
    meta = bundle.metadata
    assert meta["target"] == "label" and meta["classes"] == ["account", "billing", "other", "technical"]
    assert "channel_email" in meta["features"] and meta["model_hash"] == model_hash(out)
    raw = pd.read_csv(REPO / "examples" / "data" / "tickets.csv").head(50)
    assert bundle.predict(raw.drop(columns=["label"])).isin(meta["classes"]).all()


def model_hash(out: Path) -> str:
    """The model hash the run's package gives its train task (in that task's spec)."""
    import re

    return re.search(r'model_hash\\?":\\?"([0-9a-f]+)', (out / "package.yaml").read_text()).group(1)


def test_a_failed_gate_keeps_the_model_out_of_its_sinks(tmp_path: Path) -> None:
    published = tmp_path / "published"
    result = skitflow("run", "examples/tickets.yaml", "--out", tmp_path / "run", "--no-cache",
                      "--param", "min_f1=0.999", "--param", f"out_dir={published}")
    assert result.returncode == 3, result.stdout + result.stderr  # not 1: no step failed
    assert "gate FAILED: the model was not written" in result.stdout
    assert "is below the minimum 0.999" in result.stdout
    assert "the gate refused the model" in result.stderr and "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["succeeded"] is True and summary["gate"]["passed"] is False
    assert summary["gate"]["reason"].startswith("f1_macro ") and "gate_passed" not in summary["metrics"]
    assert (published / "tickets-classifier" / "dataset.parquet").exists()
    assert not (published / "tickets-classifier" / "model.zip").exists()


FAILING = """\
apiVersion: skitflow/v1
name: failing
source:
  csv: {path: data.csv}
steps:
  - dropna: {}
split:
  train_test: {test_size: 0.5, seed: 1}
trainer:
  xgboost: {target: y}
sinks:
  - file: {path: out/model.json, overwrite: false}
    input: model
"""


def test_a_failing_step_is_named_with_its_location_and_finished_tasks_are_reused(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.json").write_text("keep me")
    (tmp_path / "failing.yaml").write_text(FAILING)
    first = skitflow("run", "failing.yaml", "--out", "run1", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "step `file` in task `file-model` failed" in first.stderr
    assert "--> failing.yaml:12:5" in first.stderr
    assert "12 |   - file: {path: out/model.json, overwrite: false}" in first.stderr
    assert "Traceback" not in first.stderr
    assert (tmp_path / "out" / "model.json").read_text() == "keep me"  # nothing lost
    summary = json.loads((tmp_path / "run1" / "summary.json").read_text())
    assert summary["tasks"]["train-xgboost"]["status"] == "succeeded"
    assert Path(summary["tasks"]["train-xgboost"]["artifacts"]["model"]).exists()

    second = skitflow("run", "failing.yaml", "--out", "run2", cwd=tmp_path)
    assert second.returncode == 1
    rerun = json.loads((tmp_path / "run2" / "summary.json").read_text())["tasks"]
    assert rerun["csv-dropna"]["status"] == "cached"
    assert rerun["split-train-test"]["status"] == "cached"
    assert rerun["train-xgboost"]["status"] == "cached"
    assert rerun["file-model"]["status"] == "failed"


def test_bad_parameters_are_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = skitflow("run", "examples/tickets.yaml", "--out", out, "--param", "test_size=lots",
                      "--param", "min_f2=0.5")
    assert result.returncode == 2
    assert "`test_size` expects a float, got `lots`" in result.stderr
    assert "unknown parameter `min_f2`" in result.stderr and "did you mean `min_f1`?" in result.stderr
    assert not out.exists()


CONDITIONAL = """\
apiVersion: skitflow/v1
name: conditional
source:
  csv: {path: data.csv}
split:
  train_test: {test_size: 0.25, seed: 3}
  when: "'split' not in columns"
  otherwise:
    by_column: {column: split}
sinks:
  - file: {path: out/test.csv, format: csv}
    input: test
"""


@pytest.mark.parametrize("has_split_column", [True, False])
def test_a_data_condition_picks_the_split_at_run_time(tmp_path: Path, has_split_column: bool) -> None:
    rows = "".join(f"{i},{'test' if i % 4 == 0 else 'train'}\n" for i in range(20))
    header = "x,split\n" if has_split_column else "x,other\n"
    (tmp_path / "data.csv").write_text(header + rows)
    (tmp_path / "conditional.yaml").write_text(CONDITIONAL)
    result = skitflow("run", "conditional.yaml", "--out", "run", "--no-cache", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = json.loads((tmp_path / "run" / "summary.json").read_text())["tasks"]
    ran = "split-by-column" if has_split_column else "split-train-test"
    skipped = "split-train-test" if has_split_column else "split-by-column"
    assert tasks[ran]["status"] == "succeeded" and tasks[skipped]["status"] == "skipped"
    test_rows = (tmp_path / "out" / "test.csv").read_text().splitlines()
    assert len(test_rows) - 1 == 5


def test_a_parameter_condition_is_decided_at_run_time_without_recompiling(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("a,b,c,label\n" + "".join(
        f"{i},{i * 2},{i * 3},{i % 2}\n" for i in range(40)))
    recipe = REPO / "tests" / "recipes" / "valid" / "parameter-condition.yaml"
    held_out = skitflow("run", recipe, "--out", "run1", "--no-cache", "--param", "columns=[a, label]",
                        cwd=tmp_path)
    assert held_out.returncode == 0, held_out.stdout + held_out.stderr
    assert (tmp_path / "out" / "test.csv").read_text().splitlines()[0] == "a,label"
    assert len((tmp_path / "out" / "test.csv").read_text().splitlines()) - 1 == 12  # 0.3 of 40
    (tmp_path / "out" / "test.csv").unlink()
    skipped = skitflow("run", recipe, "--out", "run2", "--no-cache", "--param", "holdout=false",
                       cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    tasks = json.loads((tmp_path / "run2" / "summary.json").read_text())["tasks"]
    assert tasks["split-train-test"]["status"] == "skipped"
    assert not (tmp_path / "out" / "test.csv").exists()


def test_the_cache_follows_changes_of_local_source_files(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.csv").write_text("x\n1\n2\n")
    (tmp_path / "glob.yaml").write_text(
        "apiVersion: skitflow/v1\nname: glob\nsource:\n  csv: {path: 'parts/*.csv'}\n"
        "steps:\n  - dropna: {}\nsinks:\n  - file: {path: out.csv, format: csv}\n")
    first = skitflow("run", "glob.yaml", "--out", "run1", "--cache-dir", "cache", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (tmp_path / "parts" / "b.csv").write_text("x\n3\n")
    second = skitflow("run", "glob.yaml", "--out", "run2", "--cache-dir", "cache", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    tasks = json.loads((tmp_path / "run2" / "summary.json").read_text())["tasks"]
    assert tasks["csv-dropna"]["status"] == "succeeded", "a new file under the glob must be read"
    assert (tmp_path / "out.csv").read_text() == "x\n1\n2\n3\n"
    third = skitflow("run", "glob.yaml", "--out", "run3", "--cache-dir", "cache", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert json.loads((tmp_path / "run3" / "summary.json").read_text())["tasks"]["csv-dropna"]["status"] == "cached"


RUN_IDENTITY_RECIPE = """\
apiVersion: skitflow/v1
name: identity
defaults:
  retries: {count: 2, backoff: 10s}
  resources: {cpu: "1", memory_limit: 1Gi}
  secrets: [{secret: store, env: {SKITFLOW_TEST_SET: a, SKITFLOW_TEST_UNSET: b}}]
source:
  csv: {path: data.csv}
sinks:
  - file: {path: "out/{{ run.id }}/{{ run.date }}/a.csv", format: csv}
  - file: {path: "out/{{ run.id }}/{{ run.date }}/{{ run.name }}.csv", format: csv}
"""


def test_run_identity_comes_from_kfp_and_is_the_same_in_every_task(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "r.yaml").write_text(RUN_IDENTITY_RECIPE)
    result = skitflow("run", "r.yaml", "--out", "run", "--no-cache", cwd=tmp_path,
                      env={"PYTHONPATH": str(REPO), "SKITFLOW_TEST_SET": "s3cr3t-value"})
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    run = summary["run"]
    assert run["id"].isdigit() and run["name"].startswith("identity-")
    assert run["created"].endswith("Z")
    day = run["created"][:10]
    # both sink tasks got the same id and date: one folder, both files
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.csv"))
    assert written == sorted([Path(run["id"], day, "a.csv"), Path(run["id"], day, f"{run['name']}.csv")])
    # the local-parity report: printed first, and in summary.json; never a secret's value
    parity = summary["local_parity"]
    assert any(line.startswith("retries 2 x") for line in parity)
    assert any(line.startswith("resource limits memory=1Gi") for line in parity)
    assert any("SKITFLOW_TEST_SET is set locally" in line for line in parity)
    assert any("SKITFLOW_TEST_UNSET is NOT set locally" in line for line in parity)
    assert "local run differs from Kubeflow in:" in result.stdout
    assert result.stdout.index("differs from Kubeflow") < result.stdout.index("succeeded")
    assert "s3cr3t-value" not in result.stdout + json.dumps(summary)


TEXT_MODEL = """\
apiVersion: skitflow/v1
name: text-model
source:
  csv: {path: data.csv}
steps:
  - standardize: {columns: [duration]}
  - tfidf: {column: utterance, ngram_range: [1, 2]}
  - dropna: {columns: [intent]}
  - drop_columns: {columns: [call_id, channel]}
split:
  train_test: {test_size: 0.25, stratify: intent, seed: 3}
trainer:
  linear: {target: intent}
evaluator:
  classification: {target: intent}
  gate: {metric: f1_macro, min: 0.6}
predict: {model: trained, output: guess}
sinks:
  - file: {path: out/model.zip}
    input: model
  - file: {path: out/scored.csv, format: csv}
    input: predictions
"""


def test_text_features_fitted_on_train_rows_a_bundle_and_batch_scoring(tmp_path: Path) -> None:
    import pandas as pd

    from examples.intents.make_utterances import make
    from skitflow import load_model

    frame = make(1200, seed=5)
    frame.loc[frame.index[::4], "duration"] += 1000.0  # shifts the full-data mean away from any split's
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "recipe.yaml").write_text(TEXT_MODEL)
    checked = skitflow("validate", "recipe.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "fitted after the split, on the train rows" in checked.stdout
    result = skitflow("run", "recipe.yaml", "--out", "run", "--no-cache", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["f1_macro"] > 0.8 and summary["gate"]["passed"] is True
    train = pd.read_parquet(summary["tasks"]["split-train-test"]["artifacts"]["train"])
    bundle = load_model(tmp_path / "out" / "model.zip")
    state = bundle.chain.steps[[s.step.name for s in bundle.chain.steps].index("standardize")].state
    assert state["columns"]["duration"]["mean"] == pytest.approx(train["duration"].mean())
    assert state["columns"]["duration"]["mean"] != pytest.approx(frame["duration"].mean())
    assert bundle.metadata["train_rows"] == len(train) == 900
    # the model artifact's metadata is a bounded summary; the bundle holds the vocabulary
    executor = json.loads((tmp_path / summary["run_dir"] / "train-linear" / "executor_output.json").read_text())
    recorded = executor["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert recorded["format"] == "skitflow-bundle" and recorded["trainer"] == "linear"
    assert len(json.dumps(recorded)) <= 16 * 1024
    scored = pd.read_csv(tmp_path / "out" / "scored.csv")
    assert len(scored) == 1200 and {"guess", "guess_score", "score_billing"} <= set(scored.columns)
    assert (scored["guess"] == frame["intent"]).mean() > 0.8
    # the same bundle from the shell, on raw rows, gives the same predictions
    frame.drop(columns=["intent"]).to_csv(tmp_path / "raw.csv", index=False)
    shell = skitflow("predict", "out/model.zip", "raw.csv", "-o", "shell.csv", "--output", "guess", cwd=tmp_path)
    assert shell.returncode == 0, shell.stderr
    assert pd.read_csv(tmp_path / "shell.csv")["guess"].tolist() == scored["guess"].tolist()


CHAMPION = """\
apiVersion: skitflow/v1
name: champion
parameters:
  C: {type: float, default: 1.0}
source:
  csv: {path: data.csv}
split:
  train_test: {test_size: 0.3, stratify: label, seed: 4}
trainer:
  linear: {target: label, features: [a, b], C: "{{ params.C }}"}
evaluator:
  classification: {target: label}
  gate: {metric: f1_macro, min: 0.1, beat: published/model.zip, by: 0.01}
sinks:
  - file: {path: published/model.zip}
    input: model
  - file: {path: reports/}
    input: report
"""


def test_champion_challenger_publishes_only_a_better_model(tmp_path: Path) -> None:
    from tests.html_tables import ReportPage
    from tests.test_trainers import learnable

    learnable(900).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "recipe.yaml").write_text(CHAMPION)
    published = tmp_path / "published" / "model.zip"

    # nothing published yet: the threshold alone decides, and the summary says so
    first = skitflow("run", "recipe.yaml", "--out", "run1", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    gate = json.loads((tmp_path / "run1" / "summary.json").read_text())["gate"]
    assert gate["passed"] is True and gate["champion"] == "none yet" and gate["champion_score"] is None
    assert gate["reason"].startswith("no published model at published/model.zip yet: the threshold "
                                     "alone decides")
    assert "threshold alone decides" in first.stdout
    champion_bytes = published.read_bytes()
    champion_f1 = json.loads((tmp_path / "run1" / "summary.json").read_text())["metrics"]["f1_macro"]

    # a worse model (heavily regularised) is scored against the published one and not published
    second = skitflow("run", "recipe.yaml", "--out", "run2", "-p", "C=0.0001", cwd=tmp_path)
    assert second.returncode == 3, second.stdout + second.stderr
    summary = json.loads((tmp_path / "run2" / "summary.json").read_text())
    gate = summary["gate"]
    assert summary["succeeded"] is True and gate["passed"] is False and gate["champion"] == "scored"
    assert gate["champion_score"] == pytest.approx(champion_f1)  # the same test set, the same code
    assert summary["metrics"]["f1_macro"] < champion_f1
    assert "does not beat the published model's" in gate["reason"]
    assert "the gate refused the model" in second.stderr
    assert summary["tasks"]["file-model"]["status"] == "skipped"
    assert published.read_bytes() == champion_bytes  # the better model stays published
    # the report still reaches its sink, with the verdict and both models side by side
    report = ReportPage((tmp_path / "reports" / "report.html").read_text())
    assert report.texts["Gate"][0] == "gate FAILED"
    assert report.pairs("Gate")["reason"] == gate["reason"]
    side = {row[0]: row for row in report.table("Champion vs challenger")[1:]}
    assert float(side["f1_macro (gate)"][2]) == pytest.approx(champion_f1, abs=1e-4)
    assert side["f1_macro (gate)"][4] == "published"
    metrics = json.loads((tmp_path / summary["run_dir"] / "evaluate-classification" / "metrics").read_text())
    assert metrics["gate"]["passed"] is False and metrics["gate"]["champion_score"] == gate["champion_score"]

    # a better model (by at least `by`) replaces it
    third = skitflow("run", "recipe.yaml", "--out", "run3", "-p", "C=0.0001", "--no-cache", cwd=tmp_path)
    assert third.returncode == 3
    published.unlink()
    fourth = skitflow("run", "recipe.yaml", "--out", "run4", "-p", "C=0.0001", cwd=tmp_path)
    assert fourth.returncode == 0, fourth.stdout + fourth.stderr  # nothing to beat now
    assert published.read_bytes() != champion_bytes
    fifth = skitflow("run", "recipe.yaml", "--out", "run5", cwd=tmp_path)
    assert fifth.returncode == 0, fifth.stdout + fifth.stderr
    gate = json.loads((tmp_path / "run5" / "summary.json").read_text())["gate"]
    assert gate["passed"] is True and "beats the published model's" in gate["reason"]
    assert published.read_bytes() == champion_bytes  # the same data and settings: the same bytes


def test_a_recipe_without_a_gate_shows_no_verdict(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    (tmp_path / "recipe.yaml").write_text(FAILING.replace("failing", "plain").replace(
        "  - file: {path: out/model.json, overwrite: false}\n    input: model\n",
        "  - file: {path: out/}\n    input: report\n") + "evaluator:\n  classification: {target: y}\n")
    result = skitflow("run", "recipe.yaml", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gate passed" not in result.stdout and "gate FAILED" not in result.stdout
    assert "score nan" not in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["gate"] is None
    assert (tmp_path / "out" / "report.html").read_text().startswith("<!DOCTYPE html>")
