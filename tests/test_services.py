"""The real services the other tests rely on really work (and really check credentials).

Run: ``.venv/bin/python -m pytest tests/test_services.py -q`` (after scripts/install-services.sh).
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

pytest.register_assert_rewrite(
    "tests.services"
)  # before the import below: no "already imported" warning

from tests.services import (  # noqa: E402
    HOST,
    LabelStudioServer,
    PostgresServer,
    S3Server,
    require_service,
    service_available,
    tcp_sockets,
)

# Loads the fixtures (s3_server, postgres_server, labelstudio_server) and the start-time report.
pytest_plugins = ["tests.services"]


def _assert_loopback_only(pids: list[int]) -> None:
    sockets = tcp_sockets(pids)
    assert sockets["listen"], "the service listens on nothing?"
    for ip, port, _, _ in sockets["listen"]:
        assert ip == HOST, f"listens on {ip}:{port}, not only on {HOST}"
    for lip, lport, rip, rport in sockets["connected"]:
        assert rip.startswith("127.") or rip == "::1", (
            f"connection {lip}:{lport} -> {rip}:{rport} leaves the machine"
        )


# --------------------------------------------------------------------------- helpers (no server needed)


def test_fast_runs_keep_the_pure_tests_of_server_modules() -> None:
    """`-m "not services"` drops the tests that use a server fixture, and only those."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
         "-m", "not services and not slow", "tests/test_s3.py", "tests/test_labelstudio.py"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = done.stdout
    assert "test_parse_uri_and_globs" in kept and "test_token_kind_by_shape" in kept
    assert "test_upload_single_and_multipart_verified_by_sha256" not in kept  # uses s3_server
    assert "test_sink_errors_before_sending" not in kept  # labelstudio_server through `ls_env`
    assert "test_server_killed_mid_upload" not in kept  # marked by hand: starts its own server


def test_service_available_names() -> None:
    for name in ("s3", "seaweedfs", "postgres", "postgresql", "labelstudio", "label-studio"):
        ok, reason = service_available(name)
        assert isinstance(ok, bool) and reason
    with pytest.raises(ValueError):
        service_available("mysql")


def test_missing_service_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.services as services

    monkeypatch.setattr(
        services, "service_available", lambda name: (False, "X not installed: run it")
    )
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="X not installed"):
        require_service("s3")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="X not installed"):
        require_service("s3")


# --------------------------------------------------------------------------- S3 (SeaweedFS)


@pytest.mark.services
def test_s3_put_get_list(s3_server: S3Server) -> None:
    s3 = s3_server.client()
    bucket = s3_server.create_bucket()
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"data/part-{i}.csv", Body=f"a,b\n{i},{i * 2}\n".encode())
    s3.put_object(Bucket=bucket, Key="other.txt", Body=b"x")

    assert s3.get_object(Bucket=bucket, Key="data/part-1.csv")["Body"].read() == b"a,b\n1,2\n"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="data/")
    assert [o["Key"] for o in listed["Contents"]] == [f"data/part-{i}.csv" for i in range(3)]
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] and len(page["Contents"]) == 2
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=page["NextContinuationToken"])
    assert len(rest["Contents"]) == 2
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.services
def test_s3_wrong_credentials_refused(s3_server: S3Server) -> None:
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    bucket = s3_server.create_bucket()
    wrong_secret = s3_server.client(secret_key=s3_server.secret_key + "x")
    with pytest.raises(ClientError) as err:
        wrong_secret.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    unknown_key = s3_server.client(access_key="NOSUCHKEY")
    with pytest.raises(ClientError) as err:
        unknown_key.list_objects_v2(Bucket=bucket)
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    import boto3

    anonymous = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name=s3_server.region,
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}),
    )
    with pytest.raises(ClientError) as err:
        anonymous.list_objects_v2(Bucket=bucket)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # nothing was written by the refused calls
    assert s3_server.client().list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.services
def test_s3_presigned_urls(s3_server: S3Server) -> None:
    import requests

    s3 = s3_server.client()
    bucket = s3_server.create_bucket()
    s3.put_object(Bucket=bucket, Key="report.json", Body=b'{"ok": true}')

    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "report.json"}, ExpiresIn=60
    )
    assert url.startswith(s3_server.endpoint_url)
    with requests.Session() as http:
        http.trust_env = False
        got = http.get(url, timeout=10)
        assert got.status_code == 200 and got.json() == {"ok": True}

        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        sig = query["X-Amz-Signature"][0]
        query["X-Amz-Signature"] = [("0" if sig[0] != "0" else "1") + sig[1:]]
        tampered = parts._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
        assert http.get(tampered, timeout=10).status_code == 403

        put_url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "up.txt"}, ExpiresIn=60
        )
        assert http.put(put_url, data=b"uploaded", timeout=10).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="up.txt")["Body"].read() == b"uploaded"


@pytest.mark.services
def test_s3_stop_and_restart_keeps_data_and_port(s3_server: S3Server) -> None:
    from botocore.exceptions import ConnectionError as BotoConnectionError

    s3 = s3_server.client(max_attempts=1, connect_timeout=1)
    bucket = s3_server.create_bucket()
    s3.put_object(Bucket=bucket, Key="before", Body=b"kept")
    endpoint = s3_server.endpoint_url

    with s3_server.stopped():
        assert not s3_server.is_running
        with pytest.raises(BotoConnectionError):
            s3.put_object(Bucket=bucket, Key="during", Body=b"lost")
    assert s3_server.is_running and s3_server.endpoint_url == endpoint
    assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == b"kept"

    s3_server.restart(kill=True)  # a crash (SIGKILL), then start again
    assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == b"kept"
    assert len(s3_server.start_history) >= 3


@pytest.mark.services
def test_s3_listens_on_loopback_only(s3_server: S3Server) -> None:
    _assert_loopback_only(s3_server.pids())


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.services
def test_postgres_create_insert_select(postgres_server: PostgresServer) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_server.create_database())
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("CREATE TABLE calls (id int PRIMARY KEY, utterance text, intent text)")
            )
            conn.execute(
                sa.text("INSERT INTO calls VALUES (:id, :u, :i)"),
                [{"id": 1, "u": "hi", "i": "greet"}, {"id": 2, "u": "bye", "i": "leave"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, intent FROM calls ORDER BY id")).all()
            who = conn.execute(sa.text("SELECT current_user, inet_server_addr()::text")).one()
        assert [tuple(r) for r in rows] == [(1, "greet"), (2, "leave")]
        assert who[0] == postgres_server.user and who[1].startswith(HOST)
    finally:
        engine.dispose()


@pytest.mark.services
def test_postgres_pandas_roundtrip(postgres_server: PostgresServer) -> None:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_server.url)
    try:
        df = pd.DataFrame({"id": [1, 2, 3], "text": ["a", "b%", "c"]})
        df.to_sql("frame", engine, index=False, if_exists="replace")
        back = pd.read_sql("SELECT * FROM frame ORDER BY id", engine)
        assert back.to_dict("list") == df.to_dict("list")
    finally:
        engine.dispose()


@pytest.mark.services
def test_postgres_wrong_password_refused(postgres_server: PostgresServer) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_server.url_for(password=postgres_server.password + "x"))
    try:
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            engine.connect()
    finally:
        engine.dispose()


@pytest.mark.services
def test_postgres_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    _assert_loopback_only(postgres_server.pids())


# --------------------------------------------------------------------------- Label Studio

LABEL_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="intent" toName="text" choice="single">
    <Choice value="greet"/>
    <Choice value="leave"/>
  </Choices>
</View>
"""


@pytest.mark.services
def test_labelstudio_project_tasks_annotation_export(labelstudio_server: LabelStudioServer) -> None:
    ls = labelstudio_server
    r = ls.api(
        "POST",
        "/api/projects",
        json={"title": f"svc-test-{time.time_ns()}", "label_config": LABEL_CONFIG},
    )
    assert r.status_code == 201, r.text
    project = r.json()["id"]

    tasks = [{"data": {"text": t}} for t in ("hello there", "goodbye", "hi again")]
    r = ls.api("POST", f"/api/projects/{project}/import", json=tasks)
    assert r.status_code == 201, r.text
    assert r.json()["task_count"] == 3

    r = ls.api("GET", "/api/tasks", params={"project": project})
    assert r.status_code == 200, r.text
    body = r.json()
    listed = body["tasks"] if isinstance(body, dict) else body
    assert sorted(t["data"]["text"] for t in listed) == ["goodbye", "hello there", "hi again"]

    first = next(t for t in listed if t["data"]["text"] == "hello there")
    result = [
        {
            "from_name": "intent",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": ["greet"]},
        }
    ]
    r = ls.api("POST", f"/api/tasks/{first['id']}/annotations", json={"result": result})
    assert r.status_code == 201, r.text

    r = ls.api("GET", f"/api/projects/{project}/export", params={"exportType": "JSON"})
    assert r.status_code == 200, r.text
    exported = json.loads(r.content)
    assert len(exported) == 1  # only annotated tasks, unless download_all_tasks=true
    assert exported[0]["data"]["text"] == "hello there"
    assert exported[0]["annotations"][0]["result"][0]["value"]["choices"] == ["greet"]

    r = ls.api(
        "GET",
        f"/api/projects/{project}/export",
        params={"exportType": "JSON", "download_all_tasks": "true"},
    )
    assert r.status_code == 200 and len(json.loads(r.content)) == 3


@pytest.mark.services
def test_labelstudio_wrong_token_refused(labelstudio_server: LabelStudioServer) -> None:
    with labelstudio_server.session(token="0" * 40) as s:
        assert s.get(labelstudio_server.url + "/api/projects", timeout=30).status_code == 401
    import requests

    with requests.Session() as anonymous:
        anonymous.trust_env = False
        assert (
            anonymous.get(labelstudio_server.url + "/api/projects", timeout=30).status_code == 401
        )


@pytest.mark.services
def test_labelstudio_listens_on_loopback_only(labelstudio_server: LabelStudioServer) -> None:
    _assert_loopback_only(labelstudio_server.pids())
