"""The S3 connector, the `s3` sink and the `s3` source against a real SeaweedFS server.

Unit-level tests call the connector and the steps in this process; end-to-end tests run recipes
through the real CLI (`python -m skitflow run`) in a subprocess, whose tasks find the server
through the AWS_* variables of their environment, exactly as on a cluster. Fault tests cover bad
credentials, a missing bucket, a refused overwrite and a server killed in the middle of a
multipart upload.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from skitflow.connectors import s3 as connector
from skitflow.connectors import s3_tables as tables
from skitflow.errors import RemoteError, StepFailed
from skitflow.steps.base import ArtifactFile, RunContext
from skitflow.steps.s3 import S3ObjectsSource, S3Sink
from skitflow.steps.sinks import FileSink
from skitflow.util.globs import glob_pattern
from tests.services import start_s3_server

# Tests that use a server fixture are marked `services` by tests/services.py; the rest are pure.

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent

TICKETS = pd.DataFrame(
    {
        "ticket_id": ["007", "008", "009", "010", "011"],
        "subject": ["Login fails", "Refund, please", 'He said "hi"', None, "Slow app"],
        "priority": ["high", "low", "low", "high", "medium"],
        "minutes": [12.5, 3.0, None, 7.25, 1.0],
        "count": [1, 2, 3, 4, 5],
        "created": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"],
    }
)


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def env(s3_server: Any) -> dict[str, str]:
    """The AWS_* variables of the test server, with few retries so that faults fail fast."""
    return {**s3_server.env(), "AWS_MAX_ATTEMPTS": "2"}


@pytest.fixture
def bucket(s3_server: Any) -> str:
    return s3_server.create_bucket()


def _context(tmp_path: Path, environ: dict[str, str]) -> RunContext:
    lines: list[str] = []
    ctx = RunContext("test", "run-1", "2024-01-01", str(tmp_path), environ, lines.append)
    ctx.lines = lines  # type: ignore[attr-defined]
    return ctx


def _body(s3_server: Any, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _keys(s3_server: Any, bucket: str, prefix: str = "") -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _write_parquet(frame: pd.DataFrame, path: Path) -> str:
    frame.to_parquet(path, index=False)
    return str(path)


# -- addresses ------------------------------------------------------------------------------------


def test_parse_uri_and_globs() -> None:
    uri = connector.parse_uri("s3://my-bucket/dir/a.csv")
    assert (uri.bucket, uri.key, str(uri)) == ("my-bucket", "dir/a.csv", "s3://my-bucket/dir/a.csv")
    assert connector.parse_uri("s3://my-bucket/dir/").is_prefix
    assert connector.parse_uri("s3://my-bucket/dir/*.csv").is_glob
    assert connector.parse_uri("s3://{{ params.bucket }}/x").bucket == "{{ params.bucket }}"
    for bad in ("http://b/k", "s3:///k", "s3://Bad_Bucket!/k"):
        with pytest.raises(ValueError):
            connector.parse_uri(bad)
    pattern = glob_pattern("dir/*.csv")
    assert pattern.match("dir/a.csv") and not pattern.match("dir/sub/a.csv")
    assert glob_pattern("dir/**.csv").match("dir/sub/a.csv")
    assert glob_pattern("dir/part-[0-9].csv").match("dir/part-3.csv")


def test_endpoint_comes_from_the_environment() -> None:
    assert connector.endpoint_from_env({"S3_ENDPOINT_URL": "http://a"}) == "http://a"
    both = {"AWS_ENDPOINT_URL": "http://general", "AWS_ENDPOINT_URL_S3": "http://s3"}
    assert connector.endpoint_from_env(both) == "http://s3"
    assert connector.endpoint_from_env({}) is None


# -- uploads ----------------------------------------------------------------------------------------


def test_upload_single_and_multipart_verified_by_sha256(s3_server: Any, env: dict, bucket: str,
                                                         tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"hello s3")
    result = connector.upload(str(small), f"s3://{bucket}/small.bin", environ=env)
    assert result.parts == 1
    assert result.checksum_sha256 == base64.b64encode(hashlib.sha256(b"hello s3").digest()).decode()

    big = tmp_path / "big.bin"
    data = os.urandom(12 * MiB + 123)
    big.write_bytes(data)
    result = connector.upload(str(big), f"s3://{bucket}/big.bin", environ=env,
                              multipart_threshold=5 * MiB, part_size=5 * MiB)
    assert result.parts == 3 and result.checksum_sha256.endswith("-3")
    head = s3_server.client().head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == result.checksum_sha256  # computed by the server
    assert _body(s3_server, bucket, "big.bin") == data


def test_overwrite_false_refuses_even_when_the_object_appears_meanwhile(
        s3_server: Any, env: dict, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"new")
    s3_server.client().put_object(Bucket=bucket, Key="a.txt", Body=b"old")
    with pytest.raises(StepFailed, match="already exists and `overwrite` is false"):
        connector.upload(str(path), f"s3://{bucket}/a.txt", environ=env, overwrite=False)
    # The HEAD check misses an object written after it: the conditional write still refuses.
    monkeypatch.setattr(connector.S3, "head", lambda self, uri: None)
    with pytest.raises(StepFailed, match="already exists"):
        connector.upload(str(path), f"s3://{bucket}/a.txt", environ=env, overwrite=False)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * MiB))
    with pytest.raises(StepFailed, match="already exists"):  # multipart: on CompleteMultipartUpload
        connector.upload(str(big), f"s3://{bucket}/a.txt", environ=env, overwrite=False,
                         multipart_threshold=5 * MiB, part_size=5 * MiB)
    assert _body(s3_server, bucket, "a.txt") == b"old"
    assert not s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_errors_are_clear_and_never_show_secrets(s3_server: Any, env: dict, bucket: str,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"x")
    target = f"s3://{bucket}/a.txt"
    wrong_secret = "not-the-secret-" + "x" * 20
    with pytest.raises(RemoteError) as caught:
        connector.upload(str(path), target, environ={**env, "AWS_SECRET_ACCESS_KEY": wrong_secret})
    text = str(caught.value) + str(caught.value.problems[0].hint)
    assert "SignatureDoesNotMatch" in text and "AWS_SECRET_ACCESS_KEY" in text
    assert wrong_secret not in text and s3_server.secret_key not in text

    with pytest.raises(RemoteError, match="access key id.*check AWS_ACCESS_KEY_ID"):
        tables.read_table(target, environ={**env, "AWS_ACCESS_KEY_ID": "nobody-at-all"})

    with pytest.raises(RemoteError, match="bucket `no-such-bucket-1` does not exist"):
        connector.upload(str(path), "s3://no-such-bucket-1/a.txt", environ=env)
    with pytest.raises(RemoteError, match="bucket `no-such-bucket-2` does not exist"):
        tables.read_table("s3://no-such-bucket-2/a.csv", environ=env)

    dead = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}
    with pytest.raises(RemoteError, match=r"cannot reach the S3 endpoint http://127\.0\.0\.1:9") as caught:
        connector.upload(str(path), target, environ=dead)
    assert "AWS_ENDPOINT_URL" in str(caught.value.problems[0].hint)

    with pytest.raises(StepFailed, match="no object") as caught:
        tables.read_table(f"s3://{bucket}/nothing-here.csv", environ=env)


# -- reading -------------------------------------------------------------------------------------


def test_read_table_object_prefix_glob_and_limit(s3_server: Any, env: dict, bucket: str,
                                                 tmp_path: Path) -> None:
    client = s3_server.client()
    for part in range(3):
        chunk = TICKETS.iloc[part * 2: part * 2 + 2]
        client.put_object(Bucket=bucket, Key=f"in/part-{part}.csv",
                          Body=chunk.to_csv(index=False).encode())
    client.put_object(Bucket=bucket, Key="in/_SUCCESS", Body=b"")
    expected = pd.read_csv(io.StringIO(TICKETS.to_csv(index=False)))  # ticket_id: 7, 8, ...
    client.put_object(Bucket=bucket, Key="in/extra.parquet",
                      Body=expected.head(1).to_parquet(index=False))

    glob = tables.read_table(f"s3://{bucket}/in/*.csv", environ=env).to_pandas()
    pd.testing.assert_frame_equal(glob, expected, check_dtype=False)
    assert glob["created"].tolist() == TICKETS["created"].tolist()  # dates stay text, as in pandas

    prefix = tables.read_table(f"s3://{bucket}/in/", environ=env)  # csv and parquet mixed
    assert prefix.num_rows == len(TICKETS) + 1

    sample = tables.read_table(f"s3://{bucket}/in/*.csv", environ=env, limit=3,
                                  columns=["priority", "ticket_id"]).to_pandas()
    assert sample.columns.tolist() == ["priority", "ticket_id"] and len(sample) == 3

    with pytest.raises(StepFailed, match="has no column `prio`") as caught:
        tables.read_table(f"s3://{bucket}/in/part-0.csv", environ=env, columns=["prio"])
    assert "priority" in str(caught.value.problems[0].hint)
    with pytest.raises(StepFailed, match=r"no object matches s3://.*/in/\*\.json") as caught:
        tables.read_table(f"s3://{bucket}/in/*.json", environ=env)
    assert "in/part-0.csv" in str(caught.value.problems[0].hint)
    client.put_object(Bucket=bucket, Key="in/text-ids.parquet",
                      Body=TICKETS.head(1).to_parquet(index=False))
    with pytest.raises(StepFailed, match="ticket_id has incompatible types"):
        tables.read_table(f"s3://{bucket}/in/*.parquet", environ=env)
    client.put_object(Bucket=bucket, Key="in/other.csv", Body=b"a,b\n1,2\n")
    with pytest.raises(StepFailed, match="unlike"):
        tables.read_table(f"s3://{bucket}/in/*.csv", environ=env)
    with pytest.raises(StepFailed, match="no object is under"):
        tables.read_table(f"s3://{bucket}/empty/", environ=env)


def test_open_for_read_and_fetch_all(s3_server: Any, env: dict, bucket: str,
                                     tmp_path: Path) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="d/a.csv.gz", Body=b"")
    client.put_object(Bucket=bucket, Key="d/b.csv", Body=b"x\n1\n")
    local = connector.open_for_read(f"s3://{bucket}/d/b.csv", str(tmp_path), environ=env)
    assert Path(local).read_bytes() == b"x\n1\n" and local.endswith("b.csv")
    with pytest.raises(StepFailed, match="matches 2 objects"):
        connector.open_for_read(f"s3://{bucket}/d/", str(tmp_path), environ=env)
    paths = connector.fetch_all(f"s3://{bucket}/d/*", str(tmp_path / "all"), environ=env)
    assert [p.rsplit("-", 1)[-1] for p in paths] == ["a.csv.gz", "b.csv"]


def test_open_if_present_tells_nothing_published_from_a_mistake(s3_server: Any, env: dict, bucket: str,
                                                                 tmp_path: Path) -> None:
    """The champion gate's read: a missing key is "nothing published yet", a missing bucket or
    refused credentials stay errors (so a typo can never publish a worse model)."""
    assert connector.open_if_present(f"s3://{bucket}/m/model.zip", str(tmp_path), environ=env) is None
    s3_server.client().put_object(Bucket=bucket, Key="m/model.zip", Body=b"bundle bytes")
    local = connector.open_if_present(f"s3://{bucket}/m/model.zip", str(tmp_path / "in"), environ=env)
    assert local is not None and Path(local).read_bytes() == b"bundle bytes"
    with pytest.raises((StepFailed, RemoteError), match="(?i)bucket"):
        connector.open_if_present("s3://no-such-bucket-here/m/model.zip", str(tmp_path), environ=env)
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    with pytest.raises((StepFailed, RemoteError)):
        connector.open_if_present(f"s3://{bucket}/m/model.zip", str(tmp_path), environ=wrong)


def _to_csv(parquet: str, destination: Path) -> str:
    """A dataset converted the way both the `file` and the `s3` sink convert it."""
    artifact = ArtifactFile(parquet, "dataset", "parquet")
    return FileSink().run(artifact, FileSink.Settings(path=str(destination), format="csv"),
                          _context(destination.parent, {}))


def test_parquet_to_csv_reads_back_like_pandas(tmp_path: Path) -> None:
    frame = TICKETS.assign(
        flag=[True, False, True, True, False],
        whole=[1.0, 2.0, 3.0, 4.0, 5.0],
        when=pd.to_datetime(["2024-01-01 00:00", "2024-01-02 10:00", None, "2024-01-04 00:00",
                             "2024-01-05 00:00"]),
        kind=pd.Categorical(["a", "b", "a", "b", "a"]),
    )
    source = _write_parquet(frame, tmp_path / "f.parquet")
    _to_csv(source, tmp_path / "f.csv")
    assert (tmp_path / "f.csv").read_text() == frame.to_csv(index=False)
    extreme = pd.DataFrame({"x": [1e15, 1.3e14, 1e-5, -0.0, 1e300]})  # notation may differ ...
    _to_csv(_write_parquet(extreme, tmp_path / "x.parquet"), tmp_path / "x.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "x.csv"), extreme)  # ... values do not


# -- the steps in this process ------------------------------------------------------------------


def test_sink_writes_datasets_and_models(s3_server: Any, env: dict, bucket: str,
                                         tmp_path: Path) -> None:
    ctx = _context(tmp_path, env)
    data = ArtifactFile(_write_parquet(TICKETS, tmp_path / "out"), "dataset", "parquet")
    sink = S3Sink()
    where = sink.run(data, S3Sink.Settings(uri=f"s3://{bucket}/exports/", format="csv"), ctx)
    assert where == f"s3://{bucket}/exports/dataset.csv"
    assert _body(s3_server, bucket, "exports/dataset.csv") == TICKETS.to_csv(index=False).encode()
    head = s3_server.client().head_object(Bucket=bucket, Key="exports/dataset.csv")
    assert head["ContentType"] == "text/csv"
    assert any("SHA-256 verified" in line for line in ctx.lines)  # type: ignore[attr-defined]

    model_file = tmp_path / "model"
    model_file.write_text('{"learner": {}}')
    model = ArtifactFile(str(model_file), "model", "xgboost-json")
    where = sink.run(model, S3Sink.Settings(uri=f"s3://{bucket}/models/m.json"), ctx)
    assert _body(s3_server, bucket, "models/m.json") == b'{"learner": {}}'
    with pytest.raises(StepFailed, match="only datasets can be converted"):
        sink.run(model, S3Sink.Settings(uri=f"s3://{bucket}/models/m.csv", format="csv"), ctx)

    folder = tmp_path / "folder-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"w")
    (folder / "sub" / "config.json").write_text("{}")
    where = sink.run(ArtifactFile(str(folder), "model", "dir"),
                     S3Sink.Settings(uri=f"s3://{bucket}/folder"), ctx)
    assert where == f"s3://{bucket}/folder/"
    assert _keys(s3_server, bucket, "folder/") == ["folder/sub/config.json", "folder/weights.bin"]

    local = sink.run(data, S3Sink.Settings(uri=str(tmp_path / "local" / "d.csv"), format="csv"), ctx)
    assert pd.read_csv(local)["ticket_id"].tolist() == [7, 8, 9, 10, 11]


def test_source_step_applies_the_column_contract_and_dtypes(s3_server: Any, env: dict,
                                                            bucket: str, tmp_path: Path) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="t.csv",
                                  Body=TICKETS.to_csv(index=False).encode())
    settings = S3ObjectsSource.Settings(uri=f"s3://{bucket}/t.csv",
                                        columns=["ticket_id", "minutes"], dtype={"ticket_id": "str"})
    frame = S3ObjectsSource().run(settings, _context(tmp_path, env))
    assert frame.columns.tolist() == ["ticket_id", "minutes"]
    assert frame["ticket_id"].tolist() == ["007", "008", "009", "010", "011"]
    with pytest.raises(ValueError, match="one character"):
        S3ObjectsSource.Settings(uri=f"s3://{bucket}/t.csv", sep=";;")
    with pytest.raises(ValueError, match="s3://"):
        S3ObjectsSource.Settings(uri="/local/file.csv")


# -- a server killed in the middle of an upload ---------------------------------------------------


@pytest.mark.services  # starts its own server
def test_server_killed_mid_upload_leaves_nothing_and_a_rerun_succeeds(tmp_path: Path) -> None:
    with start_s3_server() as server:
        bucket = server.create_bucket()
        environ = {**server.env(), "AWS_MAX_ATTEMPTS": "2"}
        data = tmp_path / "big.bin"
        data.write_bytes(os.urandom(64 * MiB))
        halfway, killed = threading.Event(), threading.Event()
        sent = [0]

        def progress(amount: int) -> None:  # pauses the upload until the server is gone
            sent[0] += amount
            if sent[0] >= 20 * MiB and not killed.is_set():
                halfway.set()
                killed.wait(30)

        failure: list[BaseException] = []

        def upload() -> None:
            try:
                connector.upload(str(data), f"s3://{bucket}/big.bin", environ=environ,
                                 multipart_threshold=5 * MiB, part_size=5 * MiB,
                                 progress=progress)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                failure.append(exc)

        worker = threading.Thread(target=upload)
        worker.start()
        assert halfway.wait(30), "the upload never got under way"
        server.stop(kill=True)
        killed.set()
        worker.join(60)
        assert not worker.is_alive()
        assert failure and isinstance(failure[0], RemoteError), failure
        message = str(failure[0])
        assert server.endpoint_url in message and "big.bin" in message
        assert server.secret_key not in message

        server.start()
        client = server.client()
        assert "big.bin" not in _keys(server, bucket)
        with pytest.raises(client.exceptions.ClientError):
            client.head_object(Bucket=bucket, Key="big.bin")
        result = connector.upload(str(data), f"s3://{bucket}/big.bin", environ=environ,
                                  multipart_threshold=5 * MiB, part_size=5 * MiB)
        assert result.parts == 13
        head = client.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
        assert head["ContentLength"] == 64 * MiB and head["ChecksumSHA256"] == result.checksum_sha256
        server.stop(kill=True)  # a graceful stop of this throw-away server can take 20 s


# -- end to end through `skitflow run` ----------------------------------------------------------


def _run(recipe: str, tmp_path: Path, environ: dict[str, str],
         name: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(recipe))
    child = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    child.update(environ)
    child["PYTHONPATH"] = str(REPO)
    child["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "skitflow", "run", str(path), "--out", str(tmp_path / f"run-{name}"),
         "--no-cache"],
        cwd=tmp_path, env=child, capture_output=True, text=True, timeout=120,
    )


def test_recipes_write_to_and_read_from_s3(s3_server: Any, env: dict, bucket: str,
                                           tmp_path: Path) -> None:
    TICKETS.to_csv(tmp_path / "tickets.csv", index=False)
    columns = ", ".join(TICKETS.columns)
    write = f"""
        apiVersion: skitflow/v1
        name: s3-write
        source:
          csv: {{path: tickets.csv, columns: [{columns}], dtype: {{ticket_id: str}}}}
        sinks:
          - s3: {{uri: "s3://{bucket}/exports/tickets.csv", format: csv}}
          - s3: {{uri: "s3://{bucket}/runs/{{{{ run.id }}}}/", format: parquet}}
          - s3: {{uri: "out/local.csv", format: csv}}
        """
    done = _run(write, tmp_path, env, "write")
    assert done.returncode == 0, done.stdout + done.stderr
    csv_bytes = _body(s3_server, bucket, "exports/tickets.csv")
    assert csv_bytes == TICKETS.to_csv(index=False).encode()  # same bytes as pandas writes
    (parquet_key,) = _keys(s3_server, bucket, "runs/")
    run_id = json.loads((tmp_path / "run-write" / "summary.json").read_text())["run"]["id"]
    assert parquet_key == f"runs/{run_id}/dataset.parquet"  # `run.id` is kfp's run id
    written = pd.read_parquet(io.BytesIO(_body(s3_server, bucket, parquet_key)))
    pd.testing.assert_frame_equal(written, TICKETS, check_dtype=False)
    assert (tmp_path / "out" / "local.csv").read_bytes() == csv_bytes

    read = f"""
        apiVersion: skitflow/v1
        name: s3-read
        source:
          s3:
            uri: "s3://{bucket}/exports/*.csv"
            columns: [ticket_id, subject, minutes]
            dtype: {{ticket_id: str}}
        steps:
          - dropna: {{columns: [subject]}}
        sinks:
          - file: {{path: back.csv, format: csv}}
        """
    done = _run(read, tmp_path, env, "read")
    assert done.returncode == 0, done.stdout + done.stderr
    back = pd.read_csv(tmp_path / "back.csv", dtype={"ticket_id": str})
    expected = TICKETS.dropna(subset=["subject"])[["ticket_id", "subject", "minutes"]]
    pd.testing.assert_frame_equal(back, expected.reset_index(drop=True), check_dtype=False)


def _sink_recipe(uri: str, extra: str = "") -> str:
    return f"""
        apiVersion: skitflow/v1
        name: s3-fault
        source:
          csv: {{path: tickets.csv}}
        sinks:
          - s3: {{uri: "{uri}"{extra}}}
        """


def test_run_with_a_wrong_secret_fails_clearly_without_showing_it(
        s3_server: Any, env: dict, bucket: str, tmp_path: Path) -> None:
    TICKETS.to_csv(tmp_path / "tickets.csv", index=False)
    wrong = "wrong-secret-" + "q" * 24
    done = _run(_sink_recipe(f"s3://{bucket}/x.parquet"), tmp_path,
                {**env, "AWS_SECRET_ACCESS_KEY": wrong}, "secret")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "the secret key does not match" in output and "AWS_SECRET_ACCESS_KEY" in output
    assert wrong not in output and s3_server.secret_key not in output
    for log in (tmp_path / "run-secret").rglob("*.log"):
        assert wrong not in log.read_text(errors="replace")
    assert _keys(s3_server, bucket) == []


def test_run_into_a_missing_bucket_names_it(s3_server: Any, env: dict, tmp_path: Path) -> None:
    TICKETS.to_csv(tmp_path / "tickets.csv", index=False)
    done = _run(_sink_recipe("s3://skitflow-missing-bucket/x.parquet"), tmp_path, env,
                "bucket")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "bucket `skitflow-missing-bucket` does not exist" in output


def test_run_refuses_to_overwrite_when_told_not_to(s3_server: Any, env: dict, bucket: str,
                                                   tmp_path: Path) -> None:
    TICKETS.to_csv(tmp_path / "tickets.csv", index=False)
    s3_server.client().put_object(Bucket=bucket, Key="keep.csv", Body=b"precious")
    done = _run(_sink_recipe(f"s3://{bucket}/keep.csv", ", format: csv, overwrite: false"),
                tmp_path, env, "overwrite")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "already exists and `overwrite` is false" in output
    assert _body(s3_server, bucket, "keep.csv") == b"precious"


def test_a_limited_read_stops_early_and_compressed_objects_are_read(
        s3_server: Any, env: dict, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    rows = pd.DataFrame({"n": range(400_000), "word": ["lorem ipsum"] * 400_000})
    body = rows.to_csv(index=False).encode()
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="big.csv", Body=body)
    client.put_object(Bucket=bucket, Key="big.csv.gz", Body=gzip.compress(body))
    fetched = [0]
    open_stream = connector.S3.open_stream

    def counting(self: Any, uri: Any) -> Any:
        stream = open_stream(self, uri)
        read = stream.read

        def counted(*args: Any) -> bytes:
            chunk = read(*args)
            fetched[0] += len(chunk)
            return chunk

        stream.read = counted
        return stream

    monkeypatch.setattr(connector.S3, "open_stream", counting)
    sample = tables.read_table(f"s3://{bucket}/big.csv", environ=env, limit=10).to_pandas()
    assert sample["n"].tolist() == list(range(10))
    assert 0 < fetched[0] < len(body) / 2, (fetched[0], len(body))
    whole = tables.read_table(f"s3://{bucket}/big.csv.gz", environ=env)
    assert whole.num_rows == len(rows) and whole.column("n").to_pylist()[-1] == 399_999
    head = tables.read_table(f"s3://{bucket}/big.csv.gz", environ=env, limit=5)
    assert head.column("word").to_pylist() == ["lorem ipsum"] * 5
    multiline = pd.DataFrame({"n": range(50), "text": ["two\nlines\nor three"] * 50})
    client.put_object(Bucket=bucket, Key="lines.csv", Body=multiline.to_csv(index=False).encode())
    head = tables.read_table(f"s3://{bucket}/lines.csv", environ=env, limit=7)
    assert head.column("n").to_pylist() == list(range(7))
    assert head.column("text").to_pylist()[-1] == "two\nlines\nor three"


def test_the_head_of_a_stream_is_read_only_as_far_as_needed() -> None:
    stream = io.BytesIO(b"a\n1\n2\n3\n" * 1000)
    head = tables.Head(stream, first_read=4)
    assert head.lines(2) == b"a\n1\n2\n3\na\n1\n" and stream.tell() == 12
    assert head.lines(3) == b"a\n1\n2\n3\na\n1\n" and stream.tell() == 12  # already there
    assert head.lines(10**6) == b"a\n1\n2\n3\n" * 1000 and head.ended


def test_the_csv_source_reads_s3_prefixes_and_globs(s3_server: Any, env: dict, bucket: str,
                                                     tmp_path: Path) -> None:
    client = s3_server.client()
    for day, rows in (("01", "1,a\n2,b\n"), ("02", "3,c\n"), ("03", "4,d\n5,e\n")):
        client.put_object(Bucket=bucket, Key=f"calls/2024-01-{day}.csv", Body=f"id,text\n{rows}")
    client.put_object(Bucket=bucket, Key="calls/_SUCCESS", Body=b"")
    result = _run(f"""\
        apiVersion: skitflow/v1
        name: csv-from-s3
        source:
          csv: {{path: "s3://{bucket}/calls/2024-01-0[12].csv", columns: [id, text]}}
        sinks:
          - file: {{path: out/glob.csv, format: csv}}
        """, tmp_path, env, "glob")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "out" / "glob.csv").read_text() == "id,text\n1,a\n2,b\n3,c\n"
    result = _run(f"""\
        apiVersion: skitflow/v1
        name: csv-from-s3-prefix
        source:
          csv: {{path: "s3://{bucket}/calls/", limit: 4}}
        sinks:
          - file: {{path: out/prefix.csv, format: csv}}
        """, tmp_path, env, "prefix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "out" / "prefix.csv").read_text() == "id,text\n1,a\n2,b\n3,c\n4,d\n"


def test_the_csv_source_reads_local_globs(tmp_path: Path) -> None:
    from skitflow.steps.sources import CsvSource

    for name, rows in (("a.csv", "1\n"), ("b.csv", "2\n3\n"), ("skip.txt", "9\n")):
        (tmp_path / name).write_text(f"x\n{rows}")
    settings = CsvSource.Settings(path=str(tmp_path / "*.csv"))
    frame = CsvSource().run(settings, _context(tmp_path, {}))
    assert frame["x"].tolist() == [1, 2, 3]
