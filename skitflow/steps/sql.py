"""The `sql` source: a table or a query's result from a database, through SQLAlchemy.

The database URL holds a password, so it never appears in a recipe or a compiled package: the
recipe names an environment variable (`url_env`) and the URL is read from it when the task runs
(on Kubeflow, a Kubernetes secret mapped to that variable with `secrets:`). Messages show the URL
with its password masked.

Values reach the database only as bound parameters (`:name` in the query, `params` in the recipe),
never pasted into the SQL text. Rows are fetched in chunks through a server-side cursor and
collected column by column as Arrow arrays, so a large result costs little memory beyond the
DataFrame it becomes. The read runs in a read-only transaction that is rolled back at the end, and
connection faults (refused, reset, server restarting) are retried with bounded backoff.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from skitflow.connectors.sql import TABLE_NAME as _TABLE_NAME
from skitflow.connectors.sql import create_engine as _create_engine
from skitflow.connectors.sql import database_url as _database_url
from skitflow.connectors.sql import first_line as _first_line
from skitflow.connectors.sql import translate_connection_error, valid_env_name
from skitflow.connectors.sql import with_retries as _with_retries
from skitflow.errors import RemoteError, SkitflowError, StepFailed, did_you_mean
from skitflow.steps.base import RunContext, SourceStep, StepSettings
from skitflow.steps.columns import ColumnList
from skitflow.util.redact import redact

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

__all__ = ["SQL_STEPS", "DatabaseSettings", "SqlSource", "frame_from_chunks"]

# The same pattern SQLAlchemy's text() uses to find `:name` bind parameters.
_BIND_PARAM = re.compile(r"(?<![:\w\x5c]):(\w+)(?![:\w])")

Scalar = str | int | float | bool | None
SqlValue = Scalar | list[Scalar]

_UTC_NAMES = {"Etc/UTC", "Etc/Universal", "Etc/Zulu", "Universal", "Zulu", "UCT", "Etc/UCT"}


class DatabaseSettings(StepSettings):
    """Where the database URL is, shared by the `sql` source and sink: the name of an
    environment variable (on Kubeflow, a Kubernetes secret mapped to it), never the URL."""

    url_env: str = Field(
        "DATABASE_URL",
        description="Name of the environment variable that holds the SQLAlchemy URL "
        "(which contains the password). The URL itself never goes in the recipe.",
    )

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return valid_env_name(value)


class SqlSource(SourceStep):
    """Read a table or the result of a SQL query from a database (PostgreSQL, SQLite, ...).

    The database URL is read when the step runs from the environment variable named by
    `url_env` (default DATABASE_URL), e.g. `postgresql+psycopg://user:password@host:5432/db`;
    it is never written in the recipe. Give either `table` (a name, quoted for you) or `query`
    (SQL with `:name` placeholders whose values come from `params`, bound by the driver). With
    `columns`, exactly those columns are returned, in that order, and a missing one stops the
    run. Rows are streamed in chunks of `chunksize`; the read is read-only and is retried when
    the connection fails.
    """

    name = "sql"
    #: A database changes between runs: a cached read would be stale.
    cacheable: ClassVar[bool] = False
    example: ClassVar[Mapping[str, Any]] = {
        "url_env": "DATABASE_URL",
        "query": "SELECT ticket_id, subject, channel FROM tickets WHERE created_at >= :since",
        "params": {"since": "2024-01-01"},
        "columns": ["ticket_id", "subject", "channel"],
    }

    class Settings(DatabaseSettings):
        """Which database, what to read and how."""

        table: str | None = Field(
            None, description="A table or view to read, e.g. `tickets` or `sales.orders`."
        )
        query: str | None = Field(
            None,
            min_length=1,
            description="A SQL query; write values as `:name` placeholders and give them in "
            "`params`.",
        )
        params: dict[str, SqlValue] | None = Field(
            None,
            description="Values of the query's `:name` placeholders, bound by the driver (a list "
            "binds an `IN :name` list).",
        )
        columns: ColumnList | None = Field(
            None,
            min_length=1,
            description="The columns to return, in this order; the column contract of the "
            "recipe. With `table`, only these columns are read.",
        )
        chunksize: int = Field(
            50_000, ge=1, le=10_000_000, description="Rows fetched from the server at a time."
        )
        limit: int | None = Field(
            None, ge=1, description="Read at most this many rows (for a quick sample run)."
        )
        connect_timeout: float = Field(
            10, gt=0, le=600, description="Seconds to wait for a connection."
        )
        retries: int = Field(
            3, ge=0, le=10, description="Retries after a connection fault, with backoff."
        )

        @field_validator("table")
        @classmethod
        def _table_name(cls, value: str | None) -> str | None:
            if value is not None and not _TABLE_NAME.fullmatch(value):
                raise ValueError(
                    f"`{value}` is not a table name; write a name such as `tickets` or "
                    "`sales.orders`, or use `query` for anything else"
                )
            return value

        @model_validator(mode="after")
        def _one_source(self) -> SqlSource.Settings:
            if (self.table is None) == (self.query is None):
                raise ValueError("give exactly one of `table` or `query`")
            if self.table is not None and self.params:
                raise ValueError("`params` binds `:name` placeholders of a `query`; `table` has none")
            if self.query is not None:
                placeholders = set(_BIND_PARAM.findall(self.query))
                given = set(self.params or {})
                if given - placeholders:
                    extra = sorted(given - placeholders)[0]
                    hint = did_you_mean(extra, placeholders)
                    if re.search(rf"(?<![:\w]):{re.escape(extra)}::", self.query):
                        hint = f"write `CAST(:{extra} AS type)`; `:{extra}::type` is not a placeholder"
                    raise ValueError(
                        f"`params` gives `{extra}`, but the query has no `:{extra}` placeholder"
                        + (f"; {hint}" if hint else "")
                    )
                if placeholders - given:
                    missing = sorted(placeholders - given)[0]
                    raise ValueError(
                        f"the query uses `:{missing}` but `params` gives no value for it "
                        "(write `\\:` for a literal colon)"
                    )
            return self

    def run(self, settings: Settings, ctx: RunContext) -> pd.DataFrame:
        import sqlalchemy as sa

        url = _database_url(settings, ctx)
        target = url.render_as_string(hide_password=True)
        engine = _create_engine(url, settings)
        started = time.perf_counter()
        try:
            frame = _with_retries(
                lambda: _read(engine, settings), settings.retries, ctx, target
            )
        except SkitflowError:
            raise
        except sa.exc.DBAPIError as exc:
            raise _translate(exc, url, engine, settings, target) from None
        except Exception as exc:  # noqa: BLE001 - anything else, with the password masked
            raise StepFailed(redact(f"sql: reading from {target} failed: "
                                    f"{type(exc).__name__}: {_first_line(str(exc))}",
                                    [url.password])) from None
        finally:
            engine.dispose()
        what = f"table `{settings.table}`" if settings.table else "query"
        ctx.log(f"sql: read {len(frame)} rows, {len(frame.columns)} columns ({what}) from "
                f"{target} in {time.perf_counter() - started:.2f}s")
        return frame


# --------------------------------------------------------------------------- reading


def _read(engine: sa.Engine, settings: SqlSource.Settings) -> pd.DataFrame:
    """One attempt: connect, build the statement, stream the rows into a DataFrame."""
    with engine.connect() as conn:
        _prepare_connection(conn)
        statement = _statement(conn, settings)
        result = conn.execution_options(yield_per=settings.chunksize).execute(statement)
        try:
            names = list(result.keys())
            keep = _kept_positions(names, settings)
            limit = settings.limit if settings.query is not None else None  # tables: LIMIT in SQL
            return frame_from_chunks(
                [names[i] for i in keep], _limited(result.partitions(settings.chunksize), limit), keep
            )
        finally:
            result.close()  # leaving the block rolls back: nothing a query did is ever kept


def _prepare_connection(conn: sa.Connection) -> None:
    """Read-only, and (psycopg) NUMERIC loaded as float, as read_sql's coerce_float would."""
    backend = conn.dialect.name
    if backend == "postgresql":
        conn.execution_options(postgresql_readonly=True)
        if conn.dialect.driver == "psycopg":  # skips a Decimal per value: much faster
            from psycopg.types.numeric import FloatLoader

            driver_connection = conn.connection.driver_connection
            if driver_connection is not None:
                driver_connection.adapters.register_loader("numeric", FloatLoader)
    elif backend == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = ON")


def _statement(conn: sa.Connection, settings: SqlSource.Settings) -> Any:
    import sqlalchemy as sa

    if settings.query is not None:
        query = sa.text(settings.query)
        if settings.params:
            query = query.bindparams(*(
                sa.bindparam(key, value, expanding=isinstance(value, list))
                for key, value in settings.params.items()
            ))
        return query
    assert settings.table is not None
    schema, _, name = settings.table.rpartition(".")
    inspector = sa.inspect(conn)
    if not inspector.has_table(name, schema=schema or None):
        raise _missing_table(settings.table, _table_names(inspector, schema or None), conn)
    available = [column["name"] for column in inspector.get_columns(name, schema=schema or None)]
    wanted = list(settings.columns) if settings.columns else available
    missing = [c for c in wanted if c not in available]
    if missing:
        hint = did_you_mean(missing[0], available)
        raise StepFailed(
            f"sql: table `{settings.table}` has no column "
            + ", ".join(f"`{c}`" for c in missing) + (f"; {hint}" if hint else ""),
            hint=f"its columns: {', '.join(available)}",
        )
    table = sa.table(name, *(sa.column(c) for c in wanted), schema=schema or None)
    statement = sa.select(*table.c)
    return statement.limit(settings.limit) if settings.limit else statement


def _table_names(inspector: Any, schema: str | None) -> list[str]:
    names: list[str] = []
    for listing in (inspector.get_table_names, inspector.get_view_names):
        with contextlib.suppress(Exception):  # suggestions are best effort
            names += listing(schema=schema)
    return [f"{schema}.{n}" if schema else n for n in names]


def _missing_table(table: str, known: Sequence[str], conn: Any) -> RemoteError:
    where = conn.engine.url.render_as_string(hide_password=True)
    hint = did_you_mean(table, known)
    listed = ", ".join(sorted(known)[:12]) or "none"
    return RemoteError(
        f"sql: table `{table}` does not exist in {where}" + (f"; {hint}" if hint else ""),
        hint=f"tables there: {listed}",
    )


def _kept_positions(names: list[str], settings: SqlSource.Settings) -> list[int]:
    """Positions of the result columns to keep: the declared ones, in their order."""
    if not settings.columns:
        return list(range(len(names)))
    missing = [c for c in settings.columns if c not in names]
    if missing:
        hint = did_you_mean(missing[0], names)
        raise StepFailed(
            "sql: the query returns no column " + ", ".join(f"`{c}`" for c in missing)
            + (f"; {hint}" if hint else ""),
            hint=f"it returns: {', '.join(names)}",
        )
    return [names.index(c) for c in settings.columns]


def _limited(chunks: Iterable[Sequence[Any]], limit: int | None) -> Iterable[Sequence[Any]]:
    if limit is None:
        yield from chunks
        return
    for rows in chunks:
        rows = rows[:limit]
        limit -= len(rows)
        yield rows
        if limit <= 0:
            return


class _ColumnBuilder:
    """One result column, collected as Arrow arrays chunk by chunk.

    A column Arrow cannot hold faithfully (mixed types in SQLite, JSON documents, UUIDs...)
    falls back to a list of Python objects, as pandas.read_sql would keep them.
    """

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.objects: list[Any] | None = None

    def add(self, values: Sequence[Any]) -> None:
        import pyarrow as pa

        if self.objects is not None:
            self.objects.extend(values)
            return
        try:
            array = pa.array(values)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            self._to_objects(values)
            return
        kind = array.type
        if pa.types.is_decimal(kind):  # like read_sql's coerce_float: NUMERIC becomes float
            array = array.cast(pa.float64())
        elif pa.types.is_timestamp(kind) and kind.tz in _UTC_NAMES:
            array = array.cast(pa.timestamp(kind.unit, "UTC"))  # "Etc/UTC" -> "UTC", as pandas
        elif pa.types.is_nested(kind) or isinstance(kind, pa.ExtensionType):
            self._to_objects(values)
            return
        self.chunks.append(array)

    def _to_objects(self, values: Sequence[Any]) -> None:
        self.objects = [v for chunk in self.chunks for v in chunk.to_pylist()]
        self.objects.extend(values)
        self.chunks = []

    def arrow(self) -> Any | None:
        """The whole column as one Arrow ChunkedArray, or None when it is Python objects."""
        import pyarrow as pa

        if self.objects is not None:
            return None
        if not self.chunks:
            return pa.chunked_array([], type=pa.null())
        kinds = {chunk.type for chunk in self.chunks}
        if len(kinds) > 1:
            try:
                common = pa.unify_schemas(
                    [pa.schema([("c", kind)]) for kind in kinds], promote_options="permissive"
                ).field("c").type
                self.chunks = [chunk.cast(common) for chunk in self.chunks]
            except (pa.ArrowException, TypeError, ValueError):
                self._to_objects([])
                return None
        return pa.chunked_array(self.chunks)


def frame_from_chunks(
    names: Sequence[str], chunks: Iterable[Sequence[Sequence[Any]]],
    positions: Sequence[int] | None = None,
) -> pd.DataFrame:
    """A DataFrame from chunks of row tuples, via Arrow columns (types like pandas.read_sql's).

    `positions` picks and orders the tuple fields to keep (all of them by default).
    """
    import pandas as pd
    import pyarrow as pa

    keep = list(positions) if positions is not None else list(range(len(names)))
    builders = [_ColumnBuilder() for _ in keep]
    for rows in chunks:
        if not rows:
            continue
        fields = list(zip(*rows, strict=True))
        for builder, position in zip(builders, keep, strict=True):
            builder.add(fields[position])
        del fields
    arrays = [builder.arrow() for builder in builders]
    labels = [f"c{i}" for i in range(len(builders))]  # positional: result names may repeat
    arrow_labels = [label for label, array in zip(labels, arrays, strict=True) if array is not None]
    table = pa.table([a for a in arrays if a is not None], names=arrow_labels)
    del arrays
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    for index, builder in enumerate(builders):
        if builder.objects is not None:
            frame.insert(index, labels[index], pd.Series(builder.objects, dtype=object))
    frame.columns = list(names)
    return frame


# --------------------------------------------------------------------------- errors


def _translate(exc: Any, url: sa.URL, engine: sa.Engine, settings: SqlSource.Settings,
               target: str) -> SkitflowError:
    """A driver error as a message a user can act on, without the password."""
    connection_error = translate_connection_error(exc, url, settings, target)
    if connection_error is not None:
        return connection_error
    orig = getattr(exc, "orig", None)
    text = redact(_first_line(str(orig if orig is not None else exc)), [url.password])
    low = text.lower()
    if match := (re.search(r'relation "([^"]+)" does not exist', text)
                 or re.search(r"no such table: (\S+)", text)):
        known: list[str] = []
        with contextlib.suppress(Exception):  # suggestions are best effort
            import sqlalchemy as sa

            with engine.connect() as conn:
                known = _table_names(sa.inspect(conn), None)
        hint = did_you_mean(match[1], known)
        return RemoteError(
            f"sql: the query failed: table `{match[1]}` does not exist in {target}"
            + (f"; {hint}" if hint else ""),
            hint=f"tables there: {', '.join(sorted(known)[:12]) or 'none'}",
        )
    if "read-only transaction" in low or "attempt to write a readonly" in low or "query_only" in low:
        return RemoteError(f"sql: the query tried to write to {target}: {text}",
                           hint="the sql source only reads; its transaction is read-only")
    if getattr(orig, "sqlstate", None) == "42601" or "syntax error" in low:
        reads = re.match(r"\s*(select|with|values|table|\()", settings.query or "select", re.I)
        return RemoteError(
            f"sql: the query is not valid SQL: {text}",
            hint="try the query in psql or your SQL client first" if reads else
            "the sql source runs a reading query (SELECT ..., WITH ... SELECT ...); it never writes",
        )
    return RemoteError(f"sql: the query failed on {target}: {text}")


SQL_STEPS: list[type[SourceStep]] = [SqlSource]
