"""The csv source (local files and a local HTTP server) and the file sink."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from skitflow.errors import RemoteError, StepFailed
from skitflow.steps.base import ArtifactFile, RunContext
from skitflow.steps.sinks import SINKS, FileSink
from skitflow.steps.sources import SOURCES, CsvSource

CSV = "call_id,utterance,intent,duration,zip\n1,Hello,greet,3.5,007\n2,Refund please,refund,,010\n3,,spam,1,100\n"


@pytest.fixture
def logged() -> list[str]:
    return []


@pytest.fixture
def ctx(tmp_path: Path, logged: list[str]) -> RunContext:
    return RunContext("calls", "run-1", "2024-05-01", str(tmp_path / "work"), log=logged.append)


@pytest.fixture
def calls_csv(tmp_path: Path) -> Path:
    path = tmp_path / "calls.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def read(ctx: RunContext, **values: Any) -> pd.DataFrame:
    return CsvSource().run(CsvSource.Settings(**values), ctx)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 (an ephemeral port) serving a fresh folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- csv source ---------------------------------------------------------------------------------


def test_registered() -> None:
    assert [s.name for s in SOURCES] == ["csv"] and [s.name for s in SINKS] == ["file"]
    for cls in (*SOURCES, *SINKS):
        assert cls.summary() and cls.Settings.__doc__
        assert all(f.description for f in cls.Settings.model_fields.values())
        cls.Settings(**cls.example)


def test_csv_from_a_file(calls_csv: Path, ctx: RunContext, logged: list[str]) -> None:
    frame = read(ctx, path=str(calls_csv))
    assert list(frame.columns) == ["call_id", "utterance", "intent", "duration", "zip"]
    assert frame["call_id"].tolist() == [1, 2, 3]
    assert frame["duration"].isna().tolist() == [False, True, False]
    assert frame["zip"].tolist() == [7, 10, 100]  # pandas' guess, unless dtype says otherwise
    assert logged == [f"csv: read 3 rows, 5 columns from {calls_csv}"]


def test_csv_declared_columns_are_the_contract(calls_csv: Path, ctx: RunContext) -> None:
    columns = ["intent", "call_id", "utterance"]
    settings = CsvSource.Settings(path=str(calls_csv), columns=columns)
    assert CsvSource().columns_after(settings, None) == columns
    assert list(CsvSource().run(settings, ctx).columns) == columns
    assert CsvSource().columns_after(CsvSource.Settings(path="x.csv"), None) is None


def test_csv_missing_declared_column(calls_csv: Path, ctx: RunContext) -> None:
    with pytest.raises(StepFailed) as caught:
        read(ctx, path=str(calls_csv), columns=["call_id", "intnt"])
    assert "has no column `intnt`" in str(caught.value)
    assert caught.value.problems[0].hint == "did you mean `intent`?"


def test_csv_dtype_hints(calls_csv: Path, ctx: RunContext) -> None:
    frame = read(
        ctx, path=str(calls_csv), dtype={"zip": "str", "duration": "float", "call_id": "int"}
    )
    assert frame["zip"].tolist() == ["007", "010", "100"]
    assert frame["call_id"].dtype == "int64" and frame["duration"].dtype == "float64"
    with pytest.raises(StepFailed, match="column `utterance` cannot become int"):
        read(ctx, path=str(calls_csv), dtype={"utterance": "int"})
    with pytest.raises(StepFailed, match="dtype given for `zap`"):
        read(ctx, path=str(calls_csv), dtype={"zap": "str"})


def test_csv_reads_strings_with_the_default_string_dtype(calls_csv: Path, ctx: RunContext) -> None:
    frame = read(ctx, path=str(calls_csv))
    assert pd.api.types.is_string_dtype(frame["intent"].dtype)
    assert frame["utterance"].isna().tolist() == [False, False, True]


def test_csv_options(tmp_path: Path, ctx: RunContext) -> None:
    path = tmp_path / "semi.csv.gz"
    with gzip.open(path, "wt", encoding="latin-1") as f:
        f.write("a;b\ncafé;1\nthé;2\nzoo;3\n")
    frame = read(ctx, path=str(path), sep=";", encoding="latin-1", limit=2)
    assert frame["a"].tolist() == ["café", "thé"]


def test_csv_errors(tmp_path: Path, ctx: RunContext) -> None:
    with pytest.raises(StepFailed, match="no such file"):
        read(ctx, path=str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_bytes("a\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(StepFailed, match="not valid utf-8") as caught:
        read(ctx, path=str(bad))
    assert "encoding" in (caught.value.problems[0].hint or "")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(StepFailed, match="cannot parse"):
        read(ctx, path=str(empty))


def test_csv_settings_validation() -> None:
    with pytest.raises(ValidationError, match="not `gs://`"):
        CsvSource.Settings(path="gs://bucket/calls.csv")
    assert CsvSource.Settings(path="s3://bucket/calls/*.csv").path.startswith("s3:")
    with pytest.raises(ValidationError, match="unknown encoding"):
        CsvSource.Settings(path="a.csv", encoding="utf-42")
    with pytest.raises(ValidationError, match="not in `columns`"):
        CsvSource.Settings(path="a.csv", columns=["a"], dtype={"b": "int"})
    with pytest.raises(ValidationError):
        CsvSource.Settings(path="a.csv", dtype={"a": "int32"})
    with pytest.raises(ValidationError):
        CsvSource.Settings(path="a.csv", limit=0)
    assert CsvSource.Settings(path="file:///tmp/a.csv").path.startswith("file:")


def test_csv_from_a_file_url(calls_csv: Path, ctx: RunContext) -> None:
    assert len(read(ctx, path=calls_csv.as_uri())) == 3


def test_csv_over_http(http_root: tuple[str, Path], ctx: RunContext) -> None:
    base, root = http_root
    (root / "calls.csv").write_text(CSV, encoding="utf-8")
    frame = read(ctx, path=f"{base}/calls.csv", columns=["call_id", "intent"], limit=2)
    assert frame.to_dict("list") == {"call_id": [1, 2], "intent": ["greet", "refund"]}


def test_csv_over_http_errors(http_root: tuple[str, Path], ctx: RunContext) -> None:
    base, _ = http_root
    with pytest.raises(RemoteError, match="HTTP 404"):
        read(ctx, path=f"{base}/missing.csv")


# -- file sink ------------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path: Path) -> ArtifactFile:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"]})
    path = tmp_path / "artifacts" / "dataset.parquet"
    path.parent.mkdir()
    frame.to_parquet(path, index=False)
    return ArtifactFile(str(path), "dataset", "parquet")


@pytest.fixture
def model(tmp_path: Path) -> ArtifactFile:
    path = tmp_path / "artifacts" / "model.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text('{"learner": {}}')
    return ArtifactFile(str(path), "model", "xgboost-json")


def write(artifact: ArtifactFile, ctx: RunContext, **values: Any) -> str:
    return FileSink().run(artifact, FileSink.Settings(**values), ctx)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sink_parquet_as_is(dataset: ArtifactFile, tmp_path: Path, ctx: RunContext) -> None:
    target = tmp_path / "out" / "deep" / "calls.parquet"
    written = write(dataset, ctx, path=str(target))
    assert written == str(target)
    assert target.read_bytes() == Path(dataset.path).read_bytes()
    assert leftovers(target.parent) == []


def test_sink_converts_datasets(dataset: ArtifactFile, tmp_path: Path, ctx: RunContext) -> None:
    csv_path = write(dataset, ctx, path=str(tmp_path / "out" / "calls.csv"), format="csv")
    assert Path(csv_path).read_text() == "a,b\n1,x\n2,\n3,z\n"
    back = write(
        ArtifactFile(csv_path, "dataset", "csv"),
        ctx,
        path=str(tmp_path / "back.parquet"),
        format="parquet",
    )
    assert pd.read_parquet(back)["a"].tolist() == [1, 2, 3]


def test_sink_writes_a_model_as_is(model: ArtifactFile, tmp_path: Path, ctx: RunContext) -> None:
    written = write(model, ctx, path=f"{tmp_path.as_uri()}/models/")
    assert written == str(tmp_path / "models" / "model.json")
    assert Path(written).read_text() == '{"learner": {}}'
    with pytest.raises(StepFailed, match="only datasets can be converted"):
        write(model, ctx, path=str(tmp_path / "m.csv"), format="csv")


def test_sink_into_an_existing_folder_keeps_the_name(
    dataset: ArtifactFile, tmp_path: Path, ctx: RunContext
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    assert write(dataset, ctx, path=str(folder)) == str(folder / "dataset.parquet")
    assert write(dataset, ctx, path=str(folder), format="csv") == str(folder / "dataset.csv")


def test_sink_overwrite(
    dataset: ArtifactFile, model: ArtifactFile, tmp_path: Path, ctx: RunContext
) -> None:
    target = tmp_path / "out.bin"
    target.write_text("old")
    write(model, ctx, path=str(target))
    assert target.read_text() == '{"learner": {}}'
    target.write_text("old")
    with pytest.raises(StepFailed, match="exists and `overwrite` is false"):
        write(model, ctx, path=str(target), overwrite=False)
    assert target.read_text() == "old"
    fresh = tmp_path / "fresh.bin"
    write(model, ctx, path=str(fresh), overwrite=False)
    assert fresh.read_text() == '{"learner": {}}'
    assert leftovers(tmp_path) == []


def test_sink_is_atomic(
    dataset: ArtifactFile, tmp_path: Path, ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way leaves the old file untouched and no temporary behind."""
    target = tmp_path / "calls.csv"
    target.write_text("old")

    def broken(self: pd.DataFrame, path: str, **kwargs: Any) -> None:
        Path(path).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write(dataset, ctx, path=str(target), format="csv")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_sink_file_permissions_follow_the_umask(
    model: ArtifactFile, tmp_path: Path, ctx: RunContext
) -> None:
    old = os.umask(0o022)
    try:
        written = write(model, ctx, path=str(tmp_path / "m.json"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o644


def test_sink_folder_artifacts(tmp_path: Path, ctx: RunContext) -> None:
    source = tmp_path / "report"
    source.mkdir()
    (source / "index.html").write_text("<p>new</p>")
    target = tmp_path / "site"
    target.mkdir()
    (target / "stale.html").write_text("old")
    artifact = ArtifactFile(str(source), "report", "dir")
    assert write(artifact, ctx, path=str(tmp_path / "site.d")) == str(tmp_path / "site.d")
    assert (tmp_path / "site.d" / "index.html").read_text() == "<p>new</p>"
    write(artifact, ctx, path=str(target) + "/")  # a trailing slash: into the folder
    assert sorted(p.name for p in target.iterdir()) == ["report", "stale.html"]
    (source / "index.html").write_text("<p>newer</p>")
    write(artifact, ctx, path=str(tmp_path / "site.d"))  # replaced as a whole
    assert (tmp_path / "site.d" / "index.html").read_text() == "<p>newer</p>"
    assert leftovers(tmp_path) == []
    with pytest.raises(StepFailed, match="overwrite"):
        write(artifact, ctx, path=str(tmp_path / "site.d"), overwrite=False)


def test_sink_errors(tmp_path: Path, ctx: RunContext) -> None:
    with pytest.raises(StepFailed, match="missing"):
        write(
            ArtifactFile(str(tmp_path / "gone.parquet"), "dataset", "parquet"),
            ctx,
            path=str(tmp_path / "x"),
        )
    with pytest.raises(ValidationError, match="not `s3://`"):
        FileSink.Settings(path="s3://bucket/x.parquet")
    with pytest.raises(ValidationError, match="must be local"):
        FileSink.Settings(path="file://server/x.parquet")
    with pytest.raises(ValidationError):
        FileSink.Settings(path="x", format="json")
