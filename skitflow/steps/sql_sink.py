"""The `sql` sink: a dataset, predictions or the evaluator's metrics into a database table.

What a dashboard needs from a table is that it is never half-written and never counts a run
twice. So the whole write is one transaction: the table is created (when missing) or checked,
the rows of an earlier try of the same run are deleted (`append`), and the new rows are streamed
in; any failure rolls all of it back. PostgreSQL receives the rows through COPY (psycopg 3's
`cursor.copy`, CSV made by Arrow in chunks); other databases through SQLAlchemy Core inserts.

Rows are read from the artifact in chunks (Parquet row groups via Arrow), so memory stays near
one chunk beyond what the reader holds. Column types come from the Arrow types of the data; a
table that exists must have every column the data has, with compatible types, or the error
names the columns. Connecting, retrying and error scrubbing are shared with the `sql` source
(skitflow/connectors/sql.py).
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from skitflow.connectors.sql import (
    TABLE_NAME,
    create_engine,
    database_url,
    first_line,
    scrub,
    sqlstate,
    translate_connection_error,
    with_retries,
)
from skitflow.errors import RemoteError, SkitflowError, StepFailed, did_you_mean
from skitflow.steps.base import ArtifactFile, RunContext, SinkStep
from skitflow.steps.columns import ColumnList
from skitflow.steps.sql import DatabaseSettings

if TYPE_CHECKING:
    import pyarrow as pa
    import sqlalchemy as sa

__all__ = ["SQL_SINKS", "SqlSink", "arrow_to_sql_type", "metrics_rows"]

DATASET_ROLES = ("dataset", "train", "test")
#: The columns of the metrics table: one row per run and metric.
METRIC_COLUMNS = ("recipe", "run_id", "run_date", "metric", "value", "gate")


class SqlSink(SinkStep):
    """Write a dataset, predictions or the evaluator's metrics to a database table.

    The database URL is read when the step runs from the environment variable named by
    `url_env` (on Kubeflow, a Kubernetes secret mapped to it with `secrets:`). With
    `input: metrics` the table gets one row per run and metric: recipe, run_id, run_date,
    metric, value and gate (passed, failed, or empty without a gate). `mode: append` adds the
    rows, tagged with the run id in `run_column`, after deleting rows of an earlier try of the
    same run, so a rerun never duplicates; `replace` recreates the table from the data;
    `upsert` inserts or updates rows by `key`. A missing table is created with column types from
    the data. The write is one transaction: a failure leaves the table as it was.
    """

    name = "sql"
    run_identity = ("date", "id")  # rows are tagged with the run id; metrics carry the run date
    example: ClassVar[Mapping[str, Any]] = {
        "url_env": "DATABASE_URL",
        "table": "model_metrics",
        "mode": "append",
    }

    class Settings(DatabaseSettings):
        """Which database and table, and how the rows are written."""

        table: str = Field(description="The table to write, e.g. `metrics` or `sales.scores`.")
        mode: Literal["append", "replace", "upsert"] = Field(
            "append",
            description="`append`: add this run's rows (an earlier try of the same run is "
            "replaced); `replace`: recreate the table from the data; `upsert`: insert new keys, "
            "update existing ones.",
        )
        key: ColumnList | None = Field(
            None, min_length=1,
            description="The columns that identify a row, for `upsert` (a new table gets them as "
            "its primary key).",
        )
        run_column: str = Field(
            "run_id", min_length=1, max_length=63,
            description="With `append`: the column that holds the run id (added to datasets), by "
            "which a rerun finds and replaces its own rows.",
        )
        chunksize: int = Field(
            50_000, ge=1, le=10_000_000, description="Rows sent to the server at a time."
        )
        connect_timeout: float = Field(
            10, gt=0, le=600, description="Seconds to wait for a connection."
        )
        retries: int = Field(
            3, ge=0, le=10, description="Retries of the whole write after a connection fault."
        )

        @field_validator("table")
        @classmethod
        def _table_name(cls, value: str) -> str:
            if not TABLE_NAME.fullmatch(value):
                raise ValueError(f"`{value}` is not a table name; write e.g. `metrics` or "
                                 "`analytics.metrics`")
            return value

        @model_validator(mode="after")
        def _key_for_upsert(self) -> SqlSink.Settings:
            if self.mode == "upsert" and not self.key:
                raise ValueError("`mode: upsert` needs `key: [columns]` that identify a row")
            if self.mode != "upsert" and self.key:
                raise ValueError("`key` is used by `mode: upsert` only")
            return self

    def run(self, artifact: ArtifactFile, settings: Settings, ctx: RunContext) -> str:
        import sqlalchemy as sa

        rows = rows_of(artifact, settings, ctx)
        url = database_url(settings, ctx)
        target = url.render_as_string(hide_password=True)
        engine = create_engine(url, settings, transactional_ddl=True)
        started = time.perf_counter()
        try:
            report = with_retries(lambda: write(engine, rows, settings, ctx.run_id),
                                  settings.retries, ctx, target)
        except SkitflowError:
            raise
        except sa.exc.DBAPIError as exc:
            raise _translate(exc, url, settings, target) from None
        except Exception as exc:  # noqa: BLE001 - anything else, with the password masked
            raise StepFailed(scrub(f"sql: writing table `{settings.table}` to {target} failed: "
                                   f"{type(exc).__name__}: {first_line(str(exc))}", url)) from None
        finally:
            engine.dispose()
        seconds = time.perf_counter() - started
        replaced = (f", replacing {report.deleted} rows of an earlier try of run {ctx.run_id}"
                    if report.deleted else "")
        ctx.log(f"sql: {settings.mode} {report.rows} rows into `{settings.table}` "
                f"({'created' if report.created else 'existing table'}, {report.method}){replaced} "
                f"at {target} in {seconds:.2f}s")
        return f"{target} table {settings.table}"


# --------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class Rows:
    """The rows to write: their Arrow schema and a way to stream them (again, on a retry)."""

    schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]]


def rows_of(artifact: ArtifactFile, settings: SqlSink.Settings, ctx: RunContext) -> Rows:
    """The artifact as chunks of rows: a dataset as it is (plus the run column with `append`),
    metrics flattened to one row per metric."""
    import pyarrow as pa

    if artifact.role == "metrics":
        table = metrics_rows(artifact, ctx, settings.run_column)
        return Rows(table.schema, lambda: iter(table.to_batches(settings.chunksize)))
    if artifact.role not in DATASET_ROLES:
        raise StepFailed(f"sql: writes datasets and metrics to tables; a {artifact.role} cannot "
                         "be written to a table", hint="use `input: dataset` or `input: metrics`, "
                         "or the file / s3 sink for this artifact")
    schema, batches = _dataset_batches(artifact.path, settings.chunksize)
    schema = _writable_schema(schema)
    if settings.mode == "append":
        if settings.run_column in schema.names:
            raise StepFailed(
                f"sql: the dataset already has a column `{settings.run_column}`, the column that "
                "`append` fills with the run id",
                hint="set `run_column:` to another name, or use `mode: upsert` with a `key`")
        schema = schema.append(pa.field(settings.run_column, pa.string()))
    missing = [c for c in settings.key or () if c not in schema.names]
    if missing:
        hint = did_you_mean(missing[0], schema.names)
        raise StepFailed("sql: the `key` column(s) " + ", ".join(f"`{c}`" for c in missing)
                         + " are not in the dataset" + (f"; {hint}" if hint else ""),
                         hint=f"its columns: {', '.join(schema.names)}")

    def stream() -> Iterator[pa.RecordBatch]:
        for batch in batches():
            batch = _decoded(batch)
            if settings.mode == "append":
                run_ids = pa.array([ctx.run_id] * batch.num_rows, pa.string())
                batch = pa.RecordBatch.from_arrays([*batch.columns, run_ids], schema=schema)
            yield batch.cast(schema) if batch.schema != schema else batch

    return Rows(schema, stream)


def _dataset_batches(path: str, chunksize: int) -> tuple[
        pa.Schema, Callable[[], Iterator[pa.RecordBatch]]]:
    """Parquet streamed by row groups; CSV read whole (its types come from all of its rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skitflow.util.datasets import detect_format, read_dataset

    if detect_format(path) == "parquet":
        schema = pq.read_schema(path)
        schema = schema.remove_metadata()

        def parquet() -> Iterator[pa.RecordBatch]:
            with pq.ParquetFile(path) as reader:
                yield from reader.iter_batches(batch_size=chunksize)

        return schema, parquet
    table = pa.Table.from_pandas(read_dataset(path), preserve_index=False).replace_schema_metadata()
    return table.schema, lambda: iter(table.to_batches(chunksize))


def metrics_rows(artifact: ArtifactFile, ctx: RunContext, run_column: str = "run_id") -> pa.Table:
    """The evaluator's metrics.json as rows (recipe, run id, date, metric, value, gate verdict)."""
    import datetime as dt

    import pyarrow as pa

    try:
        with open(artifact.path, encoding="utf-8") as handle:
            document = json.load(handle)
        scalars = document["metrics"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepFailed(f"sql: cannot read the metrics to write ({type(exc).__name__}: {exc})",
                         hint="the metrics come from an `evaluator:`; check that it ran") from None
    gate = document.get("gate") if isinstance(document.get("gate"), dict) else None
    verdict = None if gate is None else ("passed" if gate.get("passed") else "failed")
    names = sorted(scalars)
    count = len(names)
    date = dt.date.fromisoformat(ctx.run_date)
    columns = [name if name != "run_id" else run_column for name in METRIC_COLUMNS]
    return pa.table([
        pa.array([ctx.recipe_name] * count, pa.string()),
        pa.array([ctx.run_id] * count, pa.string()),
        pa.array([date] * count, pa.date32()),
        pa.array(names, pa.string()),
        pa.array([float(scalars[n]) for n in names], pa.float64()),
        pa.array([verdict] * count, pa.string()),
    ], names=columns)


def _writable_schema(schema: pa.Schema) -> pa.Schema:
    """Dictionaries as their values, all-null columns as text; nested columns are refused."""
    import pyarrow as pa

    fields, nested = [], []
    for field in schema:
        kind = field.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_null(kind):
            kind = pa.string()
        if pa.types.is_nested(kind):
            nested.append(field.name)
        fields.append(pa.field(field.name, kind))
    if nested:
        raise StepFailed("sql: column(s) " + ", ".join(f"`{c}`" for c in nested) + " hold lists "
                         "or structs, which have no column type in a table",
                         hint="drop them (`drop_columns`) or turn them into text before the sink")
    return pa.schema(fields)


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    import pyarrow as pa

    if not any(pa.types.is_dictionary(c.type) for c in batch.columns):
        return batch
    arrays = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


# --------------------------------------------------------------------------- types


def arrow_to_sql_type(kind: pa.DataType) -> Any:
    """The SQLAlchemy column type for an Arrow type (what pandas dtypes become in Arrow)."""
    import pyarrow as pa
    import sqlalchemy as sa

    t = pa.types
    if t.is_boolean(kind):
        return sa.Boolean()
    if t.is_int8(kind) or t.is_int16(kind) or t.is_uint8(kind):
        return sa.SmallInteger()
    if t.is_int32(kind) or t.is_uint16(kind):
        return sa.Integer()
    if t.is_int64(kind) or t.is_uint32(kind):
        return sa.BigInteger()
    if t.is_uint64(kind):
        return sa.Numeric(20, 0)
    if t.is_float16(kind) or t.is_float32(kind):
        return sa.Float(precision=24)
    if t.is_floating(kind):
        return sa.Double()
    if t.is_decimal(kind):
        return sa.Numeric(kind.precision, kind.scale)
    if t.is_string(kind) or t.is_large_string(kind) or t.is_string_view(kind):
        return sa.Text()
    if t.is_timestamp(kind):
        return sa.DateTime(timezone=kind.tz is not None)
    if t.is_date(kind):
        return sa.Date()
    if t.is_time(kind):
        return sa.Time()
    if t.is_duration(kind):
        return sa.Interval()
    if t.is_binary(kind) or t.is_large_binary(kind) or t.is_fixed_size_binary(kind):
        return sa.LargeBinary()
    raise StepFailed(f"sql: no column type for Arrow type {kind}")


def _family(kind: Any) -> str | None:
    """A column type's family, for comparing the data with an existing table (None: unknown)."""
    import sqlalchemy as sa

    for family, types in (("boolean", sa.Boolean), ("integer", sa.Integer), ("float", sa.Float),
                          ("decimal", sa.Numeric), ("text", sa.String),
                          ("timestamp", sa.DateTime), ("date", sa.Date), ("time", sa.Time),
                          ("interval", sa.Interval), ("binary", sa.LargeBinary)):
        if isinstance(kind, types):
            return family
    return None


#: data family -> table families it can be written into without loss of meaning
_FITS = {
    "boolean": {"boolean"}, "integer": {"integer", "float", "decimal"},
    "float": {"float", "decimal"}, "decimal": {"decimal", "float"}, "text": {"text"},
    "timestamp": {"timestamp"}, "date": {"date", "timestamp"}, "time": {"time"},
    "interval": {"interval"}, "binary": {"binary"},
}


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WriteReport:
    rows: int
    deleted: int
    created: bool
    method: str  # "COPY" or "insert"


def write(engine: sa.Engine, rows: Rows, settings: SqlSink.Settings, run_id: str) -> WriteReport:
    """One attempt, in one transaction: prepare the table, clear this run's rows, stream rows."""
    import sqlalchemy as sa

    schema_part, _, name = settings.table.rpartition(".")
    schema_name = schema_part or None
    with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:  # writers of one table take turns: no race to create it or to clear a run
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                         {"name": settings.table})
        wanted = _table_for(rows.schema, name, schema_name, settings)
        inspector = sa.inspect(conn)
        exists = inspector.has_table(name, schema=schema_name)
        if exists and settings.mode == "replace":
            wanted.drop(conn)
            exists = False
        if exists:
            _check_table(inspector, name, schema_name, rows.schema, settings)
        else:
            wanted.create(conn)
        deleted = 0
        if settings.mode == "append":
            column = wanted.c[settings.run_column]
            deleted = conn.execute(sa.delete(wanted).where(column == run_id)).rowcount or 0
        copy = postgres and conn.dialect.driver == "psycopg" and _csv_safe(rows.schema)
        if settings.mode == "upsert":
            count = _upsert(conn, wanted, rows, settings, copy)
        elif copy:
            count = _copy(conn, wanted, rows)
        else:
            count = _insert(conn, wanted, rows)
    return WriteReport(count, deleted, not exists, "COPY" if copy else "insert")


def _table_for(schema: pa.Schema, name: str, schema_name: str | None,
               settings: SqlSink.Settings) -> sa.Table:
    """The table as the data describes it (used to create it, and to address its columns)."""
    import sqlalchemy as sa

    key = set(settings.key or ())
    columns = [sa.Column(f.name, arrow_to_sql_type(f.type), primary_key=f.name in key,
                         nullable=f.name not in key) for f in schema]
    table = sa.Table(name, sa.MetaData(), *columns, schema=schema_name)
    if settings.mode == "append":
        sa.Index(f"ix_{name}_{settings.run_column}"[:63], table.c[settings.run_column])
    return table


def _check_table(inspector: Any, name: str, schema_name: str | None, schema: pa.Schema,
                 settings: SqlSink.Settings) -> None:
    """An existing table must hold every data column with a fitting type; its other columns must
    be optional; an upsert key must be unique there. Every mismatch is named at once."""
    existing = {c["name"]: c for c in inspector.get_columns(name, schema=schema_name)}
    problems: list[str] = []
    missing = [f.name for f in schema if f.name not in existing]
    if missing:
        hint = did_you_mean(missing[0], list(existing))
        problems.append("it has no column " + ", ".join(f"`{c}`" for c in missing)
                        + (f" ({hint})" if hint else ""))
    for field in schema:
        column = existing.get(field.name)
        if column is None:
            continue
        have, want = _family(column["type"]), _family(arrow_to_sql_type(field.type))
        if have is not None and want is not None and have not in _FITS[want]:
            problems.append(f"column `{field.name}` is {column['type']} but the data holds "
                            f"{field.type}")
    required = [c for c, info in existing.items() if c not in schema.names
                and not info.get("nullable", True) and info.get("default") is None
                and info.get("autoincrement") is not True]
    if required:
        problems.append("column " + ", ".join(f"`{c}`" for c in required) + " must not be null, "
                        "and the data does not have it")
    if settings.mode == "upsert" and not _unique_on(inspector, name, schema_name, settings.key):
        problems.append("no primary key or unique constraint on (" + ", ".join(settings.key or ())
                        + "), which `upsert` needs")
    if problems:
        raise StepFailed(
            f"sql: table `{settings.table}` does not match the data: " + "; ".join(problems),
            hint=f"its columns: {', '.join(existing)}; the data's: {', '.join(schema.names)}. "
            "Change the data, alter the table, or use `mode: replace` to recreate it")


def _unique_on(inspector: Any, name: str, schema_name: str | None,
               key: Sequence[str] | None) -> bool:
    wanted = set(key or ())
    primary = inspector.get_pk_constraint(name, schema=schema_name) or {}
    sets = [set(primary.get("constrained_columns") or ())]
    sets += [set(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema_name)]
    sets += [set(i["column_names"]) for i in inspector.get_indexes(name, schema=schema_name)
             if i.get("unique")]
    return wanted in sets


def _csv_safe(schema: pa.Schema) -> bool:
    """Types whose Arrow CSV text PostgreSQL reads back exactly (bytes and durations are not)."""
    import pyarrow as pa

    t = pa.types
    return not any(t.is_binary(f.type) or t.is_large_binary(f.type) or
                   t.is_fixed_size_binary(f.type) or t.is_duration(f.type) for f in schema)


def _quoted(conn: sa.Connection, table: sa.Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _copy(conn: sa.Connection, table: sa.Table, rows: Rows, into: str | None = None) -> int:
    """Stream the rows through COPY ... FROM STDIN (CSV), inside the open transaction."""
    import psycopg
    import pyarrow.csv as pa_csv
    import sqlalchemy as sa

    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in rows.schema.names)
    statement = f"COPY {into or _quoted(conn, table)} ({columns}) FROM STDIN (FORMAT csv)"
    # Every present value is quoted: an empty string stays a string, a missing value is NULL.
    options = pa_csv.WriteOptions(include_header=False, quoting_style="all_valid")
    driver = conn.connection.driver_connection
    assert driver is not None
    count = 0
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for batch in rows.batches():
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, options)
                copy.write(buffer.getbuffer())
                count += batch.num_rows
    except psycopg.Error as exc:  # as SQLAlchemy wraps it: one way to classify and translate
        raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    return count


def _insert(conn: sa.Connection, table: sa.Table, rows: Rows, statement: Any = None) -> int:
    """SQLAlchemy Core executemany, one chunk at a time (any database)."""
    count = 0
    for batch in rows.batches():
        if batch.num_rows:
            conn.execute(statement if statement is not None else table.insert(), batch.to_pylist())
        count += batch.num_rows
    return count


def _upsert(conn: sa.Connection, table: sa.Table, rows: Rows, settings: SqlSink.Settings,
            copy: bool) -> int:
    """INSERT ... ON CONFLICT (key) DO UPDATE: PostgreSQL through a staging table filled by COPY
    (so duplicate keys in the data are found and named first), SQLite through Core."""
    import sqlalchemy as sa

    key = list(settings.key or ())
    others = [c for c in rows.schema.names if c not in key]
    dialect = conn.dialect.name
    if dialect == "postgresql":
        quote = conn.dialect.identifier_preparer.quote
        stage = quote(f"skitflow_stage_{secrets.token_hex(4)}")
        conn.exec_driver_sql(f"CREATE TEMP TABLE {stage} (LIKE {_quoted(conn, table)} "
                             "INCLUDING DEFAULTS) ON COMMIT DROP")
        if copy:
            count = _copy(conn, table, rows, into=stage)
        else:
            staged = sa.table(stage.strip('"'), *(sa.column(c) for c in rows.schema.names))
            count = _insert(conn, table, rows, staged.insert())
        keys = ", ".join(quote(c) for c in key)
        twice = conn.exec_driver_sql(f"SELECT {keys} FROM {stage} GROUP BY {keys} "
                                     "HAVING count(*) > 1 LIMIT 3").fetchall()
        if twice:
            shown = "; ".join(", ".join(map(str, row)) for row in twice)
            raise StepFailed(f"sql: the data has more than one row for the same key ({keys}): "
                             f"{shown}", hint="upsert needs one row per key; drop duplicates "
                             f"first (`drop_duplicates: {{subset: [{', '.join(key)}]}}`)")
        columns = ", ".join(quote(c) for c in rows.schema.names)
        action = ("DO UPDATE SET " + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in others)
                  if others else "DO NOTHING")
        conn.exec_driver_sql(f"INSERT INTO {_quoted(conn, table)} ({columns}) SELECT {columns} "
                             f"FROM {stage} ON CONFLICT ({keys}) {action}")
        return count
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        statement = insert(table)
        statement = (statement.on_conflict_do_update(
            index_elements=key, set_={c: statement.excluded[c] for c in others})
            if others else statement.on_conflict_do_nothing(index_elements=key))
        return _insert(conn, table, rows, statement)
    raise StepFailed(f"sql: `mode: upsert` is supported on PostgreSQL and SQLite, not {dialect}",
                     hint="use `mode: append` or `mode: replace`")


# --------------------------------------------------------------------------- errors


def _translate(exc: Any, url: sa.URL, settings: SqlSink.Settings, target: str) -> SkitflowError:
    """A driver error while writing, as a message a user can act on, without the password."""
    connection_error = translate_connection_error(exc, url, settings, target)
    if connection_error is not None:
        return connection_error
    orig = getattr(exc, "orig", None)
    text = scrub(first_line(str(orig if orig is not None else exc)), url)
    code = sqlstate(orig) or ""
    nothing = "nothing was written: the transaction was rolled back"
    if code == "42501" or "permission denied" in text.lower():
        return RemoteError(f"sql: user `{url.username}` may not write table `{settings.table}` at "
                           f"{target}: {text}", hint="GRANT INSERT, DELETE (and CREATE on the "
                           "schema, for a new table) to this user; " + nothing)
    if code == "23505":
        return RemoteError(f"sql: rows collide with a unique constraint of `{settings.table}`: "
                           f"{text}", hint="use `mode: upsert` with `key:` to update existing "
                           "rows; " + nothing)
    if code.startswith(("22", "23")):
        return RemoteError(f"sql: a value does not fit table `{settings.table}`: {text}",
                           hint=nothing)
    if code == "2BP01" or "depend on" in text.lower():
        return RemoteError(f"sql: `mode: replace` cannot drop `{settings.table}`: {text}",
                           hint="other objects (views) depend on it; use `mode: append` or "
                           "`upsert`, or drop them first; " + nothing)
    return RemoteError(f"sql: writing table `{settings.table}` at {target} failed: {text}",
                       hint=nothing)


SQL_SINKS: list[type[SinkStep]] = [SqlSink]
