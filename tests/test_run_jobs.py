"""`skitflow run --jobs N`: independent tasks at once, the same results; per-branch metrics; the
`on_empty: skip` note in notifications."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.notify_receiver import running_receiver
from tests.test_run import skitflow

MATRIX_RECIPE = """\
apiVersion: skitflow/v1
name: sweep
matrix:
  {matrix}
source:
  csv: {{path: "{path}", columns: [call_id, text, intent, duration]}}
split:
  train_test: {{test_size: 0.25, stratify: intent}}
trainer:
  xgboost: {{target: intent, features: [duration], params: {{n_estimators: 5, max_depth: {depth}}}}}
evaluator:
  classification: {{target: intent}}
  gate: {{metric: f1_macro, min: 0.0}}
"""


def _data(folder: Path, name: str = "calls.csv", rows: int = 120) -> None:
    pd.DataFrame({"call_id": range(rows), "text": ["x"] * rows, "intent": ["a", "b", "c"] * (rows // 3),
                  "duration": [float(i % 17) for i in range(rows)]}).to_csv(folder / name, index=False)


def _overlapping(summary: dict) -> list[tuple[str, str]]:
    """Pairs of tasks whose [start, end] intervals overlap."""
    spans = {name: (t["start"], t["start"] + t["seconds"]) for name, t in summary["tasks"].items()
             if t["start"] is not None and t["seconds"] is not None}
    return [(a, b) for a, b in itertools.combinations(sorted(spans), 2)
            if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]


@pytest.mark.slow
def test_jobs_run_branches_at_once_with_the_same_results(tmp_path: Path) -> None:
    _data(tmp_path)
    (tmp_path / "r.yaml").write_text(MATRIX_RECIPE.format(
        matrix="depth: [2, 3, 4, 5]", path="calls.csv", depth='"{{ matrix.depth }}"'))
    summaries = {}
    for jobs in ("1", "2"):
        done = skitflow("run", "r.yaml", "--out", f"out{jobs}", "--no-cache", "--jobs", jobs, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        summaries[jobs] = json.loads((tmp_path / f"out{jobs}" / "summary.json").read_text())
        assert summaries[jobs]["jobs"] == int(jobs)
        for label in ("depth2", "depth3", "depth4", "depth5"):  # each branch's line in the outcome
            assert f"branch {label}: accuracy=" in done.stdout, done.stdout
    one, two = summaries["1"], summaries["2"]
    assert _overlapping(one) == []
    assert _overlapping(two), two["tasks"]
    assert {k: t["status"] for k, t in one["tasks"].items()} == \
        {k: t["status"] for k, t in two["tasks"].items()}
    assert all(t["status"] == "succeeded" for t in two["tasks"].values())
    assert one["metrics"] == two["metrics"] and one["branches"] == two["branches"]
    # each branch's own metrics and gate, not only the last branch's
    assert sorted(two["branches"]) == ["depth2", "depth3", "depth4", "depth5"]
    for label, branch in two["branches"].items():
        assert branch["task"] == f"evaluate-classification-{label}"
        assert branch["gate"]["passed"] is True and branch["gate"]["task"] == branch["task"]
        run_dir = tmp_path / "out2" / Path(two["run_dir"]).name
        written = json.loads((run_dir / branch["task"] / "metrics").read_text())
        assert branch["metrics"]["f1_macro"] == pytest.approx(written["metrics"]["f1_macro"])
    assert two["metrics"] == two["branches"]["depth5"]["metrics"]  # no refusal: the last, as before


@pytest.mark.slow
def test_a_failing_branch_stops_only_its_own_tasks_with_jobs(tmp_path: Path) -> None:
    for client in ("acme", "globex"):
        _data(tmp_path, f"{client}.csv")
    (tmp_path / "r.yaml").write_text(MATRIX_RECIPE.format(
        matrix="client: [acme, globex, initech]", path="{{ matrix.client }}.csv", depth="3"))
    done = skitflow("run", "r.yaml", "--out", "out", "--no-cache", "--jobs", "2", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    tasks = summary["tasks"]
    assert tasks["csv-initech"]["status"] == "failed"
    for name in ("split-train-test-initech", "train-xgboost-initech", "evaluate-classification-initech"):
        assert tasks[name]["status"] == "not run" and tasks[name]["blocked_by"] == ["csv-initech"]
    for client in ("acme", "globex"):
        assert all(t["status"] == "succeeded" for name, t in tasks.items() if name.endswith(client))
    assert sorted(summary["branches"]) == ["acme", "globex"]
    assert "csv-initech" in done.stderr


@pytest.mark.parametrize("jobs", ["0", "-3", "two", "1.5"])
def test_invalid_jobs_are_refused(tmp_path: Path, jobs: str) -> None:
    _data(tmp_path)
    (tmp_path / "r.yaml").write_text(MATRIX_RECIPE.format(matrix="depth: [2, 3]", path="calls.csv",
                                                          depth='"{{ matrix.depth }}"'))
    done = skitflow("run", "r.yaml", "--out", "out", f"--jobs={jobs}", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--jobs must be a whole number of at least 1, not `{jobs}`" in done.stderr
    assert not (tmp_path / "out").exists()


SKIP_RECIPE = """\
apiVersion: skitflow/v1
name: empty-day
source:
  csv: {path: "empty.csv", columns: [call_id, text, intent, duration]}
  on_empty: skip
split:
  train_test: {test_size: 0.25, stratify: intent}
trainer:
  xgboost: {target: intent, features: [duration], params: {n_estimators: 5}}
evaluator:
  classification: {target: intent}
notify:
  - slack: {webhook_env: SLACK_WEBHOOK_URL, on: [success]}
  - webhook: {url_env: HOOK_URL, on: [success]}
"""


@pytest.mark.slow
def test_an_empty_source_with_on_empty_skip_says_so_in_the_notification(tmp_path: Path) -> None:
    _data(tmp_path, "empty.csv", rows=0)
    (tmp_path / "r.yaml").write_text(SKIP_RECIPE)
    with running_receiver() as receiver:
        env = {"SLACK_WEBHOOK_URL": receiver.url + "/slack", "HOOK_URL": receiver.url + "/hook"}
        done = skitflow("run", "r.yaml", "--out", "out", "--no-cache", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any(note.startswith("no rows: nothing to train") for note in summary["notes"])
    [slack] = receiver.bodies("/slack")
    assert "no rows: nothing to train" in slack["blocks"][1]["text"]["text"]
    [hook] = receiver.bodies("/hook")
    assert any("no rows: nothing to train" in note for note in hook["notes"])


def test_the_private_kfp_local_names_the_parallel_runner_uses_exist() -> None:
    import kfp
    from kfp.local import task_dispatcher
    from kfp.local.orchestrator import enhanced_dag_orchestrator as enhanced

    for name in ("run_enhanced_dag", "execute_task", "_run_parallel_for_task", "_has_valid_iterator",
                 "_has_task_final_status_input", "TaskKind", "ParallelExecutor", "ConditionEvaluator"):
        assert hasattr(enhanced, name), f"kfp {kfp.__version__}: enhanced_dag_orchestrator.{name} is gone"
    for name in ("local_logger_context", "indented_print"):
        assert hasattr(task_dispatcher.logging_utils, name), f"kfp {kfp.__version__}: {name} is gone"


def test_overlapping_task_log_contexts_restore_the_handlers_they_found() -> None:
    """Two tasks' logger contexts overlapping (A in, B in, A out, B out) leave the root logger and
    print as they were; kfp.local's own left B's handler and indentation installed."""
    import builtins
    import logging

    from kfp.local import logging_utils

    from skitflow.compile.kfp_compat import _shared_logging_utils

    shared = _shared_logging_utils(logging_utils)
    root = logging.getLogger()
    handlers, printer = root.handlers[:], builtins.print
    a, b = shared.local_logger_context(), shared.local_logger_context()
    pa, pb = shared.indented_print(), shared.indented_print()
    a.__enter__()
    pa.__enter__()
    b.__enter__()
    pb.__enter__()
    assert root.handlers != handlers and builtins.print is not printer
    a.__exit__(None, None, None)
    pa.__exit__(None, None, None)
    assert builtins.print is not printer  # B still runs
    b.__exit__(None, None, None)
    pb.__exit__(None, None, None)
    assert root.handlers == handlers and builtins.print is printer
