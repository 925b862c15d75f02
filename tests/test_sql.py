"""The `sql` source against a real PostgreSQL 15 (password auth) and a SQLite file.

Unit-level tests call the step in this process with the URL in a RunContext's environment;
end-to-end tests run recipes through the real CLI (`python -m skitflow run`) in a subprocess
whose tasks read DATABASE_URL from their environment, as on a cluster. Faults: a wrong password
(never shown), a missing table (named, with a suggestion), an unreachable server (bounded
retries), a server that comes back while the source retries, SQL injection through a parameter
(inert) and a query that tries to write (refused: the read is read-only).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from skitflow.errors import RemoteError, StepFailed
from skitflow.steps.base import RunContext
from skitflow.steps.sql import SqlSource, frame_from_chunks
from tests.services import free_port

# Tests that use a server fixture are marked `services` by tests/services.py; the rest are pure.

ROWS = 300
CHANNELS = ("email", "chat", "phone")


# -- helpers --------------------------------------------------------------------------------------


def _connect(url: str) -> Any:
    """A psycopg connection for a SQLAlchemy URL (to set up and inspect tables)."""
    import psycopg
    import sqlalchemy as sa

    u = sa.make_url(url)
    return psycopg.connect(host=u.host, port=u.port, dbname=u.database, user=u.username,
                           password=u.password, autocommit=True)


@pytest.fixture(scope="module")
def pg_url(postgres_server: Any) -> str:
    """A fresh database with `tickets` (300 rows) and `ticket_notes`; returns its URL."""
    url = postgres_server.create_database()
    with _connect(url) as conn:
        conn.execute(
            "CREATE TABLE tickets (ticket_id integer PRIMARY KEY, subject text, channel text, "
            "amount numeric(10, 2), created_at timestamptz, urgent boolean)"
        )
        with conn.cursor().copy("COPY tickets FROM STDIN") as copy:
            for i in range(1, ROWS + 1):
                copy.write_row((i, f"Subject {i}" if i % 50 else None, CHANNELS[i % 3],
                                f"{i}.25", "2024-03-01 12:00:00+00", i % 4 == 0))
        conn.execute("CREATE TABLE ticket_notes (ticket_id integer, note text)")
    return url


def _context(url: str | None, **extra: str) -> RunContext:
    environ = {**({"DATABASE_URL": url} if url else {}), **extra}
    lines: list[str] = []
    ctx = RunContext("test", "run-1", "2024-01-01", "/tmp", environ, lines.append)
    ctx.lines = lines  # type: ignore[attr-defined]
    return ctx


def _read(url: str | None, **settings: Any) -> pd.DataFrame:
    return SqlSource().run(SqlSource.Settings(**settings), _context(url))


def _count(url: str, table: str = "tickets") -> int:
    with _connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _with_password(url: str, password: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(password=password).render_as_string(hide_password=False)


def _run_cli(tmp_path: Path, recipe: str, env: dict[str, str],
             name: str = "recipe.yaml") -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(recipe))
    child = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    child.update(env)
    return subprocess.run(
        [sys.executable, "-m", "skitflow", "run", str(path), "--out", str(tmp_path / "run"),
         "--no-cache"],
        cwd=tmp_path, env=child, capture_output=True, text=True, timeout=180,
    )


def _all_text(tmp_path: Path, done: subprocess.CompletedProcess[str]) -> str:
    """Everything the run printed or wrote (logs, package, summaries), to look for secrets."""
    texts = [done.stdout, done.stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


# -- settings (no server needed, but cheap) -------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "exactly one of `table` or `query`"),
        ({"table": "t", "query": "SELECT 1"}, "exactly one of `table` or `query`"),
        ({"table": "tickets; DROP TABLE x"}, "is not a table name"),
        ({"table": "t", "params": {"a": 1}}, "`table` has none"),
        ({"query": "SELECT :a", "params": {"b": 1}}, "no `:b` placeholder"),
        ({"query": "SELECT * FROM t WHERE a = :a"}, "no value for it"),
        ({"query": "SELECT 1", "chunksize": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SqlSource.Settings(**settings)


def test_url_env_must_be_a_name_and_the_url_is_never_echoed() -> None:
    url = "postgresql+psycopg://u:S3cretPw@db:5432/x"
    with pytest.raises(ValidationError) as caught:
        SqlSource.Settings(url_env=url, table="t")
    messages = " ".join(e["msg"] for e in caught.value.errors())
    assert "NAME of the environment variable" in messages and "S3cretPw" not in messages


def test_casts_and_placeholders_are_told_apart() -> None:
    settings = SqlSource.Settings(query="SELECT CAST(:a AS int), '12:30' AS t", params={"a": "1"})
    assert settings.params == {"a": "1"}
    with pytest.raises(ValidationError, match=r"write `CAST\(:a AS type\)`"):
        SqlSource.Settings(query="SELECT :a::int", params={"a": "1"})


def test_contract_is_the_declared_columns() -> None:
    step = SqlSource()
    assert step.columns_after(SqlSource.Settings(table="t", columns=["a", "b"]), None) == ["a", "b"]
    assert step.columns_after(SqlSource.Settings(table="t"), None) is None


def test_frame_from_chunks_promotes_and_falls_back() -> None:
    chunks = [
        [(1, None, "a", {"k": 1}), (2, None, "b", {"k": 2})],
        [(3, 1.5, 7, None)],  # int -> float, null -> float, str + int -> objects
    ]
    frame = frame_from_chunks(["n", "x", "mixed", "doc"], chunks)
    assert str(frame["n"].dtype) == "int64"
    assert str(frame["x"].dtype) == "float64" and frame["x"].isna().sum() == 2
    assert frame["mixed"].tolist() == ["a", "b", 7]
    assert frame["doc"].tolist()[:2] == [{"k": 1}, {"k": 2}]
    empty = frame_from_chunks(["a", "b"], [])
    assert list(empty.columns) == ["a", "b"] and len(empty) == 0


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_reads_a_table_in_chunks_like_read_sql(pg_url: str) -> None:
    import sqlalchemy as sa

    ours = _read(pg_url, table="tickets", chunksize=7)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        theirs = pd.read_sql(sa.text("SELECT * FROM tickets"), conn)
    engine.dispose()
    assert len(ours) == ROWS and list(ours.columns) == list(theirs.columns)
    for column in ("ticket_id", "subject", "channel", "amount", "urgent"):
        assert ours[column].tolist() == theirs[column].tolist() or (
            ours[column].fillna("").tolist() == theirs[column].fillna("").tolist()), column
    assert str(ours["ticket_id"].dtype) == "int64" and str(ours["amount"].dtype) == "float64"
    assert str(ours["urgent"].dtype) == "bool"
    assert str(ours["created_at"].dt.tz) == "UTC"  # as read_sql says it, not "Etc/UTC"
    assert ours["subject"].isna().sum() == ROWS // 50


def test_declared_columns_order_and_limit(pg_url: str) -> None:
    frame = _read(pg_url, table="tickets", columns=["subject", "ticket_id"], limit=5)
    assert list(frame.columns) == ["subject", "ticket_id"] and len(frame) == 5
    frame = _read(pg_url, query="SELECT * FROM tickets ORDER BY ticket_id", columns=["ticket_id"],
                  limit=12, chunksize=5)
    assert list(frame.columns) == ["ticket_id"] and frame["ticket_id"].tolist() == list(range(1, 13))


def test_params_are_bound_and_lists_expand(pg_url: str) -> None:
    frame = _read(pg_url, query="SELECT ticket_id FROM tickets WHERE channel = :channel "
                  "AND ticket_id IN :ids ORDER BY ticket_id",
                  params={"channel": "chat", "ids": [1, 2, 3, 4, 5]})
    assert frame["ticket_id"].tolist() == [1, 4]


@pytest.mark.parametrize("attack", [
    "x' OR '1'='1",
    "x'; DROP TABLE tickets; --",
    "chat' UNION SELECT ticket_id FROM tickets --",
])
def test_injection_through_a_param_is_inert(pg_url: str, attack: str) -> None:
    frame = _read(pg_url, query="SELECT ticket_id FROM tickets WHERE channel = :channel",
                  params={"channel": attack})
    assert len(frame) == 0  # the whole value was compared as one string
    assert _count(pg_url) == ROWS  # and nothing was dropped


def test_the_read_is_read_only(pg_url: str) -> None:
    with pytest.raises(RemoteError):
        _read(pg_url, query="WITH gone AS (DELETE FROM tickets RETURNING ticket_id) "
              "SELECT * FROM gone")
    assert _count(pg_url) == ROWS


def test_missing_declared_column_is_named_with_a_suggestion(pg_url: str) -> None:
    with pytest.raises(StepFailed, match=r"no column `subjct`; did you mean `subject`\?"):
        _read(pg_url, table="tickets", columns=["ticket_id", "subjct"])
    with pytest.raises(StepFailed, match=r"returns no column `chanel`; did you mean `channel`\?"):
        _read(pg_url, query="SELECT ticket_id, channel FROM tickets", columns=["chanel"])


def test_missing_table_is_named_with_a_suggestion(pg_url: str) -> None:
    with pytest.raises(RemoteError) as caught:
        _read(pg_url, table="tikets")
    message = str(caught.value)
    assert "table `tikets` does not exist" in message and "did you mean `tickets`?" in message
    assert "***" in message  # the target is shown with its password masked
    assert "ticket_notes" in caught.value.problems[0].hint
    with pytest.raises(RemoteError, match=r"table `tickit` does not exist.*did you mean `tickets`"):
        _read(pg_url, query="SELECT * FROM tickit")


def test_sql_error_is_a_remote_error(pg_url: str) -> None:
    with pytest.raises(RemoteError, match="not valid SQL: syntax error"):
        _read(pg_url, query="SELEC ticket_id FROM tickets")
    with pytest.raises(RemoteError, match='column "nope" does not exist'):
        _read(pg_url, query="SELECT nope FROM tickets")


def test_wrong_password_is_refused_without_showing_it(pg_url: str) -> None:
    bad = "Wr0ng-Passw0rd-4242"
    with pytest.raises(RemoteError) as caught:
        _read(_with_password(pg_url, bad), table="tickets")
    text = str(caught.value) + str(caught.value.problems[0].hint)
    assert "refused the credentials of user `skitflow`" in text and "DATABASE_URL" in text
    assert bad not in text


def test_missing_database_and_missing_env_var(pg_url: str) -> None:
    import sqlalchemy as sa

    missing = sa.make_url(pg_url).set(database="nope_db").render_as_string(hide_password=False)
    with pytest.raises(RemoteError, match="database `nope_db` does not exist"):
        _read(missing, table="tickets")
    with pytest.raises(StepFailed, match="`SALES_DB` is not set"):
        SqlSource().run(SqlSource.Settings(table="t", url_env="SALES_DB"), _context(pg_url))
    with pytest.raises(StepFailed, match="does not hold a valid SQLAlchemy URL") as caught:
        _read("not a url :// S3cret", table="t")
    assert "S3cret" not in str(caught.value)


def test_unreachable_server_is_retried_a_bounded_number_of_times() -> None:
    url = f"postgresql+psycopg://u:Pw-9a8b7c@127.0.0.1:{free_port()}/db"
    ctx = _context(url)
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        SqlSource().run(SqlSource.Settings(table="t", retries=2), ctx)
    assert time.monotonic() - started < 10
    assert "cannot connect" in str(caught.value) and "tried 3 times" in str(caught.value)
    assert "Pw-9a8b7c" not in str(caught.value)
    assert sum("retrying" in line for line in ctx.lines) == 2  # type: ignore[attr-defined]


def test_a_server_that_comes_back_is_read_after_retries(postgres_server: Any,
                                                        pg_url: str) -> None:
    ctx = _context(pg_url)
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            result["frame"] = SqlSource().run(SqlSource.Settings(table="tickets", retries=6), ctx)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    postgres_server.stop()
    reader = threading.Thread(target=read)
    try:
        reader.start()
        time.sleep(1.0)
    finally:  # started from this thread: the server dies with the thread that started it
        postgres_server.start()
    reader.join(timeout=60)
    assert "error" not in result, result.get("error")
    assert len(result["frame"]) == ROWS
    assert any("retrying" in line for line in ctx.lines)  # type: ignore[attr-defined]


# -- SQLite ---------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, price REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                         [(i, f"item {i}", i * 1.5) for i in range(1, 101)])
    return f"sqlite:///{path}"


def test_sqlite_table_query_and_faults(sqlite_url: str, tmp_path: Path) -> None:
    frame = _read(sqlite_url, table="orders", columns=["id", "price"], chunksize=30)
    assert len(frame) == 100 and frame["price"].sum() == pytest.approx(1.5 * 5050)
    frame = _read(sqlite_url, query="SELECT item FROM orders WHERE id <= :n OR item = :attack",
                  params={"n": 3, "attack": "x' OR 1=1 --"})
    assert frame["item"].tolist() == ["item 1", "item 2", "item 3"]
    with pytest.raises(RemoteError, match="table `order` does not exist.*did you mean `orders`"):
        _read(sqlite_url, table="order")
    with pytest.raises(RemoteError):
        _read(sqlite_url, query="DELETE FROM orders RETURNING id")
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 100
    with pytest.raises(RemoteError, match="database file .* does not exist"):
        _read(f"sqlite:///{tmp_path / 'nope.db'}", table="orders")
    assert not (tmp_path / "nope.db").exists()  # not created by trying


# -- end to end through the CLI -------------------------------------------------------------------

RECIPE = """\
apiVersion: skitflow/v1
name: sql-e2e
source:
  sql:
    {source}
steps:
  - filter_rows: {{expr: "amount > 10"}}
  - lowercase: {{columns: [subject]}}
sinks:
  - file: {{path: "{out}", format: csv}}
"""


def test_cli_reads_postgres_into_a_file(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "tickets.csv"
    source = ("query: \"SELECT ticket_id, subject, amount FROM tickets WHERE channel = :channel\"\n"
              "    params: {channel: email}\n    columns: [ticket_id, subject, amount]")
    done = _run_cli(tmp_path, RECIPE.format(source=source, out=out), {"DATABASE_URL": pg_url})
    assert done.returncode == 0, done.stdout + done.stderr
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["ticket_id", "subject", "amount"]
    assert len(frame) == sum(1 for i in range(1, ROWS + 1) if i % 3 == 0 and i + 0.25 > 10)
    password = _connect_password(pg_url)
    assert password not in _all_text(tmp_path, done)  # not in the package, logs or summary


def _connect_password(url: str) -> str:
    import sqlalchemy as sa

    return str(sa.make_url(url).password)


def test_cli_wrong_password_exits_1_without_the_password(pg_url: str, tmp_path: Path) -> None:
    bad = "Not-The-Password-7f3e"
    done = _run_cli(tmp_path, RECIPE.format(source="table: tickets", out=tmp_path / "x.csv"),
                    {"DATABASE_URL": _with_password(pg_url, bad)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refused the credentials of user `skitflow`" in done.stderr
    assert bad not in _all_text(tmp_path, done)


def test_cli_missing_table_names_it_with_a_suggestion(pg_url: str, tmp_path: Path) -> None:
    done = _run_cli(tmp_path, RECIPE.format(source="table: tiket", out=tmp_path / "x.csv"),
                    {"DATABASE_URL": pg_url})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "table `tiket` does not exist" in done.stderr
    assert "did you mean `tickets`?" in done.stderr
