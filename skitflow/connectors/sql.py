"""Connecting to a database through SQLAlchemy: shared by the `sql` source and the `sql` sink.

The database URL holds a password, so it never appears in a recipe or a compiled package: the
recipe names an environment variable (`url_env`) and the URL is read from it when the task runs
(on Kubeflow, a Kubernetes secret mapped to that variable with `secrets:`). Engines hold no pool
(one task, one connection). Connection faults are retried under the shared retry policy
(skitflow/util/retry.py), decided by codes, never by wording; driver errors become messages a
user can act on, with the password masked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from skitflow.errors import RemoteError, SkitflowError, StepFailed
from skitflow.util.redact import redact

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = [
    "TABLE_NAME", "ConnectionSettings", "create_engine", "database_url", "first_line", "is_transient",
    "scrub", "sqlstate", "translate_connection_error", "valid_env_name", "with_retries",
]

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: `table` or `schema.table`: a name, never SQL (it is quoted as an identifier where used).
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")

# SQLSTATEs worth a retry: connection exceptions (class 08), serialization failure, deadlock,
# admin / crash shutdown and "cannot connect now", too many connections.
_TRANSIENT_SQLSTATE_CLASSES = ("08",)
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})
# sqlite3's own result codes (it has no SQLSTATE): the database is busy or locked by a writer.
_SQLITE_BUSY_OR_LOCKED = frozenset({5, 6})

T = TypeVar("T")


class ConnectionSettings(Protocol):
    """The settings every SQL step has: where the URL is, how long to wait, how often to retry."""

    @property
    def url_env(self) -> str: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...


class Runtime(Protocol):
    """What a step's run context offers a connection: the environment and a log."""

    environ: Mapping[str, str]
    log: Any


def valid_env_name(value: str) -> str:
    """A `url_env` setting: the NAME of a variable; never echoed, since it may be the URL itself."""
    if not ENV_NAME.fullmatch(value):
        raise ValueError(
            "`url_env` is the NAME of the environment variable that holds the database "
            "URL (e.g. DATABASE_URL), not the URL; a URL with its password must never be "
            "written in a recipe"
        )
    return value


def database_url(settings: ConnectionSettings, ctx: Runtime) -> sa.URL:
    """The URL from the environment, with a driver that is installed."""
    import sqlalchemy as sa

    environ = ctx.environ or os.environ
    raw = environ.get(settings.url_env, "").strip()
    if not raw:
        raise StepFailed(
            f"sql: environment variable `{settings.url_env}` is not set",
            hint=f"export {settings.url_env}=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB (on "
            "Kubeflow, map a Kubernetes secret to it with `secrets:`)",
        )
    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError:  # its message repeats the URL, password and all
        raise StepFailed(
            f"sql: `{settings.url_env}` does not hold a valid SQLAlchemy URL",
            hint="expected e.g. postgresql+psycopg://USER:PASSWORD@HOST:5432/DB or "
            "sqlite:///path/to/file.db",
        ) from None
    if url.drivername in ("postgres", "postgresql") and not installed("psycopg2"):
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is what skitflow ships
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = url.database
        if not path.startswith("file:") and not os.path.exists(path):
            raise RemoteError(
                f"sql: the SQLite database file {os.path.abspath(path)} does not exist",
                hint=f"check the path in `{settings.url_env}` (sqlite:///relative/path or "
                "sqlite:////absolute/path)",
            )
    return url


def installed(module: str) -> bool:
    """Whether a module can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def create_engine(url: sa.URL, settings: ConnectionSettings, *,
                  transactional_ddl: bool = False) -> sa.Engine:
    """An engine without a pool, with the driver's connect timeout set."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    backend, driver = url.get_backend_name(), url.get_driver_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        connect_args = {"connect_timeout": max(1, round(settings.connect_timeout)),
                        "application_name": "skitflow"}
    elif backend == "sqlite":
        connect_args = {"timeout": settings.connect_timeout}
    elif backend in ("mysql", "mariadb"):
        connect_args = {"connect_timeout": max(1, round(settings.connect_timeout))}
    try:
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise StepFailed(
            f"sql: no database driver for `{url.drivername}` is installed ({first_line(str(exc))})",
            hint="install the driver into the image, or name an installed one in the URL, e.g. "
            "postgresql+psycopg://",
        ) from None
    if transactional_ddl and backend == "sqlite":
        _sqlite_transactional_ddl(engine)
    return engine


def _sqlite_transactional_ddl(engine: sa.Engine) -> None:
    """pysqlite begins a transaction only before INSERT/UPDATE/DELETE, so a CREATE or DROP would
    commit on its own; SQLAlchemy's documented remedy: BEGIN ourselves (a writer needs the whole
    write, table creation included, in one transaction)."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


def with_retries(action: Callable[[], T], retries: int, ctx: Runtime, target: str) -> T:
    """Run `action` under the shared retry policy; `retries` (the recipe's) sets the tries."""
    from skitflow.util.retry import RetryPolicy

    policy = RetryPolicy.from_env(ctx.environ).with_attempts(retries + 1)

    def report(retry: int, exc: BaseException, wait: float) -> None:
        reason = first_line(str(getattr(exc, "orig", exc)))
        ctx.log(f"sql: {target}: {reason}; retrying in {wait:.1f}s ({retry} of {retries})")

    return policy.run(action, transient=is_transient, on_retry=report)


def sqlstate(error: Any) -> str | None:
    """The driver's SQLSTATE: psycopg 3 `sqlstate`, psycopg2 `pgcode`; None if it gave none."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return str(code) if code else None


def is_transient(exc: BaseException) -> bool:
    """A fault worth another try, decided by codes, never by the wording of a message.

    SQLAlchemy's `connection_invalidated` (its dialect saw the connection drop), else the
    SQLSTATE class. A failure while connecting carries no SQLSTATE (libpq reports the server's
    refusal as text only): it is transient unless the server got as far as checking a password
    (psycopg's `pgconn.used_password`), which means a refusal (credentials, database) that a retry
    would only repeat. SQLite: busy or locked.
    """
    import sqlalchemy as sa

    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = sqlstate(orig)
    if code:
        return code.startswith(_TRANSIENT_SQLSTATE_CLASSES) or code in _TRANSIENT_SQLSTATES
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return (sqlite_code & 0xFF) in _SQLITE_BUSY_OR_LOCKED  # extended codes keep the primary
    connecting = exc.statement is None
    pgconn = getattr(orig, "pgconn", None)
    answered = bool(getattr(pgconn, "used_password", False))
    return connecting and isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) \
        and not answered


def first_line(text: str) -> str:
    """The first line of a driver message (the rest repeats the statement)."""
    return text.strip().splitlines()[0] if text.strip() else text


def scrub(text: str, url: sa.URL) -> str:
    """Mask the password wherever a driver message might repeat it (plain or percent-encoded),
    and whatever else the one redactor masks (secret-looking values of the environment)."""
    from urllib.parse import quote, quote_plus

    password = str(url.password) if url.password else None
    forms = [password, quote(password, safe=""), quote_plus(password)] if password else []
    return redact(text, forms)


def translate_connection_error(exc: Any, url: sa.URL, settings: ConnectionSettings,
                               target: str) -> SkitflowError | None:
    """A refused login, missing database or user, or unreachable server as a message a user can
    act on (password masked); None when the error is about the statement, not the connection."""
    orig = getattr(exc, "orig", None)
    text = scrub(first_line(str(orig if orig is not None else exc)), url)
    low = text.lower()
    env = f"`{settings.url_env}`"
    if any(w in low for w in ("password authentication failed", "authentication failed",
                              "no password supplied", "access denied for user")):
        return RemoteError(
            f"sql: {target} refused the credentials of user `{url.username}`; check the user "
            f"name and password in {env}",
            hint="the password is part of the URL: postgresql+psycopg://USER:PASSWORD@HOST/DB "
            "(special characters percent-encoded)",
        )
    if match := re.search(r'database "([^"]+)" does not exist', text):
        return RemoteError(
            f"sql: database `{match[1]}` does not exist on {url.host}:{url.port or ''}",
            hint=f"check the database name at the end of the URL in {env}",
        )
    if match := re.search(r'role "([^"]+)" does not exist', text):
        return RemoteError(f"sql: user `{match[1]}` does not exist at {target}",
                           hint=f"check the user name in the URL in {env}")
    if is_transient(exc) or "could not translate host name" in low:
        tries = settings.retries + 1
        return RemoteError(
            f"sql: cannot connect to {target}: {text}"
            + (f" (tried {tries} times)" if tries > 1 else ""),
            hint=f"check that the database server runs and that {env} names the right host and "
            "port",
        )
    return None
