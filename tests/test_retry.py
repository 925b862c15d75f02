"""The one retry policy: its waits, its limits, its environment, and the libraries it configures.

Pure tests (a fake clock, no sleeping); the clients' real retries against real servers are in
test_submit.py, test_sql.py, test_labelstudio.py and test_s3.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from skitflow.errors import SkitflowError
from skitflow.util.retry import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_within_jitter_and_are_capped() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=4.0)
    for retry, expected in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 4.0)):
        waits = [policy.delay(retry) for _ in range(300)]
        assert 0.9 * expected <= min(waits) and max(waits) <= 1.1 * expected, (retry, waits[:3])
        assert len(set(waits)) > 1  # jittered
    assert 0.9 * 3.0 <= policy.delay(1, retry_after=3.0) <= 1.1 * 3.0  # Retry-After honoured
    assert policy.delay(1, retry_after=600.0) <= 1.1 * 4.0  # ... but never beyond max_backoff


def test_backoff_stops_after_the_attempts_and_at_the_deadline() -> None:
    clock = Clock()
    backoff = RetryPolicy(attempts=3, backoff=1.0, deadline=100.0).start(clock)
    backoff.tried()
    assert backoff.next_wait() is not None
    backoff.tried()
    assert backoff.next_wait(immediately=True) == 0.0
    backoff.tried()
    assert backoff.next_wait() is None  # three tries in all

    late = RetryPolicy(attempts=10, backoff=1.0, deadline=5.0).start(clock)
    late.tried()
    clock.now += 4.5
    assert late.next_wait() is None  # the wait would end past the deadline
    assert late.elapsed == pytest.approx(4.5)


def test_run_retries_only_what_is_transient() -> None:
    policy = RetryPolicy(attempts=4, backoff=0.25)
    calls: list[int] = []
    slept: list[float] = []
    heard: list[tuple[int, str, float]] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("dropped")
        return "done"

    result = policy.run(flaky, transient=lambda exc: isinstance(exc, ConnectionError),
                        on_retry=lambda n, exc, wait: heard.append((n, str(exc), wait)),
                        sleep=slept.append)
    assert result == "done" and len(calls) == 3
    assert [n for n, _, _ in heard] == [1, 2] and slept == [w for _, _, w in heard]
    assert 0.9 * 0.25 <= slept[0] <= 1.1 * 0.25 and 0.9 * 0.5 <= slept[1] <= 1.1 * 0.5

    def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not a fault")

    calls.clear()
    with pytest.raises(ValueError, match="a bug"):
        policy.run(broken, transient=lambda exc: isinstance(exc, ConnectionError), sleep=slept.append)
    assert len(calls) == 1

    def always() -> None:
        calls.append(1)
        raise ConnectionError("down")

    calls.clear()
    with pytest.raises(ConnectionError, match="down"):  # the last fault, as it was
        policy.run(always, transient=lambda exc: True, sleep=lambda _: None)
    assert len(calls) == 4


def test_environment_overrides_are_the_same_for_every_client() -> None:
    environ = {"SKITFLOW_RETRY_ATTEMPTS": "7", "SKITFLOW_RETRY_BACKOFF": "0.01",
               "SKITFLOW_RETRY_MAX_BACKOFF": "2", "SKITFLOW_RETRY_DEADLINE": "30",
               "SKITFLOW_REQUEST_TIMEOUT": "9"}
    policy = RetryPolicy.from_env(environ)
    assert policy == RetryPolicy(attempts=7, backoff=0.01, max_backoff=2.0, deadline=30.0,
                                 timeout=9.0)
    assert RetryPolicy.from_env({}) == RetryPolicy()
    assert RetryPolicy.from_env({"AWS_MAX_ATTEMPTS": "2"}, extra={"AWS_MAX_ATTEMPTS": "attempts"}
                                ).attempts == 2
    assert policy.with_attempts(3).attempts == 3 and policy.with_attempts(0).attempts == 1
    with pytest.raises(SkitflowError, match="SKITFLOW_RETRY_ATTEMPTS=`many` is not a number"):
        RetryPolicy.from_env({"SKITFLOW_RETRY_ATTEMPTS": "many"})
    with pytest.raises(SkitflowError, match="must be positive"):
        RetryPolicy.from_env({"SKITFLOW_RETRY_BACKOFF": "-1"})


def test_urllib3_retry_follows_the_policy() -> None:
    from urllib3.exceptions import MaxRetryError, ProtocolError

    policy = RetryPolicy(attempts=4, backoff=0.5, max_backoff=3.0, deadline=60.0)
    retry = policy.urllib3_retry({503}, methods=("GET",))
    assert (retry.total, retry.connect, retry.read, retry.status) == (3, 3, 3, 3)
    assert retry.retry_after_max == 3.0 and retry.respect_retry_after_header
    assert retry.get_backoff_time() == 0.0
    once = retry.increment("GET", "/x", error=ProtocolError("dropped"))
    assert 0.45 <= once.get_backoff_time() <= 0.55  # the policy's first wait, not urllib3's 0
    twice = once.increment("GET", "/x", error=ProtocolError("dropped"))
    assert 0.9 <= twice.get_backoff_time() <= 1.1

    impatient = RetryPolicy(attempts=10, backoff=5.0, deadline=1.0).urllib3_retry({503})
    with pytest.raises(MaxRetryError):  # the first wait would already pass the deadline
        impatient.increment("GET", "/x", error=ProtocolError("dropped"))


def test_botocore_config_from_the_policy() -> None:
    from botocore.config import Config

    retries: dict[str, Any] = RetryPolicy(attempts=3).botocore_retries()
    assert retries == {"total_max_attempts": 3, "mode": "standard"}
    assert Config(retries=retries).retries["total_max_attempts"] == 3


def test_sql_faults_are_told_apart_by_sqlstate_not_by_message() -> None:
    import sqlite3

    import psycopg
    import sqlalchemy as sa

    from skitflow.connectors.sql import is_transient as _is_transient

    def wrapped(orig: BaseException, statement: str | None = "SELECT 1") -> sa.exc.DBAPIError:
        return sa.exc.DBAPIError.instance(statement, None, orig, psycopg.Error)

    for code in ("08006", "08001", "40001", "40P01", "57P01", "57P02", "57P03", "53300"):
        error = psycopg.errors.lookup(code)("any words at all")
        assert _is_transient(wrapped(error)), code
    for code in ("42601", "42P01", "28P01", "3D000", "25006"):
        error = psycopg.errors.lookup(code)("connection refused, timeout")  # words do not count
        assert not _is_transient(wrapped(error)), code
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # type: ignore[attr-defined]
    assert _is_transient(sa.exc.DBAPIError.instance("SELECT 1", None, locked, sqlite3.Error))
    missing = sqlite3.OperationalError("timeout: no such table")
    missing.sqlite_errorcode = 1  # type: ignore[attr-defined]
    assert not _is_transient(sa.exc.DBAPIError.instance("SELECT 1", None, missing, sqlite3.Error))
    assert not _is_transient(ValueError("connection refused"))
