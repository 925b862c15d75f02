"""`skitflow serve`: pure checks (signatures, tokens, idempotency store, command parsing) and the
real service on uvicorn over 127.0.0.1 in front of the real KFP test server (tests/kfp_server).

No `from __future__ import annotations` here, like test_submit.py (kfp reads annotations).
"""

import concurrent.futures
import json
import logging
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from skitflow.serve import slack
from skitflow.serve.idempotency import IdempotencyStore, KeyReused
from skitflow.serve.messages import gate_verdict
from skitflow.serve.security import (
    RedactingFilter,
    bearer_matches,
    slack_request_problem,
    slack_signature,
)
from tests.kfp_server import running_kfp_server
from tests.serve_fixture import SlackRecorder, running_service, write_recipes

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000


# -- signatures and tokens (pure) -----------------------------------------------------------------


def test_slack_signature_matches_slacks_documented_example() -> None:
    """The worked example of Slack's "Verifying requests from Slack" page."""
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
            b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
            b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
            b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d1"
            b"0d2c447fce8b6703c")
    assert slack_signature(SECRET, "1531420618", body) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")


def test_slack_request_valid_stale_and_tampered() -> None:
    body = b"text=scores+test_size%3D0.3&response_url=x"
    stamp = str(NOW)
    signature = slack_signature(SECRET, stamp, body)
    assert slack_request_problem(SECRET, stamp, signature, body, now=lambda: NOW + 10) is None
    stale = slack_request_problem(SECRET, stamp, signature, body, now=lambda: NOW + 301)
    assert stale is not None and "older than 5 minutes" in stale
    future = slack_request_problem(SECRET, stamp, signature, body, now=lambda: NOW - 301)
    assert future is not None and "older than 5 minutes" in future
    tampered = slack_request_problem(SECRET, stamp, signature, body + b"1", now=lambda: NOW)
    assert tampered == "the signature does not match the body"
    other = slack_request_problem("another-secret", stamp, signature, body, now=lambda: NOW)
    assert other == "the signature does not match the body"
    assert "missing" in str(slack_request_problem(SECRET, None, signature, body))
    assert "not a number" in str(slack_request_problem(SECRET, "soon", signature, body))


def test_bearer_token_must_match_exactly() -> None:
    token = "s3cret-token-value-1234"
    assert bearer_matches(f"Bearer {token}", token)
    assert bearer_matches(f"bearer {token}", token)
    for header in (None, "", token, f"Basic {token}", f"Bearer {token}x", f"Bearer {token[:-1]}"):
        assert not bearer_matches(header, token)


def test_redacting_filter_scrubs_messages_and_arguments() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s and %s",
                               ("tok-abcdef", "sig-123456"), None)
    RedactingFilter(["tok-abcdef", "sig-123456"]).filter(record)
    assert record.getMessage() == "got *** and ***"


# -- idempotency store (pure, threads) ------------------------------------------------------------


def test_idempotency_same_key_shares_one_entry_and_other_request_is_refused() -> None:
    store = IdempotencyStore()
    first, created = store.claim("k1", "fp-a")
    again, created_again = store.claim("k1", "fp-a")
    assert created and not created_again and again is first
    with pytest.raises(KeyReused):
        store.claim("k1", "fp-b")
    store.forget("k1", first)
    assert store.claim("k1", "fp-b")[1]


def test_idempotency_entries_expire_and_the_store_is_bounded() -> None:
    clock = {"now": 0.0}
    store = IdempotencyStore(ttl=60, capacity=3, clock=lambda: clock["now"])
    store.claim("old", "fp")
    clock["now"] = 61
    assert store.claim("old", "fp")[1]  # expired: a new entry
    for key in ("a", "b", "c", "d"):
        store.claim(key, "fp")
    assert len(store) == 3
    assert store.claim("old", "fp")[1]  # evicted first, as the oldest


def test_idempotency_claim_is_thread_safe() -> None:
    store = IdempotencyStore()
    barrier = threading.Barrier(32)

    def claim() -> bool:
        barrier.wait()
        return store.claim("same", "fp")[1]

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        created = list(pool.map(lambda _: claim(), range(32)))
    assert created.count(True) == 1


# -- slash command parsing, response_url, gate (pure) ---------------------------------------------


def test_parse_command() -> None:
    assert slack.parse_command('scores test_size=0.3 label="a b"') == (
        "scores", {"test_size": "0.3", "label": "a b"})
    for bad in ("", "scores oops", 'scores a="unclosed'):
        with pytest.raises(ValueError):
            slack.parse_command(bad)


def test_response_url_must_be_slack() -> None:
    hosts = ("hooks.slack.com",)
    assert slack.response_url_allowed("https://hooks.slack.com/commands/1/2/3", hosts)
    assert not slack.response_url_allowed("http://hooks.slack.com/commands/1", hosts)
    assert not slack.response_url_allowed("https://evil.example/commands/1", hosts)
    assert not slack.response_url_allowed("https://hooks.slack.com.evil.example/", hosts)
    assert slack.response_url_allowed("http://127.0.0.1:9/x", ("127.0.0.1",))


def test_gate_verdict_from_task_states(tmp_path: Path) -> None:
    from skitflow.api import compile_recipe

    recipe = write_recipes(tmp_path) / "scores.yaml"
    plan = compile_recipe(recipe).plan
    gated = [t.id for t in plan.tasks if t.condition is not None]
    assert gated
    assert gate_verdict(plan, {gated[0]: "SUCCEEDED"}) == "passed"
    assert gate_verdict(plan, {gated[0]: "SKIPPED"}) == "failed"
    assert gate_verdict(plan, {}) is None and gate_verdict(None, {gated[0]: "SKIPPED"}) is None


# -- the real service -----------------------------------------------------------------------------


@pytest.fixture
def kfp():
    with running_kfp_server(run_polls=2) as server:
        yield server


@pytest.fixture
def service(kfp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("KFP_TOKEN", "KFP_COOKIE", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    with running_service(kfp.url, write_recipes(tmp_path / "recipes")) as running:
        yield running


def _runs(kfp) -> int:
    with kfp.state.lock:
        return len(kfp.state.runs)


def _post_run(service, body, name="scores", **headers):
    return requests.post(f"{service.url}/recipes/{name}/runs", json=body,
                         headers=service.headers(**headers), timeout=30)


def test_health_is_open_everything_else_needs_the_token(service) -> None:
    assert requests.get(f"{service.url}/health", timeout=5).json() == {"status": "ok"}
    for headers in ({}, {"Authorization": "Bearer wrong-token-0000000000"},
                    {"Authorization": f"Basic {service.token}"}):
        answer = requests.get(f"{service.url}/recipes", headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert service.token not in answer.text
    answer = requests.post(f"{service.url}/recipes/scores/runs", json={}, timeout=5)
    assert answer.status_code == 401
    assert requests.get(f"{service.url}/runs/x", timeout=5).status_code == 401


def test_recipes_lists_parameters_and_broken_files(service) -> None:
    answer = requests.get(f"{service.url}/recipes", headers=service.headers(), timeout=10)
    assert answer.status_code == 200
    recipes = {r["name"]: r for r in answer.json()["recipes"]}
    params = recipes["scores"]["parameters"]
    assert params["test_size"] == {"type": "float", "default": 0.25, "required": False,
                                   "description": "Share of rows held out."}
    assert params["since"]["required"] is True
    assert "error" in recipes["broken"]


def test_a_run_is_started_through_submit_and_followed(service, kfp) -> None:
    answer = _post_run(service, {"params": {"since": "2024-01-01", "max_depth": "4"},
                                 "experiment": "nightly"})
    assert answer.status_code == 201, answer.text
    started = answer.json()
    assert started["link"] == f"{kfp.url}/#/runs/details/{started['run_id']}"
    assert started["version"].startswith("v-") and started["params"]["max_depth"] == 4
    with kfp.state.lock:
        run = kfp.state.runs[started["run_id"]]
        assert len(kfp.state.pipeline_versions) == 1
    assert run is not None
    again = _post_run(service, {"params": {"since": "2024-01-02"}})  # no key: a second run
    assert again.status_code == 201 and _runs(kfp) == 2
    with kfp.state.lock:
        assert len(kfp.state.pipeline_versions) == 1  # the content-named version is reused
    for _ in range(20):
        view = requests.get(f"{service.url}/runs/{started['run_id']}", headers=service.headers(),
                            timeout=10).json()
        if view["finished"]:
            break
    assert view["state"] == "SUCCEEDED" and view["recipe"] == "scores"
    assert view["gate"] == "passed" and view["metrics"] is None
    assert "no `metrics` output artifact" in view["metrics_note"]
    missing = requests.get(f"{service.url}/runs/nope", headers=service.headers(), timeout=10)
    assert missing.status_code == 404


def test_bad_params_are_400_with_every_problem(service, kfp) -> None:
    answer = _post_run(service, {"params": {"test_size": "lots", "max_depth": 2.5,
                                            "colour": "red"}, "extra": 1})
    assert answer.status_code == 400
    problems = [p["message"] for p in answer.json()["problems"]]
    assert len(problems) == 5, problems  # extra, test_size, max_depth, colour, since (missing)
    text = " ".join(problems)
    for word in ("`extra`", "test_size", "max_depth", "colour", "since"):
        assert word in text
    assert _runs(kfp) == 0
    assert _post_run(service, {"params": {}}, name="scorez").status_code == 404
    bad_json = requests.post(f"{service.url}/recipes/scores/runs", data=b"{nope",
                             headers=service.headers(), timeout=5)
    assert bad_json.status_code == 400


def test_bodies_are_bounded(service) -> None:
    big = {"params": {"label": "x" * 70_000, "since": "2024-01-01"}}
    assert _post_run(service, big).status_code == 413

    def chunks():
        for _ in range(80):
            yield b"x" * 1024

    streamed = requests.post(f"{service.url}/recipes/scores/runs", data=chunks(),
                             headers=service.headers(), timeout=10)  # chunked: no length
    assert streamed.status_code == 413


def test_idempotency_key_returns_the_first_run(service, kfp) -> None:
    body = {"params": {"since": "2024-01-01"}}
    first = _post_run(service, body, **{"Idempotency-Key": "nightly-2024-01-01"})
    second = _post_run(service, body, **{"Idempotency-Key": "nightly-2024-01-01"})
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["run_id"] == second.json()["run_id"] and second.json()["replayed"]
    other = _post_run(service, {"params": {"since": "2024-02-02"}},
                      **{"Idempotency-Key": "nightly-2024-01-01"})
    assert other.status_code == 422
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: _post_run(service, body, **{"Idempotency-Key": "race"}),
                                range(20)))
    assert {a.status_code for a in answers} <= {200, 201}
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert _runs(kfp) == 2


def test_kubeflow_503_is_a_502_and_a_stall_a_504_in_time(service, kfp) -> None:
    kfp.faults.add(r"/runs$", status=503, times=None, method="POST")
    started = time.monotonic()
    answer = _post_run(service, {"params": {"since": "2024-01-01"}})
    assert answer.status_code == 502 and "503" in answer.json()["error"], answer.text
    assert time.monotonic() - started < service.settings.kfp_timeout + 1
    kfp.faults.clear()
    kfp.faults.add(r"/runs$", status=None, delay=30, times=None, method="POST")
    started = time.monotonic()
    answer = _post_run(service, {"params": {"since": "2024-01-01"}},
                       **{"Idempotency-Key": "stalled"})
    assert answer.status_code == 504 and "did not answer within" in answer.json()["error"]
    assert time.monotonic() - started < service.settings.kfp_timeout + 1
    assert requests.get(f"{service.url}/health", timeout=2).status_code == 200


def test_slow_headers_do_not_stop_other_requests(service) -> None:
    with socket.create_connection(("127.0.0.1", int(service.url.rsplit(":", 1)[1]))) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert requests.get(f"{service.url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1
        slow.sendall(b"\r\n")
        assert b"200" in slow.recv(1024)


def test_tokens_never_reach_the_log(service, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="skitflow.serve"):
        requests.get(f"{service.url}/recipes?token={service.token}", headers=service.headers(),
                     timeout=10)
        requests.get(f"{service.url}/recipes", headers={"Authorization": "Bearer guess-1234"},
                     timeout=10)
        deadline = time.monotonic() + 5  # the server thread logs a request after it answered it
        while time.monotonic() < deadline and sum(
                "GET /recipes" in r.getMessage() for r in caplog.records) < 2:
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records]
    assert any("GET /recipes 200" in line for line in lines)
    assert any("GET /recipes 401" in line for line in lines)
    assert not any(service.token in line or "guess-1234" in line for line in lines)


def _slack_post(service, text: str, response_url: str, *, stamp: int | None = None,
                secret: str | None = None):
    body = urllib.parse.urlencode({"command": "/run", "text": text, "user_name": "ana",
                                   "response_url": response_url}).encode()
    stamp_text = str(int(time.time()) if stamp is None else stamp)
    headers = {"X-Slack-Request-Timestamp": stamp_text,
               "X-Slack-Signature": slack_signature(secret or service.slack_secret, stamp_text, body),
               "Content-Type": "application/x-www-form-urlencoded"}
    return requests.post(f"{service.url}/slack/command", data=body, headers=headers, timeout=5)


def test_slack_command_acks_at_once_and_posts_the_outcome(service, kfp) -> None:
    with SlackRecorder() as recorder:
        started = time.monotonic()
        answer = _slack_post(service, "scores since=2024-01-01 test_size=0.3", recorder.url)
        assert time.monotonic() - started < 3  # Slack's limit for the acknowledgement
        assert answer.status_code == 200
        assert answer.json()["response_type"] == "ephemeral" and "starting" in answer.json()["text"]
        messages = recorder.wait_for(2)
    assert len(messages) == 2, messages
    assert "started" in messages[0]["text"] and kfp.url in messages[0]["text"]
    outcome = json.dumps(messages[1])  # the notify builder's payload: text and blocks
    assert "succeeded" in messages[1]["text"] and "gate: passed" in outcome
    assert "Kubeflow state: SUCCEEDED" in outcome and messages[1]["response_type"] == "in_channel"
    assert _runs(kfp) == 1


def test_slack_command_refuses_bad_signatures_and_reports_bad_params(service, kfp) -> None:
    with SlackRecorder() as recorder:
        assert _slack_post(service, "scores since=x", recorder.url,
                           secret="wrong-secret").status_code == 401
        assert _slack_post(service, "scores since=x", recorder.url,
                           stamp=int(time.time()) - 600).status_code == 401
        answer = _slack_post(service, "scores test_size=big", recorder.url)
        assert answer.status_code == 200 and "was not started" in answer.json()["text"]
        assert "test_size" in answer.json()["text"] and "since" in answer.json()["text"]
        assert _slack_post(service, "scores since=x", "https://evil.example/x").status_code == 400
        unknown = _slack_post(service, "scorez", recorder.url).json()["text"]
        assert "did you mean" in unknown
    assert _runs(kfp) == 0


def test_serve_without_a_token_is_an_input_error(cli, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKITFLOW_SERVE_TOKEN", raising=False)
    result = cli("serve", str(tmp_path), "--kfp-host", "http://127.0.0.1:9")
    assert result.exit_code == 2 and "SKITFLOW_SERVE_TOKEN" in result.output


def test_json_is_answered_for_unknown_routes(service) -> None:
    answer = requests.get(f"{service.url}/nothing", headers=service.headers(), timeout=5)
    assert answer.status_code == 404 and json.loads(answer.text)["error"]


# -- metrics of a finished run (its evaluate task's Metrics artifact, in real S3) ------------------


def _evaluate_task(folder: Path) -> str:
    from skitflow.api import compile_recipe

    plan = compile_recipe(folder / "scores.yaml").plan
    (task,) = [t.id for t in plan.tasks if t.component == "evaluate"]
    return task


def _metrics_document() -> dict:
    """What the evaluator writes at its Metrics artifact's path (skitflow.run.runtime.evaluate):
    the scalars under `metrics`, next to the details."""
    from sklearn import metrics

    actual, predicted = [0, 1, 1, 0, 1, 1, 0, 1], [0, 1, 0, 0, 1, 1, 1, 1]
    scalars = {"accuracy": float(metrics.accuracy_score(actual, predicted)),
               "f1_macro": float(metrics.f1_score(actual, predicted, average="macro"))}
    return {"metrics": scalars, "per_class": {"0": {"support": 3}, "1": {"support": 5}},
            "gate": {"passed": True, "metric": "accuracy"}}


def _finished_view(service, run_id: str) -> dict:
    for _ in range(20):
        answer = requests.get(f"{service.url}/runs/{run_id}", headers=service.headers(), timeout=30)
        assert answer.status_code == 200, answer.text
        view = answer.json()
        if view["finished"]:
            return view
    raise AssertionError(f"run {run_id} did not finish: {view}")


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch) -> dict:
    env = {**s3_server.env(), "AWS_MAX_ATTEMPTS": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_a_finished_run_answers_its_metrics_from_the_artifact(service, kfp, s3_server,
                                                              s3_env) -> None:
    bucket = s3_server.create_bucket()
    document = _metrics_document()
    key = "v2/artifacts/scores/run/evaluate/metrics"
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
    task = _evaluate_task(service.settings.recipes)
    artifact_id = kfp.state.add_output_artifact(task, "metrics", f"s3://{bucket}/{key}")
    started = _post_run(service, {"params": {"since": "2024-01-01"}}).json()
    first = requests.get(f"{service.url}/runs/{started['run_id']}", headers=service.headers(),
                         timeout=30).json()
    assert not first["finished"] and first["metrics"] is None and first["metrics_note"] is None
    view = _finished_view(service, started["run_id"])
    assert view["state"] == "SUCCEEDED" and view["gate"] == "passed"
    assert view["metrics"] == document["metrics"] and view["metrics_note"] is None
    assert kfp.state.requests_to(f"/artifacts/{artifact_id}$", "GET")
    again = _finished_view(service, started["run_id"])  # read once: the second answer is kept
    assert again["metrics"] == document["metrics"]
    assert len(kfp.state.requests_to(f"/artifacts/{artifact_id}$", "GET")) == 1


def test_unreadable_metrics_are_null_with_a_note_and_status_200(service, kfp, s3_server,
                                                                s3_env) -> None:
    bucket = s3_server.create_bucket()
    task = _evaluate_task(service.settings.recipes)
    kfp.state.add_output_artifact(task, "metrics", f"s3://{bucket}/never/written")
    started = _post_run(service, {"params": {"since": "2024-01-01"}}).json()
    view = _finished_view(service, started["run_id"])
    assert view["state"] == "SUCCEEDED" and view["gate"] == "passed"
    assert view["metrics"] is None
    assert task in view["metrics_note"] and "never/written" in view["metrics_note"]
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in view["metrics_note"]
    # the object appears later: a failed read is not kept, the next request reads it
    document = _metrics_document()
    s3_server.client().put_object(Bucket=bucket, Key="never/written",
                                  Body=json.dumps(document).encode())
    assert _finished_view(service, started["run_id"])["metrics"] == document["metrics"]


def test_no_output_artifact_or_an_unknown_store_is_a_note(service, kfp,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKITFLOW_SERVE_PIPELINE_ROOT", "gs://bucket/root")  # no S3 is tried
    started = _post_run(service, {"params": {"since": "2024-01-01"}}).json()
    view = _finished_view(service, started["run_id"])
    assert view["metrics"] is None and "no `metrics` output artifact" in view["metrics_note"]
    task = _evaluate_task(service.settings.recipes)
    kfp.state.add_output_artifact(task, "metrics", "gs://bucket/metrics")
    started = _post_run(service, {"params": {"since": "2024-01-01"}}).json()
    view = _finished_view(service, started["run_id"])
    assert view["metrics"] is None and "gs://" in view["metrics_note"]


@pytest.mark.parametrize("salt", ["", "a1b2c3/"])
def test_without_listed_outputs_the_metrics_are_read_under_the_runs_root(
        service, kfp, s3_server, s3_env, monkeypatch: pytest.MonkeyPatch, salt: str) -> None:
    """Kubeflow 2.5 with Argo lists no task outputs: the object is where the driver puts it,
    <pipeline root>/<pipeline name>/<run id>/<task>/[<salt>/]metrics."""
    bucket = s3_server.create_bucket()
    monkeypatch.setenv("SKITFLOW_SERVE_PIPELINE_ROOT", f"minio://{bucket}/v2/artifacts")
    task = _evaluate_task(service.settings.recipes)
    started = _post_run(service, {"params": {"since": "2024-01-01"}}).json()
    from skitflow.api import compile_recipe

    name = compile_recipe(service.settings.recipes / "scores.yaml").plan.name
    document = _metrics_document()
    key = f"v2/artifacts/{name}/{started['run_id']}/{task}/{salt}metrics"
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
    view = _finished_view(service, started["run_id"])
    assert view["metrics"] == document["metrics"] and view["metrics_note"] is None
    other = _post_run(service, {"params": {"since": "2024-01-02"}}).json()  # nothing stored
    view = _finished_view(service, other["run_id"])
    assert view["metrics"] is None and other["run_id"] in view["metrics_note"]


def test_the_artifact_endpoint_follows_the_artifact_service() -> None:
    with running_kfp_server() as server:
        artifact_id = server.state.add_output_artifact("evaluate", "metrics", "s3://b/k/metrics")
        answer = requests.get(f"{server.url}/apis/v2beta1/artifacts/{artifact_id}", timeout=10)
        assert answer.status_code == 200
        body = answer.json()
        assert body["uri"] == "s3://b/k/metrics" and body["artifact_type"] == "system.Metrics"
        assert body["storage_provider"] == "s3" and body["storage_path"] == "k/metrics"
        assert "download_url" not in body
        missing = requests.get(f"{server.url}/apis/v2beta1/artifacts/999", timeout=10)
        assert missing.status_code == 404
        assert requests.get(f"{server.url}/apis/v2beta1/artifacts/x", timeout=10).status_code == 400


SWEEP = """\
apiVersion: skitflow/v1
name: sweep
matrix:
  depth: [2, 4]
source:
  csv: {path: data/rows.csv}
split:
  train_test: {test_size: 0.25, stratify: label}
trainer:
  xgboost: {target: label, params: {max_depth: "{{ matrix.depth }}"}}
evaluator:
  classification: {target: label}
  gate: {metric: accuracy, min: 0.5}
sinks:
  - file: {path: out/model.json}
    input: model
"""


def test_a_matrix_run_answers_metrics_per_branch(kfp, s3_server, s3_env, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from skitflow.api import compile_recipe

    for name in ("KFP_TOKEN", "KFP_COOKIE", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "sweep.yaml").write_text(SWEEP)
    tasks = [t.id for t in compile_recipe(folder / "sweep.yaml").plan.tasks
             if t.component == "evaluate"]
    assert len(tasks) == 2
    bucket = s3_server.create_bucket()
    expected = {}
    for index, task in enumerate(tasks):
        document = {"metrics": {"accuracy": 0.5 + index / 8, "f1_macro": 0.25 + index / 16}}
        s3_server.client().put_object(Bucket=bucket, Key=f"{task}/metrics",
                                      Body=json.dumps(document).encode())
        kfp.state.add_output_artifact(task, "metrics", f"s3://{bucket}/{task}/metrics")
        expected[task] = document["metrics"]
    with running_service(kfp.url, folder) as service:
        started = _post_run(service, {}, name="sweep")
        assert started.status_code == 201, started.text
        view = _finished_view(service, started.json()["run_id"])
    assert view["state"] == "SUCCEEDED"
    assert view["metrics"] == expected and view["metrics_note"] is None
