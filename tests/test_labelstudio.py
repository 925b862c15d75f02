"""The Label Studio connector, the `labelstudio` sink and the `labelstudio` source.

Against a real Label Studio 1.23.2 (and PostgreSQL 15 for the end-to-end run): the client with a
legacy token and with a personal access token, the sink's idempotency, pre-annotations, and
recipes run through the real CLI (`python -m skitflow run`) in a subprocess whose tasks find the
servers through LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY / DATABASE_URL. Faults a real server
cannot be made to produce (a malformed export, 5xx and 429 answers, a hung server) come from a
small local stub.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from skitflow.connectors.labelstudio import LabelStudioClient, token_kind
from skitflow.errors import RemoteError, StepFailed
from skitflow.steps.base import ArtifactFile, RunContext
from skitflow.steps.labelstudio import (
    KEY_FIELD,
    LabelStudioExport,
    LabelStudioSink,
    _result_value,
    flatten_json,
    flatten_json_min,
)
from tests.services import free_port

# Tests that use a server fixture are marked `services` by tests/services.py; the rest are pure.

CHOICE = {"from_name": "label", "to_name": "text", "type": "choices"}


# -- helpers --------------------------------------------------------------------------------------


def _title(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ls_env(labelstudio_server: Any) -> dict[str, str]:
    return {"LABEL_STUDIO_URL": labelstudio_server.url,
            "LABEL_STUDIO_API_KEY": labelstudio_server.token,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture
def client(labelstudio_server: Any) -> Iterator[LabelStudioClient]:
    with LabelStudioClient(labelstudio_server.url, labelstudio_server.token) as c:
        yield c


@pytest.fixture
def pat(labelstudio_server: Any) -> str:
    """A personal access token (JWT refresh token) of the test user; made if there is none."""
    return labelstudio_server.personal_access_token()


def _context(environ: dict[str, str], tmp_path: Path | None = None) -> RunContext:
    lines: list[str] = []
    ctx = RunContext("ls-test", "run-1", "2024-01-01", str(tmp_path or "/tmp"), environ,
                     lines.append)
    ctx.lines = lines  # type: ignore[attr-defined]
    return ctx


def _artifact(frame: pd.DataFrame, path: Path) -> ArtifactFile:
    frame.to_parquet(path, index=False)
    return ArtifactFile(str(path), "dataset", "parquet")


def _tasks(client: LabelStudioClient, project_id: int) -> list[dict[str, Any]]:
    return list(client.iter_tasks(project_id))


def _run_cli(tmp_path: Path, recipe: str, env: dict[str, str], name: str,
             ) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(recipe))
    drop = {"DATABASE_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_TOKEN"}
    child = {k: v for k, v in os.environ.items() if k not in drop}
    child.update(env)
    return subprocess.run(
        [sys.executable, "-m", "skitflow", "run", str(path), "--out", str(tmp_path / f"run-{name}"),
         "--no-cache"],
        cwd=tmp_path, env=child, capture_output=True, text=True, timeout=180,
    )


def _all_text(tmp_path: Path, done: subprocess.CompletedProcess[str]) -> str:
    texts = [done.stdout, done.stderr]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*")
              if p.is_file() and p.stat().st_size < 5_000_000]
    return "\n".join(texts)


def _jwt(payload: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


class _Stub:
    """A local HTTP server answering from a script: path -> list of (status, body, delay)."""

    def __init__(self, script: dict[str, list[tuple[int, Any, float]]]) -> None:
        self.script = script
        self.calls: list[tuple[str, str]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?")[0]
                stub.calls.append((self.command, path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answers = stub.script.get(path) or [(404, {"detail": "Not found."}, 0.0)]
                status, body, delay = answers.pop(0) if len(answers) > 1 else answers[0]
                time.sleep(delay)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False  # a hung answer must not hold up the test's end

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up waiting is what some tests want

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stub_client(stub: _Stub, **options: Any) -> LabelStudioClient:
    return LabelStudioClient(stub.url, "a" * 40, backoff=0.01, **options)


# -- the connector --------------------------------------------------------------------------------


def test_token_kind_by_shape() -> None:
    assert token_kind("0123456789abcdef" * 2 + "01234567") == "legacy"
    assert token_kind(_jwt({"token_type": "refresh", "exp": 9999999999})) == "refresh"
    assert token_kind(_jwt({"token_type": "access", "exp": 9999999999})) == "access"
    assert token_kind("not.a.jwt") == "legacy"
    assert "a" * 40 not in repr(LabelStudioClient("http://x", "a" * 40))


def test_from_env_names_the_missing_variable() -> None:
    with pytest.raises(RemoteError, match="`LABEL_STUDIO_URL` is not set"):
        LabelStudioClient.from_env({})
    with pytest.raises(RemoteError, match="set `LABEL_STUDIO_API_KEY` \\(or `LABEL_STUDIO_TOKEN`\\)"):
        LabelStudioClient.from_env({"LABEL_STUDIO_URL": "http://x"})
    with pytest.raises(RemoteError, match="must be an http:// or https:// URL"):
        LabelStudioClient.from_env({"LABEL_STUDIO_URL": "localhost:8080", "LABEL_STUDIO_TOKEN": "t"})
    c = LabelStudioClient.from_env({"LABEL_STUDIO_URL": "http://x/", "LABEL_STUDIO_TOKEN": "t"})
    assert c.url == "http://x" and c.token_env == "LABEL_STUDIO_TOKEN"


def test_projects_tasks_and_exports(client: LabelStudioClient) -> None:
    title = _title("client")
    config = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
              '<Choice value="a"/><Choice value="b"/></Choices></View>')
    project, created = client.ensure_project(title, config)
    assert created
    again, created = client.ensure_project(title, config)
    assert not created and again["id"] == project["id"]
    pid = project["id"]
    assert client.find_project(title)["id"] == pid
    assert client.find_project(str(pid))["id"] == pid
    assert client.import_tasks(pid, [{"data": {"text": f"t{i}"}} for i in range(5)]) == 5
    tasks = list(client.iter_tasks(pid, page_size=2))  # three pages
    assert sorted(t["data"]["text"] for t in tasks) == [f"t{i}" for i in range(5)]
    client.create_annotation(tasks[0]["id"], [{**CHOICE, "value": {"choices": ["a"]}}])
    exported = client.export(pid, "JSON")
    assert [t["id"] for t in exported] == [tasks[0]["id"]]
    assert len(client.export(pid, "JSON", download_all_tasks=True)) == 5
    minimal = client.export(pid, "JSON_MIN")
    assert minimal[0]["label"] == "a" and minimal[0]["text"] == tasks[0]["data"]["text"]


def test_personal_access_token_is_exchanged_and_refreshed(labelstudio_server: Any,
                                                          pat: str) -> None:
    with LabelStudioClient(labelstudio_server.url, pat) as c:
        assert c.kind == "refresh"
        assert isinstance(c.list_projects(), list)
        first = c._access
        assert first and first != pat
        c._access_expiry = time.time()  # about to run out: refreshed before the next call
        c.list_projects()
        assert c._access != first
        c._access, c._access_expiry = "expired.access.token", None  # refused: refreshed once
        assert isinstance(c.list_projects(), list)


def test_a_fresh_personal_access_token_replaces_the_one_before(labelstudio_server: Any) -> None:
    old = labelstudio_server.personal_access_token()
    new = labelstudio_server.personal_access_token(fresh=True)  # Label Studio's 409 path
    assert new != old and labelstudio_server.personal_access_token() == new
    with LabelStudioClient(labelstudio_server.url, new) as c:
        assert isinstance(c.list_projects(), list)
    with pytest.raises(RemoteError, match="personal access token"):
        LabelStudioClient(labelstudio_server.url, old, token_env="LABEL_STUDIO_TOKEN").list_projects()


def test_refused_tokens_name_the_variable_never_the_token(labelstudio_server: Any) -> None:
    legacy = "f" * 40
    with pytest.raises(RemoteError) as caught:
        LabelStudioClient(labelstudio_server.url, legacy).list_projects()
    assert "refused the legacy API token in `LABEL_STUDIO_API_KEY`" in str(caught.value)
    assert legacy not in str(caught.value) + str(caught.value.problems[0].hint)
    jwt = _jwt({"token_type": "refresh", "exp": 9999999999})
    with pytest.raises(RemoteError) as caught:
        LabelStudioClient(labelstudio_server.url, jwt, token_env="LABEL_STUDIO_TOKEN").list_projects()
    assert "personal access token in `LABEL_STUDIO_TOKEN`" in str(caught.value)
    assert jwt not in str(caught.value) + str(caught.value.problems[0].hint)


def test_unreachable_server() -> None:
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"cannot reach Label Studio at http://127.0.0.1:\d+ "
                       r"\(Connection refused\)"):
        LabelStudioClient(f"http://127.0.0.1:{free_port()}", "t", retries=2,
                          backoff=0.05).list_projects()
    assert time.monotonic() - started < 10


def test_missing_project_by_id_and_by_title(client: LabelStudioClient) -> None:
    title = _title("present")
    client.create_project(title, "<View></View>")
    with pytest.raises(RemoteError, match=r"project 987654 not found at .*; projects there:"):
        client.get_project(987654)
    with pytest.raises(RemoteError, match=rf"no project titled `{title}x` at .*; did you mean `{title}`"):
        client.find_project(title + "x")


def test_get_is_retried_on_5xx_and_post_only_on_429() -> None:
    script: dict[str, list[tuple[int, Any, float]]] = {
        "/api/projects/": [(503, "busy", 0.0), (502, "bad gateway", 0.0),
                           (200, {"count": 1, "next": None, "results": [{"id": 1}]}, 0.0)],
        "/api/projects/1/import": [(429, {"detail": "slow down"}, 0.0),
                                   (201, {"task_count": 2}, 0.0)],
        "/api/projects/2/import": [(502, "<html>bad gateway</html>", 0.0),
                                   (201, {"task_count": 2}, 0.0)],
    }
    with _Stub(script) as stub, _stub_client(stub) as c:
        assert [p["id"] for p in c.list_projects()] == [1]
        assert stub.calls.count(("GET", "/api/projects/")) == 3
        assert c.import_tasks(1, [{"data": {}}, {"data": {}}]) == 2
        assert stub.calls.count(("POST", "/api/projects/1/import")) == 2
        with pytest.raises(RemoteError, match=r"failed while importing 2 tasks into project 2 \(502\)"):
            c.import_tasks(2, [{"data": {}}, {"data": {}}])
        assert stub.calls.count(("POST", "/api/projects/2/import")) == 1  # never sent twice


def test_a_hung_server_times_out() -> None:
    script = {"/api/projects/": [(200, {"results": []}, 3.0)]}
    match = r"did not answer within 0.5s while listing projects"
    with _Stub(script) as stub, _stub_client(stub, timeout=0.5, retries=1) as c:
        with pytest.raises(RemoteError, match=match):
            c.list_projects()
        assert stub.calls.count(("GET", "/api/projects/")) == 2  # a GET is tried again


@pytest.mark.parametrize(("body", "why"), [
    ("<html>login</html>", "it is not JSON"),
    ({"tasks": []}, "expected a list of tasks, got dict"),
    ([{"id": 1, "data": "text", "annotations": []}], "task 1 has no `data` mapping"),
    (["x"], "item 0 is not a task"),
])
def test_malformed_export_is_a_clear_error(body: Any, why: str) -> None:
    match = rf"JSON export of project 7 .* is malformed: {why}"
    with (_Stub({"/api/projects/7/export": [(200, body, 0.0)]}) as stub, _stub_client(stub) as c,
          pytest.raises(RemoteError, match=match)):
        c.export(7, "JSON")


# -- flattening exports (no server) ---------------------------------------------------------------


def test_result_values_by_control_type() -> None:
    def item(kind: str, value: dict[str, Any]) -> dict[str, Any]:
        return {"type": kind, "value": value}

    assert _result_value([item("choices", {"choices": ["a", "b"]})], "|") == "a|b"
    assert _result_value([item("taxonomy", {"taxonomy": [["x", "y"], ["z"]]})], ",") == "x/y,z"
    assert _result_value([item("textarea", {"text": ["hello"]})], ",") == "hello"
    assert _result_value([item("rating", {"rating": 4})], ",") == 4
    spans = [item("labels", {"start": 0, "end": 5, "labels": ["ORG"]}),
             item("labels", {"start": 9, "end": 12, "labels": ["LOC"]})]
    assert json.loads(_result_value(spans, ",")) == [v["value"] for v in spans]
    assert _result_value([], ",") is None


def test_flatten_json_takes_the_latest_annotation_that_was_not_cancelled() -> None:
    items = [
        {"id": 1, "data": {"text": "a"}, "annotations": [
            {"id": 1, "updated_at": "2024-01-01T00:00:00Z",
             "result": [{**CHOICE, "value": {"choices": ["old"]}}]},
            {"id": 2, "updated_at": "2024-01-02T00:00:00Z",
             "result": [{**CHOICE, "value": {"choices": ["new"]}}]},
            {"id": 3, "updated_at": "2024-01-03T00:00:00Z", "was_cancelled": True, "result": []},
        ]},
        {"id": 2, "data": {"text": "b"}, "annotations": [{"id": 4, "was_cancelled": True}]},
        {"id": 3, "data": {"text": "c"}, "annotations": []},
    ]
    rows = flatten_json(items, {"label": "team"}, ",", annotated_only=True)
    assert [(r["task_id"], r["labels"]["team"]) for r in rows] == [(1, "new")]
    rows = flatten_json(items, {"label": "team"}, ",", annotated_only=False)
    assert [(r["task_id"], r["labels"]["team"]) for r in rows] == [(1, "new"), (2, None), (3, None)]


def test_flatten_json_min_one_row_per_task() -> None:
    items = [
        {"id": 1, "text": "a", "label": "old", "annotation_id": 1, "updated_at": "2024-01-01"},
        {"id": 1, "text": "a", "label": {"choices": ["x", "y"]}, "annotation_id": 2,
         "updated_at": "2024-01-02"},
        {"id": 2, "text": "b", "annotation_id": None},
    ]
    rows = flatten_json_min(items, {"label": "team"}, {"label"}, ";", annotated_only=True)
    assert rows == [{"task_id": 1, "data": {"text": "a"}, "labels": {"team": "x;y"}}]


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="give `labels`"):
        LabelStudioSink.Settings(project="p")
    with pytest.raises(ValidationError, match="not valid XML"):
        LabelStudioSink.Settings(project="p", label_config="<View><Text></View>")
    with pytest.raises(ValidationError, match="positive"):
        LabelStudioSink.Settings(project=0, labels=["a"])
    with pytest.raises(ValidationError, match="`team` would be made twice"):
        LabelStudioExport.Settings(project=1, fields=["team"], label_fields={"label": "team"})
    settings = LabelStudioSink.Settings(project="p", labels=["a"], text_column="subject",
                                        prediction_column="pred", key_column="id")
    assert LabelStudioSink().needs(settings) == ["subject", "pred", "id"]
    export = LabelStudioExport.Settings(project=1, fields=["text"], label_fields={"label": "y"})
    assert LabelStudioExport().columns_after(export, None) == ["task_id", "text", "y"]


# -- the sink, in this process --------------------------------------------------------------------


def test_sink_is_idempotent_and_sends_predictions(client: LabelStudioClient,
                                                  ls_env: dict[str, str], tmp_path: Path) -> None:
    title = _title("sink")
    frame = pd.DataFrame({"id": range(20), "text": [f"ticket {i}" for i in range(20)],
                          "guess": ["billing" if i % 2 else "tech" for i in range(20)],
                          "p": [0.5 + i / 100 for i in range(20)]})
    settings = LabelStudioSink.Settings(project=title, labels=["billing", "tech"],
                                        prediction_column="guess", score_column="p",
                                        key_column="id", batch_size=7)
    sink, ctx = LabelStudioSink(), _context(ls_env, tmp_path)
    where = sink.run(_artifact(frame, tmp_path / "a.parquet"), settings, ctx)
    project_id = client.find_project(title)["id"]
    assert where == f"labelstudio://project/{project_id} (+20 new, 0 existing)"
    assert sink.run(_artifact(frame, tmp_path / "b.parquet"), settings, ctx).endswith(
        "(+0 new, 20 existing)")
    more = pd.concat([frame, pd.DataFrame({"id": [20, 21], "text": ["x", "y"],
                                           "guess": ["tech", None], "p": [0.9, None]})])
    assert sink.run(_artifact(more, tmp_path / "c.parquet"), settings, ctx).endswith(
        "(+2 new, 20 existing)")
    tasks = _tasks(client, project_id)
    assert len(tasks) == 22
    assert sorted(t["data"][KEY_FIELD] for t in tasks) == sorted(str(i) for i in range(22))
    assert set(tasks[0]["data"]) == {"id", "text", KEY_FIELD}
    detailed = client.request("GET", "/api/tasks/", what="test",
                              params={"project": project_id, "fields": "all",
                                      "page_size": 100}).json()["tasks"]
    by_key = {t["data"][KEY_FIELD]: t for t in detailed}
    prediction = by_key["3"]["predictions"][0]
    assert prediction["result"][0]["value"] == {"choices": ["billing"]}
    assert prediction["score"] == pytest.approx(0.53) and prediction["model_version"] == "ls-test"
    assert by_key["21"]["predictions"] == []  # no prediction for an empty cell


def test_bundle_predictions_become_pre_annotations(client: LabelStudioClient,
                                                   ls_env: dict[str, str], tmp_path: Path) -> None:
    """A model bundle scores raw rows; the sink sends its prediction and score to Label Studio as
    pre-annotations (`predictions: [{model_version, score, result}]`), as a `predict:` recipe does."""
    import skitflow
    from tests.test_bundle import _bundle_bytes, utterances

    (tmp_path / "model.zip").write_bytes(_bundle_bytes(tmp_path))
    bundle = skitflow.load_model(tmp_path / "model.zip")
    rows = utterances(12, seed=3).drop(columns=["intent"])
    scored = bundle.predictions(rows)
    title = _title("prelabel")
    settings = LabelStudioSink.Settings(
        project=title, labels=bundle.classes, text_column="utterance", key_column="call_id",
        data_columns=["call_id", "utterance"], prediction_column="prediction",
        score_column="prediction_score", model_version="intents-v1")
    LabelStudioSink().run(_artifact(scored, tmp_path / "scored.parquet"), settings, _context(ls_env, tmp_path))
    project_id = client.find_project(title)["id"]
    detailed = client.request("GET", "/api/tasks/", what="test",
                              params={"project": project_id, "fields": "all", "page_size": 100}).json()["tasks"]
    assert len(detailed) == 12
    by_key = {t["data"][KEY_FIELD]: t for t in detailed}
    for _, row in scored.iterrows():
        prediction = by_key[str(row["call_id"])]["predictions"][0]
        assert prediction["model_version"] == "intents-v1"
        assert prediction["result"][0]["value"] == {"choices": [row["prediction"]]}
        assert prediction["score"] == pytest.approx(row["prediction_score"])


def test_sink_default_key_is_a_hash_of_the_data(client: LabelStudioClient,
                                                ls_env: dict[str, str], tmp_path: Path) -> None:
    title = _title("hash")
    frame = pd.DataFrame({"text": ["a", "b", "a", "c"], "n": [1, 2, 1, 3]})
    settings = LabelStudioSink.Settings(project=title, labels=["x"])
    ctx = _context(ls_env, tmp_path)
    first = LabelStudioSink().run(_artifact(frame, tmp_path / "a.parquet"), settings, ctx)
    assert first.endswith("(+3 new, 0 existing)")  # the repeated row is sent once
    assert any("repeat the key" in line for line in ctx.lines)  # type: ignore[attr-defined]
    second = LabelStudioSink().run(_artifact(frame, tmp_path / "b.parquet"), settings, ctx)
    assert second.endswith("(+0 new, 3 existing)")


def test_sink_errors_before_sending(ls_env: dict[str, str], tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["a"], "guess": ["biling"]})
    settings = LabelStudioSink.Settings(project=_title("x"), labels=["billing"],
                                        prediction_column="guess")
    with pytest.raises(StepFailed, match="prediction `biling` is not one of the labels; did you "
                       "mean `billing`"):
        LabelStudioSink().run(_artifact(frame, tmp_path / "a.parquet"), settings,
                              _context(ls_env, tmp_path))
    missing = LabelStudioSink.Settings(project=_title("x"), labels=["a"], text_column="body")
    with pytest.raises(StepFailed, match="no column `body`"):
        LabelStudioSink().run(_artifact(frame, tmp_path / "b.parquet"), missing,
                              _context(ls_env, tmp_path))


# -- end to end through the CLI -------------------------------------------------------------------

SEND = """\
apiVersion: skitflow/v1
name: tickets-to-labelstudio
source:
  sql:
    query: "SELECT ticket_id, subject, channel, minutes FROM tickets WHERE minutes >= :min"
    params: {{min: 0}}
    columns: [ticket_id, subject, channel, minutes]
steps:
  - strip: {{columns: [subject]}}
  - lowercase: {{columns: [subject]}}
  - rename_columns: {{mapping: {{subject: text, channel: guess}}}}
sinks:
  - labelstudio:
      project: "{title}"
      text_column: text
      labels: [email, chat, phone]
      prediction_column: guess
      key_column: ticket_id
"""

EXPORT = """\
apiVersion: skitflow/v1
name: labels-from-labelstudio
source:
  labelstudio:
    project: {project}
    export_type: {export_type}
    fields: [ticket_id, text]
    label_fields: {{label: team}}
    columns: [ticket_id, text, team]
sinks:
  - file: {{path: "{out}", format: csv}}
"""

TICKETS = 240


@pytest.fixture(scope="module")
def sent(postgres_server: Any, labelstudio_server: Any,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """PostgreSQL `tickets` -> transforms -> Label Studio, run twice through the CLI."""
    import psycopg
    import sqlalchemy as sa

    url = postgres_server.create_database()
    u = sa.make_url(url)
    with psycopg.connect(host=u.host, port=u.port, dbname=u.database, user=u.username,
                         password=u.password, autocommit=True) as conn:
        conn.execute("CREATE TABLE tickets (ticket_id integer PRIMARY KEY, subject text, "
                     "channel text, minutes integer)")
        with conn.cursor().copy("COPY tickets FROM STDIN") as copy:
            for i in range(TICKETS):
                copy.write_row((i, f"  Cannot LOG IN #{i} ", ("email", "chat", "phone")[i % 3],
                                i % 60))
    tmp = tmp_path_factory.mktemp("e2e")
    env = {"DATABASE_URL": url, "LABEL_STUDIO_URL": labelstudio_server.url,
           "LABEL_STUDIO_API_KEY": labelstudio_server.token,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    title = _title("tickets")
    runs = [_run_cli(tmp, SEND.format(title=title), env, f"send{n}") for n in (1, 2)]
    with LabelStudioClient(labelstudio_server.url, labelstudio_server.token) as c:
        project = c.find_project(title)
    return {"runs": runs, "project": project, "env": env, "url": url, "tmp": tmp}


def test_e2e_sql_to_labelstudio_creates_each_task_once(sent: dict[str, Any],
                                                       client: LabelStudioClient) -> None:
    first, second = sent["runs"]
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    project_id = sent["project"]["id"]
    assert f"labelstudio://project/{project_id} (+{TICKETS} new, 0 existing)" in first.stdout
    assert f"(+0 new, {TICKETS} existing)" in second.stdout
    tasks = _tasks(client, project_id)
    assert len(tasks) == TICKETS  # the second run duplicated nothing
    sample = next(t for t in tasks if t["data"]["ticket_id"] == 7)
    assert sample["data"]["text"] == "cannot log in #7"
    assert sample["data"][KEY_FIELD] == "7"


def test_e2e_annotations_come_back_through_the_export(sent: dict[str, Any],
                                                      client: LabelStudioClient,
                                                      labelstudio_server: Any, pat: str,
                                                      tmp_path: Path) -> None:
    project_id = sent["project"]["id"]
    tasks = sorted(_tasks(client, project_id), key=lambda t: t["data"]["ticket_id"])
    expected = {}
    for task in tasks[:10]:
        team = ("email", "chat", "phone")[task["data"]["ticket_id"] % 3]
        client.create_annotation(task["id"], [{**CHOICE, "value": {"choices": [team]}}])
        expected[task["data"]["ticket_id"]] = team
    time.sleep(0.01)
    client.create_annotation(tasks[0]["id"], [{**CHOICE, "value": {"choices": ["phone"]}}])
    expected[tasks[0]["data"]["ticket_id"]] = "phone"  # the latest annotation wins
    client.create_annotation(tasks[10]["id"], [], was_cancelled=True)  # skipped: not a label

    for export_type, token in (("JSON", labelstudio_server.token), ("JSON_MIN", pat)):
        out = tmp_path / f"labels-{export_type}.csv"
        env = {**sent["env"], "LABEL_STUDIO_API_KEY": token}
        recipe = EXPORT.format(project=f'"{sent["project"]["title"]}"', export_type=export_type,
                               out=out)
        done = _run_cli(tmp_path, recipe, env, f"export-{export_type}")
        assert done.returncode == 0, done.stdout + done.stderr
        frame = pd.read_csv(out)
        assert list(frame.columns) == ["ticket_id", "text", "team"]
        assert dict(zip(frame["ticket_id"], frame["team"], strict=True)) == expected
        assert frame.set_index("ticket_id").loc[3, "text"] == "cannot log in #3"


def test_cli_wrong_token_fails_without_showing_it(sent: dict[str, Any], tmp_path: Path) -> None:
    wrong = "0badc0de" * 5
    env = {**sent["env"], "LABEL_STUDIO_API_KEY": wrong}
    recipe = EXPORT.format(project=sent["project"]["id"], export_type="JSON",
                           out=tmp_path / "x.csv")
    done = _run_cli(tmp_path, recipe, env, "wrong-token")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refused the legacy API token in `LABEL_STUDIO_API_KEY`" in done.stderr
    assert wrong not in _all_text(tmp_path, done)


def test_cli_missing_project_id_is_a_clear_error(sent: dict[str, Any], tmp_path: Path) -> None:
    recipe = EXPORT.format(project=987654, export_type="JSON", out=tmp_path / "x.csv")
    done = _run_cli(tmp_path, recipe, sent["env"], "missing-project")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "project 987654 not found at http://127.0.0.1:" in done.stderr
    assert sent["env"]["LABEL_STUDIO_API_KEY"] not in _all_text(tmp_path, done)
