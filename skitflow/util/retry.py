"""One retry policy for every client skitflow has: Kubeflow, SQL, Label Studio and S3.

Each client decides *what* is transient (an HTTP 503, a dropped connection, a SQLSTATE of class
08, a botocore throttle); this module decides *how* to retry, the same way for all of them:
up to ``attempts`` tries in all, waits doubling from ``backoff`` up to ``max_backoff`` with
±10 % jitter, a server's ``Retry-After`` honoured (capped at ``max_backoff``), and no new try
once ``deadline`` seconds have passed since the first. Every request also has a ``timeout``.

The libraries the clients already use do the retrying where they can, configured from this one
policy: :meth:`RetryPolicy.urllib3_retry` for requests/urllib3 (Label Studio) and
:meth:`RetryPolicy.botocore_retries` for boto3 (S3; botocore keeps its own backoff curve). A loop
is ours only where a library cannot know what is safe to repeat: a Kubeflow find-or-create and a
whole SQL read (:meth:`RetryPolicy.run`, :class:`Backoff`).

Environment overrides, read by :meth:`RetryPolicy.from_env` for every client alike:
``SKITFLOW_RETRY_ATTEMPTS``, ``SKITFLOW_RETRY_BACKOFF`` (first wait, seconds),
``SKITFLOW_RETRY_MAX_BACKOFF``, ``SKITFLOW_RETRY_DEADLINE`` and ``SKITFLOW_REQUEST_TIMEOUT``
(``SKITFLOW_KFP_TIMEOUT`` is still read, for Kubeflow, as before).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from skitflow.errors import SkitflowError

if TYPE_CHECKING:
    from urllib3.util.retry import Retry

__all__ = ["Backoff", "RetryPolicy", "no_urllib3_retries"]

T = TypeVar("T")

JITTER = 0.1  # each wait is stretched or shrunk by up to 10 %, so clients do not retry in step

#: variable -> (field, type); one table, so every client reads the same names
ENVIRONMENT = {
    "SKITFLOW_RETRY_ATTEMPTS": ("attempts", int),
    "SKITFLOW_RETRY_BACKOFF": ("backoff", float),
    "SKITFLOW_RETRY_MAX_BACKOFF": ("max_backoff", float),
    "SKITFLOW_RETRY_DEADLINE": ("deadline", float),
    "SKITFLOW_REQUEST_TIMEOUT": ("timeout", float),
}


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient faults are retried; each request also has a timeout."""

    attempts: int = 5  # tries in all, the first included
    backoff: float = 0.5  # the first wait, in seconds; each next one doubles
    max_backoff: float = 8.0  # no wait is longer (a server's Retry-After included)
    deadline: float = 300.0  # no new try starts this many seconds after the first
    timeout: float = 60.0  # one request's read timeout

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 extra: Mapping[str, str] | None = None) -> RetryPolicy:
        """The defaults, overridden by SKITFLOW_RETRY_* (and `extra`: variable -> field name)."""
        environ = os.environ if environ is None else environ
        table = dict(ENVIRONMENT)
        for name, field_name in (extra or {}).items():
            table[name] = (field_name, ENVIRONMENT_TYPES[field_name])
        changes: dict[str, Any] = {}
        for name, (field_name, kind) in table.items():
            raw = (environ.get(name) or "").strip()
            if raw:
                changes[field_name] = _number(name, raw, kind)
        return cls(**changes)

    def with_attempts(self, attempts: int) -> RetryPolicy:
        """This policy with another number of tries (a client's own setting, e.g. `retries:`)."""
        return dataclasses.replace(self, attempts=max(1, attempts))

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Wait before retry number `retry` (1-based): doubling, capped, ±10 % jitter."""
        wait = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff))
        return wait * random.uniform(1 - JITTER, 1 + JITTER)

    def start(self, clock: Callable[[], float] = time.monotonic) -> Backoff:
        """The retry state of one operation: count tries, then ask :meth:`Backoff.next_wait`."""
        return Backoff(self, clock)

    def run(self, action: Callable[[], T], *, transient: Callable[[BaseException], bool],
            on_retry: Callable[[int, BaseException, float], None] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> T:
        """`action()`, tried again after a transient fault; the last fault is raised as it was.

        `on_retry(retry, error, wait)` hears of each retry before its wait.
        """
        backoff = self.start()
        while True:
            backoff.tried()
            try:
                return action()
            except Exception as exc:
                wait = backoff.next_wait() if transient(exc) else None
                if wait is None:
                    raise
                if on_retry is not None:
                    on_retry(backoff.tries, exc, wait)
                sleep(wait)

    # -- the libraries' own retry machinery, configured from this policy ------------------------

    def urllib3_retry(self, statuses: Collection[int],
                      methods: Collection[str] = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
                      ) -> Retry:
        """urllib3's Retry with this policy's tries, waits, Retry-After cap and deadline.

        Connection failures are retried for every method (nothing was sent); read errors and
        `statuses` only for the idempotent `methods`.
        """
        retries = self.attempts - 1
        retry: Retry = _policy_retry_class()(
            total=retries, connect=retries, read=retries, status=retries, other=0,
            status_forcelist=frozenset(statuses), allowed_methods=frozenset(methods),
            backoff_max=self.max_backoff, retry_after_max=math.ceil(self.max_backoff),
            respect_retry_after_header=True, raise_on_status=False, policy=self,
        )
        return retry

    def botocore_retries(self) -> dict[str, Any]:
        """`Config(retries=...)` for boto3: this policy's tries, botocore's "standard" backoff.

        botocore's backoff curve (exponential with full jitter, capped at 20 s) is not
        configurable; its per-request timeouts are set from :attr:`timeout` by the caller.
        """
        return {"total_max_attempts": self.attempts, "mode": "standard"}


ENVIRONMENT_TYPES = {field_name: kind for field_name, kind in ENVIRONMENT.values()}


class Backoff:
    """The retry state of one operation under a :class:`RetryPolicy`."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.started = clock()
        self.tries = 0

    def tried(self) -> None:
        """Count one try (call it before each one)."""
        self.tries += 1

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def next_wait(self, retry_after: float | None = None, *, immediately: bool = False
                  ) -> float | None:
        """How long to wait before the next try, or None when the policy says give up."""
        if self.tries >= self.policy.attempts:
            return None
        wait = 0.0 if immediately else self.policy.delay(self.tries, retry_after)
        if self.elapsed + wait > self.policy.deadline:
            return None
        return wait


def no_urllib3_retries() -> Retry:
    """urllib3 retrying nothing and following no redirect: the caller's loop retries instead."""
    from urllib3.util.retry import Retry

    return Retry(total=0, redirect=False, raise_on_status=False)


_RETRY_CLASS: list[type] = []


def _policy_retry_class() -> type[Any]:
    """urllib3's Retry waiting as the policy says and giving up at its deadline."""
    if _RETRY_CLASS:
        return _RETRY_CLASS[0]
    from urllib3.exceptions import MaxRetryError
    from urllib3.util.retry import Retry

    class PolicyRetry(Retry):
        def __init__(self, *args: Any, policy: RetryPolicy, started: float | None = None,
                     **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.policy = policy
            self.started = started

        def new(self, **kw: Any) -> PolicyRetry:
            kw.setdefault("policy", self.policy)
            kw.setdefault("started", self.started if self.started is not None
                          else time.monotonic())
            return super().new(**kw)

        def get_backoff_time(self) -> float:  # urllib3 waits 0 s before its first retry
            errors = sum(1 for entry in self.history if entry.redirect_location is None)
            return self.policy.delay(errors) if errors else 0.0

        def increment(self, *args: Any, **kwargs: Any) -> PolicyRetry:
            retry = super().increment(*args, **kwargs)
            waited = time.monotonic() - (retry.started or time.monotonic())
            if waited + retry.get_backoff_time() > self.policy.deadline:
                error = kwargs.get("error") or (args[3] if len(args) > 3 else None)
                pool = kwargs.get("_pool")
                raise MaxRetryError(pool, kwargs.get("url") or "", error)  # type: ignore[arg-type]
            return retry

    _RETRY_CLASS.append(PolicyRetry)
    return PolicyRetry


def _number(name: str, raw: str, kind: type) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise SkitflowError(f"{name}=`{raw}` is not a number") from None
    if value < 0 or (kind is int and value < 1):
        raise SkitflowError(f"{name} must be positive, got {raw}")
    return value
