"""Notifications: the message builder, delivery against a real HTTP receiver on 127.0.0.1,
the compiled exit handler, and `skitflow run` sending once at the end of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from skitflow.api import compile_recipe
from skitflow.recipe.loader import load_recipe_text
from skitflow.recipe.models import Notify
from skitflow.util.notify import RunReport, Target, deliver, slack_payload, webhook_payload
from skitflow.util.retry import RetryPolicy
from tests.notify_receiver import running_receiver
from tests.package_check import check_package
from tests.test_run import REPO, skitflow

#: A Slack webhook path looks like this: whoever has it can post. It must never be printed.
SECRET_PATH = "/services/T024BE7LD/B01ABCDEF/Xk9vQ2mZ8pL4rT6wY1nB3cD5"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, timeout=5)


def _report(**changes: object) -> RunReport:
    base = dict(recipe="tickets", status="succeeded", run_name="tickets-1", run_id="abc123",
                link="https://kfp.example/#/runs/details/abc123", seconds=125.4,
                metrics={"accuracy": 0.9, "f1_macro": 0.62},
                gate={"passed": False, "metric": "f1_macro", "score": 0.62, "min": 0.7})
    base.update(changes)
    return RunReport(**base)  # type: ignore[arg-type]


def test_the_event_follows_status_and_gate() -> None:
    assert _report().event == "gate_failed"
    assert _report(gate={"passed": True, "score": 0.8}).event == "success"
    assert _report(gate=None).event == "success"
    assert _report(status="failed").event == "failure"
    assert _report(status="interrupted").event == "failure"
    assert _report().gate_reason() == "f1_macro 0.62 < min 0.7"


def test_slack_payload_has_text_blocks_channel_and_mentions() -> None:
    target = Target("slack", "SLACK_WEBHOOK_URL", ("gate_failed",), "#ml", ("<!here>", "<@U123>"))
    body = slack_payload(_report(), target)
    assert body["channel"] == "#ml"
    assert body["text"].startswith("<!here> <@U123> skitflow: tickets (tickets-1)")
    assert "gate FAILED" in body["text"]
    assert [b["type"] for b in body["blocks"]] == ["section", "section"]
    details = body["blocks"][1]["text"]["text"]
    for part in ("run id: abc123", "https://kfp.example/#/runs/details/abc123", "duration: 2m 5s",
                 "f1_macro=0.6200", "gate: FAILED (f1_macro 0.62 &lt; min 0.7)"):
        assert part in details, details
    assert details.index("f1_macro") < details.index("accuracy")  # the gate's metric first
    # no mentions on success
    assert slack_payload(_report(gate=None), target)["text"].startswith("skitflow:")


def test_a_failure_carries_the_failing_step_and_the_last_lines_of_its_error() -> None:
    failure = {"task": "train-xgboost", "step": "xgboost", "location": "tickets.yaml:31:3",
               "error": "ValueError: bad max_depth", "log": [f"line {i}" for i in range(20)]}
    report = _report(status="failed", gate=None, metrics={}, failure=failure)
    body = slack_payload(report, Target("slack", "X"))
    assert "failed: task `train-xgboost`, step `xgboost` at tickets.yaml:31:3" in body["blocks"][1]["text"]["text"]
    tail = body["blocks"][2]["text"]["text"]
    assert tail.startswith("```") and "line 19" in tail and "line 5" not in tail
    assert "ValueError: bad max_depth" in tail
    generic = webhook_payload(report)
    assert generic["event"] == "failure" and generic["failure"]["step"] == "xgboost"
    assert generic["failure"]["error"].endswith("ValueError: bad max_depth")
    assert "metrics" not in generic and "gate" not in generic  # not known: left out, not guessed


def test_delivery_is_retried_after_a_503_and_never_logs_the_url() -> None:
    with running_receiver([503, 200]) as receiver:
        url = receiver.url + SECRET_PATH
        logged: list[str] = []
        done = deliver(_report(), [Target("webhook", "HOOK", ("gate_failed",))],
                       environ={"HOOK": url}, log=logged.append, policy=FAST)
    assert [(d.outcome, d.tries) for d in done] == [("sent", 2)]
    [body] = receiver.bodies(SECRET_PATH)
    assert body["event"] == "gate_failed" and body["gate"]["reason"] == "f1_macro 0.62 < min 0.7"
    assert body["run"] == {"name": "tickets-1", "id": "abc123",
                           "link": "https://kfp.example/#/runs/details/abc123"}
    assert body["metrics"] == {"accuracy": 0.9, "f1_macro": 0.62}
    assert any("try 1 failed (HTTP 503)" in line for line in logged), logged
    assert not any("Xk9vQ2mZ8pL4rT6wY1nB3cD5" in line or "127.0.0.1" in line for line in logged), logged


def test_a_receiver_that_stays_down_is_logged_and_does_not_raise() -> None:
    with running_receiver([503]) as receiver:
        logged: list[str] = []
        done = deliver(_report(status="failed"), [Target("slack", "SLACK", ("failure",))],
                       environ={"SLACK": receiver.url + SECRET_PATH}, log=logged.append, policy=FAST)
    assert receiver.attempts == 3 and [d.outcome for d in done] == ["failed"]
    assert "NOT delivered after 3 tries" in logged[-1]
    assert not any("Xk9vQ2mZ8pL4rT6wY1nB3cD5" in line for line in logged)


def test_targets_not_listening_or_without_a_url_are_skipped() -> None:
    logged: list[str] = []
    done = deliver(_report(gate=None), [Target("slack", "A", ("failure",)), Target("webhook", "B", ("success",))],
                   environ={}, log=logged.append, policy=FAST)
    assert [d.outcome for d in done] == ["skipped", "not sent"]
    assert logged == ["notify: webhook (B) not sent: the environment variable B is not set"]


@pytest.mark.parametrize("entry, message", [
    ({"slack": {"webhook_env": "https://hooks.slack.com/services/x"}}, "URLs never go into a recipe"),
    ({"webhook": {"url_env": "HOOK", "on": []}}, "`on` is empty"),
    ({"webhook": {"url_env": "HOOK", "on": ["done"]}}, "failure"),
    ({}, "exactly one of `slack` or `webhook`"),
])
def test_bad_notify_entries_are_refused(entry: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Notify.model_validate(entry)


NOTIFY_RECIPE = """\
apiVersion: skitflow/v1
name: notify-demo
source:
  csv: {{path: {path}}}
steps:
  - drop_duplicates: {{subset: [ticket_id]}}
notify:
  - slack: {{webhook_env: SLACK_WEBHOOK_URL, on: [failure, success], channel: "#ml", mention: ["<!here>"]}}
  - webhook: {{url_env: HOOK_URL, on: [failure], secret: hooks, secret_key: url}}
"""


def test_notify_compiles_to_an_exit_handler_without_any_url(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com" + SECRET_PATH)
    text = compile_recipe(load_recipe_text(NOTIFY_RECIPE.format(path="data.csv"), "r.yaml")).text
    assert "Xk9vQ2mZ8pL4rT6wY1nB3cD5" not in text and "hooks.slack.com" not in text
    spec = check_package(text, tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "notify"}
    exit_task = root["notify"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert exit_task["dependentTasks"] == ["exit-handler-1"]
    assert exit_task["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    assert exit_task["cachingOptions"] == {}  # caching off: a cached notification is never sent
    assert exit_task["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    groups = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert set(groups) == {"csv-drop-duplicates"}
    notify_spec = json.loads(exit_task["inputs"]["parameters"]["spec"]["runtimeValue"]["constant"])
    assert notify_spec["targets"][1] == {"kind": "webhook", "env": "HOOK_URL", "on": ["failure"]}
    platform = text.split("\n---\n", 1)[1]
    assert "secretName: hooks" in platform and "keyToEnv" in platform and "envVar: HOOK_URL" in platform


def test_submit_refuses_notify_on_a_backend_older_than_2_14(tmp_path: Path, monkeypatch) -> None:
    """Final-status inputs run from 2.14.0 (cluster notes); submit says so before any upload."""
    from typer.testing import CliRunner

    from skitflow.cli.app import app
    from tests.kfp_server import running_kfp_server

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKITFLOW_RETRY_BACKOFF", "0.01")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(NOTIFY_RECIPE.format(path="s3://b/data.csv"))
    with running_kfp_server(backend_version="2.13.0") as old:
        result = CliRunner().invoke(app, ["submit", str(recipe), "--host", old.url])
        uploads = old.state.requests_to("/pipelines/upload", method="POST")
    assert result.exit_code == 2, result.output
    assert "final-status inputs of exit handlers (`notify:`) needs 2.14.0" in result.output
    assert "used by notify" in result.output and uploads == []
    with running_kfp_server(backend_version="2.14.0") as new:
        assert CliRunner().invoke(app, ["submit", str(recipe), "--host", new.url]).exit_code == 0


@pytest.mark.slow
def test_skitflow_run_notifies_once_at_the_end_with_everything(tmp_path: Path) -> None:
    recipe = tmp_path / "notify.yaml"
    recipe.write_text(NOTIFY_RECIPE.format(path=REPO / "examples/data/tickets.csv"))
    with running_receiver([503, 200]) as receiver:
        env = {"SLACK_WEBHOOK_URL": receiver.url + SECRET_PATH, "HOOK_URL": receiver.url + "/hook",
               "SKITFLOW_RETRY_BACKOFF": "0.01"}
        result = skitflow("run", recipe, "--out", tmp_path / "run", "--no-cache", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    [slack] = receiver.bodies(SECRET_PATH)  # once: the exit task left it to the CLI
    assert receiver.bodies("/hook") == []  # that target listens for failures only
    assert slack["channel"] == "#ml" and "succeeded" in slack["text"] and "<!here>" not in slack["text"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert f"run id: {summary['run']['id']}" in slack["blocks"][1]["text"]["text"]
    assert summary["tasks"]["notify"]["status"] == "succeeded"
    assert any("sent by `skitflow run` when the run ends" in line for line in summary["local_parity"])
    log = (tmp_path / "run" / "run.log").read_text()
    assert "skitflow run sends this run's notifications itself" in log
    for text in (result.stdout, result.stderr, log, (tmp_path / "run" / "package.yaml").read_text()):
        assert "Xk9vQ2mZ8pL4rT6wY1nB3cD5" not in text


@pytest.mark.slow
def test_a_failed_run_notifies_and_an_unreachable_receiver_leaves_its_exit_code(tmp_path: Path) -> None:
    recipe = tmp_path / "notify.yaml"
    recipe.write_text(NOTIFY_RECIPE.format(path=tmp_path / "missing.csv"))
    with running_receiver() as receiver:
        env = {"SLACK_WEBHOOK_URL": receiver.url + SECRET_PATH, "HOOK_URL": receiver.url + "/hook"}
        failed = skitflow("run", recipe, "--out", tmp_path / "a", "--no-cache", env=env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    [hook] = receiver.bodies("/hook")
    assert hook["event"] == "failure" and hook["failure"]["task"] == "csv-drop-duplicates"
    assert hook["failure"]["step"] == "csv" and hook["failure"]["location"] == "notify.yaml:4:3"
    assert "no such file" in hook["failure"]["error"]
    with running_receiver([503]) as down:
        env = {"SLACK_WEBHOOK_URL": down.url + SECRET_PATH, "HOOK_URL": down.url + "/hook",
               "SKITFLOW_RETRY_BACKOFF": "0.01", "SKITFLOW_RETRY_ATTEMPTS": "2"}
        again = skitflow("run", recipe, "--out", tmp_path / "b", "--no-cache", env=env)
    assert again.returncode == failed.returncode
    assert "no such file" in again.stderr  # the run's own error is still the one reported
    assert "NOT delivered after 2 tries" in again.stdout
    assert "Xk9vQ2mZ8pL4rT6wY1nB3cD5" not in again.stdout + again.stderr
