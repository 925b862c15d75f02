"""The `sql` sink against a real PostgreSQL 15 (COPY path) and a SQLite file (Core path).

Unit-level tests call the step in this process with the URL in a RunContext's environment; the
end-to-end test runs a recipe (source, split, xgboost, evaluator with a gate, two sql sinks)
through the real CLI in a subprocess whose tasks read DATABASE_URL from their environment.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from skitflow.errors import RemoteError, StepFailed
from skitflow.steps.base import ArtifactFile, RunContext
from skitflow.steps.sql_sink import SqlSink, arrow_to_sql_type, metrics_rows

# -- helpers --------------------------------------------------------------------------------------


def _context(url: str | None, run_id: str = "run-1") -> RunContext:
    lines: list[str] = []
    ctx = RunContext("scores", run_id, "2024-05-06", "/tmp",
                     {"DATABASE_URL": url} if url else {}, lines.append)
    ctx.lines = lines  # type: ignore[attr-defined]
    return ctx


def _dataset(tmp_path: Path, frame: pd.DataFrame, name: str = "data") -> ArtifactFile:
    path = tmp_path / name
    frame.to_parquet(path, index=False, row_group_size=3)
    return ArtifactFile(str(path), "dataset", "parquet", {})


def _write(url: str, artifact: ArtifactFile, run_id: str = "run-1", **settings: Any) -> str:
    return SqlSink().run(artifact, SqlSink.Settings(**settings), _context(url, run_id))


def _frame(rows: int = 10, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({
        "id": pd.array(range(offset, offset + rows), dtype="int64"),
        "score": [i / 10 for i in range(rows)],
        "label": [None if i == 3 else ("" if i == 4 else f"l,\"{i}\"\n") for i in range(rows)],
        "flag": [i % 2 == 0 for i in range(rows)],
        "at": pd.to_datetime([f"2024-01-0{1 + i % 9} 10:00:00.123456" for i in range(rows)],
                             utc=True),
        "day": [dt.date(2024, 2, 1 + i % 28) for i in range(rows)],
        "kind": pd.Categorical(["a", "b"] * (rows // 2)),
    })


def _read(url: str, query: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(query), conn)
    finally:
        engine.dispose()


def _execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_url(postgres_server: Any) -> str:
    return postgres_server.create_database()


@pytest.fixture
def table(request: pytest.FixtureRequest) -> str:
    return "t_" + request.node.name.split("[")[0].removeprefix("test_")[:40]


# -- pure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected"), [
    (pa.int64(), sa.BigInteger), (pa.int32(), sa.Integer), (pa.int16(), sa.SmallInteger),
    (pa.float64(), sa.Double), (pa.bool_(), sa.Boolean), (pa.string(), sa.Text),
    (pa.large_string(), sa.Text), (pa.date32(), sa.Date), (pa.binary(), sa.LargeBinary),
    (pa.decimal128(10, 2), sa.Numeric),
])
def test_arrow_types_map_to_sql_types(kind: pa.DataType, expected: type) -> None:
    assert type(arrow_to_sql_type(kind)) is expected


def test_timestamps_keep_their_time_zone_awareness() -> None:
    assert arrow_to_sql_type(pa.timestamp("us", "UTC")).timezone is True
    assert arrow_to_sql_type(pa.timestamp("ns")).timezone is False


@pytest.mark.parametrize(("settings", "message"), [
    ({"table": "t", "mode": "upsert"}, "needs `key"),
    ({"table": "t", "key": ["id"]}, "used by `mode: upsert` only"),
    ({"table": "drop table x; --"}, "is not a table name"),
    ({"table": "t", "url_env": "postgresql://u:secret@h/db"}, "NAME of the environment variable"),
])
def test_invalid_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as error:
        SqlSink.Settings(**settings)
    assert "secret" not in " ".join(e["msg"] for e in error.value.errors())  # what skitflow shows


def test_metrics_are_flattened_with_the_gate_verdict(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    path.write_text(json.dumps({"metrics": {"f1_macro": 0.8, "accuracy": 0.9},
                                "gate": {"metric": "f1_macro", "passed": False}}))
    table = metrics_rows(ArtifactFile(str(path), "metrics", "json"), _context(None))
    assert table.column_names == ["recipe", "run_id", "run_date", "metric", "value", "gate"]
    assert table.to_pylist()[0] == {"recipe": "scores", "run_id": "run-1",
                                    "run_date": dt.date(2024, 5, 6), "metric": "accuracy",
                                    "value": 0.9, "gate": "failed"}


def test_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="a model cannot be written to a table"):
        _write("sqlite://", ArtifactFile(str(tmp_path), "model", "xgboost-json"), table="t")


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_append_creates_the_table_with_types_and_copies_the_rows(pg_url: str, table: str,
                                                                tmp_path: Path) -> None:
    frame = _frame()
    where = _write(pg_url, _dataset(tmp_path, frame), table=table, chunksize=4)
    assert "***" in where and table in where
    types = _read(pg_url, "SELECT column_name, data_type FROM information_schema.columns "
                  f"WHERE table_name = '{table}' ORDER BY ordinal_position")
    assert dict(zip(types.column_name, types.data_type, strict=True)) == {
        "id": "bigint", "score": "double precision", "label": "text", "flag": "boolean",
        "at": "timestamp with time zone", "day": "date", "kind": "text", "run_id": "text"}
    back = _read(pg_url, f"SELECT * FROM {table} ORDER BY id")
    assert back["label"].tolist() == frame["label"].tolist()  # NULL, '' and quotes survive
    assert back["score"].tolist() == frame["score"].tolist()
    assert (back["at"] == frame["at"]).all()
    assert back["day"].tolist() == frame["day"].tolist()
    assert set(back["run_id"]) == {"run-1"}


def test_a_rerun_of_the_same_run_replaces_its_rows_and_another_run_adds(
        pg_url: str, table: str, tmp_path: Path) -> None:
    artifact = _dataset(tmp_path, _frame(6))
    _write(pg_url, artifact, table=table)
    _write(pg_url, artifact, table=table)  # the same run again (a retried task)
    _write(pg_url, artifact, "run-2", table=table)
    counts = _read(pg_url, f"SELECT run_id, count(*) AS n FROM {table} GROUP BY run_id "
                   "ORDER BY run_id")
    assert counts.to_dict("list") == {"run_id": ["run-1", "run-2"], "n": [6, 6]}


def test_a_failed_write_leaves_the_table_as_it_was(pg_url: str, table: str,
                                                   tmp_path: Path) -> None:
    _execute(pg_url, f"CREATE TABLE {table} (id bigint, label varchar(8), run_id text)")
    good = pd.DataFrame({"id": [1, 2, 3], "label": ["a", "b", "c"]})
    _write(pg_url, _dataset(tmp_path, good, "good"), table=table)
    # The same run again, with a value too long for varchar(8) in its second chunk.
    bad = pd.DataFrame({"id": range(10), "label": ["x"] * 7 + ["much too long"] + ["y"] * 2})
    with pytest.raises(RemoteError, match="does not fit") as error:
        _write(pg_url, _dataset(tmp_path, bad, "bad"), table=table, chunksize=3)
    assert "rolled back" in str(error.value.problems[0].hint)
    back = _read(pg_url, f"SELECT id, label, run_id FROM {table} ORDER BY id")
    assert back.to_dict("list") == {"id": [1, 2, 3], "label": ["a", "b", "c"],
                                    "run_id": ["run-1"] * 3}  # the delete was rolled back too


def test_upsert_inserts_and_updates_by_key(pg_url: str, table: str, tmp_path: Path) -> None:
    first = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [1.0, 2.0, 3.0]})
    _write(pg_url, _dataset(tmp_path, first, "one"), table=table, mode="upsert", key=["id"])
    second = pd.DataFrame({"id": [3, 4], "name": ["C", "D"], "score": [30.0, 40.0]})
    _write(pg_url, _dataset(tmp_path, second, "two"), table=table, mode="upsert", key=["id"])
    back = _read(pg_url, f"SELECT * FROM {table} ORDER BY id")
    assert back.to_dict("list") == {"id": [1, 2, 3, 4], "name": ["a", "b", "C", "D"],
                                    "score": [1.0, 2.0, 30.0, 40.0]}
    twice = pd.DataFrame({"id": [5, 5], "name": ["x", "y"], "score": [0.0, 0.0]})
    with pytest.raises(StepFailed, match="more than one row for the same key"):
        _write(pg_url, _dataset(tmp_path, twice, "three"), table=table, mode="upsert", key=["id"])
    assert len(_read(pg_url, f"SELECT * FROM {table}")) == 4


def test_upsert_needs_a_unique_key_on_an_existing_table(pg_url: str, table: str,
                                                        tmp_path: Path) -> None:
    _execute(pg_url, f"CREATE TABLE {table} (id bigint, name text)")
    frame = pd.DataFrame({"id": [1], "name": ["a"]})
    with pytest.raises(StepFailed, match=r"no primary key or unique constraint on \(id\)"):
        _write(pg_url, _dataset(tmp_path, frame), table=table, mode="upsert", key=["id"])


def test_replace_recreates_the_table_from_the_data(pg_url: str, table: str,
                                                   tmp_path: Path) -> None:
    _execute(pg_url, f"CREATE TABLE {table} (old integer)", f"INSERT INTO {table} VALUES (1)")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    _write(pg_url, _dataset(tmp_path, frame), table=table, mode="replace")
    assert _read(pg_url, f"SELECT * FROM {table} ORDER BY a").to_dict("list") == {
        "a": [1, 2], "b": ["x", "y"]}


def test_a_table_that_does_not_match_is_named_column_by_column(pg_url: str, table: str,
                                                               tmp_path: Path) -> None:
    _execute(pg_url, f"CREATE TABLE {table} (id text, scor double precision, run_id text, "
             "owner text NOT NULL)")
    frame = pd.DataFrame({"id": [1], "score": [0.5]})
    with pytest.raises(StepFailed) as error:
        _write(pg_url, _dataset(tmp_path, frame), table=table)
    message = str(error.value)
    assert "no column `score`" in message and "did you mean `scor`" in message
    assert "column `id` is TEXT but the data holds int64" in message
    assert "`owner` must not be null" in message


def test_wrong_password_is_refused_without_showing_it(pg_url: str, tmp_path: Path) -> None:
    url = sa.make_url(pg_url).set(password="not-the-password-42")
    with pytest.raises(RemoteError, match="refused the credentials") as error:
        _write(url.render_as_string(hide_password=False), _dataset(tmp_path, _frame(2)),
               table="t_never")
    assert "not-the-password-42" not in str(error.value) + str(error.value.problems[0].hint)


def test_metrics_into_postgres(pg_url: str, table: str, tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    path.write_text(json.dumps({"metrics": {"accuracy": 0.9, "f1_macro": 0.8}}))
    artifact = ArtifactFile(str(path), "metrics", "json")
    _write(pg_url, artifact, table=table)
    _write(pg_url, artifact, table=table)
    back = _read(pg_url, f"SELECT * FROM {table} ORDER BY metric")
    assert back["metric"].tolist() == ["accuracy", "f1_macro"]
    assert back["gate"].isna().all() and back["run_date"].tolist() == [dt.date(2024, 5, 6)] * 2


# -- SQLite: the Core fallback ---------------------------------------------------------------------


def test_sqlite_append_and_upsert_through_core(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'out.db'}"
    (tmp_path / "out.db").touch()
    artifact = _dataset(tmp_path, _frame(6))
    _write(url, artifact, table="scores", chunksize=4)
    _write(url, artifact, table="scores", chunksize=4)
    back = _read(url, "SELECT * FROM scores ORDER BY id")
    assert len(back) == 6 and back["label"].tolist() == _frame(6)["label"].tolist()
    first = pd.DataFrame({"id": [1, 2], "name": ["a", "b"]})
    second = pd.DataFrame({"id": [2, 3], "name": ["B", "c"]})
    for name, frame in (("one", first), ("two", second)):
        _write(url, _dataset(tmp_path, frame, name), table="names", mode="upsert", key=["id"])
    assert _read(url, "SELECT * FROM names ORDER BY id").to_dict("list") == {
        "id": [1, 2, 3], "name": ["a", "B", "c"]}


def test_sqlite_failure_rolls_back_the_created_table(tmp_path: Path) -> None:
    """SQLite's driver would commit a CREATE TABLE on its own; the sink's BEGIN keeps it in."""
    url = f"sqlite:///{tmp_path / 'out.db'}"
    (tmp_path / "out.db").touch()
    frame = pd.DataFrame({"id": pd.array([1, None, 3], dtype="Int64"), "name": ["a", "b", "c"]})
    with pytest.raises(RemoteError, match="NOT NULL constraint failed"):
        _write(url, _dataset(tmp_path, frame), table="names", mode="upsert", key=["id"],
               chunksize=1)
    assert not sa.inspect(sa.create_engine(url)).has_table("names")


# -- end to end -----------------------------------------------------------------------------------

RECIPE = """\
apiVersion: skitflow/v1
name: scores
source:
  csv: {{path: {data}}}
split:
  train_test: {{test_size: 0.3, stratify: label}}
trainer:
  xgboost: {{target: label, params: {{n_estimators: 5}}}}
evaluator:
  classification: {{target: label}}
  gate: {{metric: accuracy, min: 0.1}}
sinks:
  - sql: {{table: scored_rows}}
  - sql: {{table: run_metrics}}
    input: metrics
"""


@pytest.mark.slow
def test_cli_run_writes_rows_and_metrics(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    pd.DataFrame({"a": [i % 7 for i in range(60)], "b": [i % 5 for i in range(60)],
                  "label": ["x" if i % 7 < 3 else "y" for i in range(60)]}).to_csv(data, index=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(textwrap.dedent(RECIPE.format(data=data)))
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "DATABASE_URL": pg_url}
    done = subprocess.run([sys.executable, "-m", "skitflow", "run", str(recipe), "--out",
                           str(tmp_path / "run"), "--no-cache"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _read(pg_url, "SELECT * FROM scored_rows")
    assert len(rows) == 60 and rows["run_id"].nunique() == 1
    metrics = _read(pg_url, "SELECT * FROM run_metrics")
    assert "accuracy" in set(metrics["metric"]) and set(metrics["gate"]) == {"passed"}
    assert set(metrics["run_id"]) == set(rows["run_id"]) and set(metrics["recipe"]) == {"scores"}
    password = str(sa.make_url(pg_url).password)
    assert password not in done.stdout + done.stderr
