"""Scripted faults for the next matching requests: error statuses, slowness, dropped connections.

Faults model trouble in front of the API server (proxy, load balancer,
restarting pod): an error or dropped fault is decided before the request
reaches any handler, so a faulted POST never creates a pipeline, version, run
or schedule, and a client retry cannot produce a duplicate.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

DEFAULT_FAULT_MESSAGE = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)


@dataclass
class Fault:
    """One scripted fault; ``hits`` counts how often it fired."""

    path_regex: str
    status: int | None = 503
    times: int | None = 1
    delay: float = 0.0
    drop: bool = False
    method: str | None = None
    message: str = DEFAULT_FAULT_MESSAGE
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path_regex)
        if self.method is not None:
            self.method = self.method.upper()

    @property
    def exhausted(self) -> bool:
        """True once the fault has fired ``times`` times (never for ``times=None``)."""
        return self.times is not None and self.hits >= self.times

    @property
    def passes_through(self) -> bool:
        """A pure delay: after sleeping, the request is handled normally (and may create state)."""
        return not self.drop and self.status is None

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        if self.exhausted or (self.method is not None and self.method != method.upper()):
            return False
        return self._pattern.search(path) is not None


class FaultInjector:
    """Thread-safe list of scripted faults; the first live match wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        path_regex: str,
        *,
        status: int | None = 503,
        times: int | None = 1,
        delay: float = 0.0,
        drop: bool = False,
        method: str | None = None,
        message: str = DEFAULT_FAULT_MESSAGE,
    ) -> Fault:
        """Script a fault for the next ``times`` requests whose path matches ``path_regex`` (re.search).

        - ``status=503`` (default): answer with that status and a JSON error; no state change.
        - ``drop=True``: read the request, then close the socket without any response.
        - ``delay=s``: sleep first; with ``status=None`` and no drop the request is then
          handled normally (a slow but successful response).
        - ``times=None``: fire forever; ``method`` restricts to one HTTP method.
        """
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if status is None and not drop and delay <= 0:
            raise ValueError("a fault needs a status, drop=True or a delay")
        fault = Fault(
            path_regex,
            status=status,
            times=times,
            delay=delay,
            drop=drop,
            method=method,
            message=message,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Claim the first live fault for a request (counts a hit)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def clear(self) -> None:
        """Remove all scripted faults."""
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> list[Fault]:
        """Faults that can still fire."""
        with self._lock:
            return [fault for fault in self._faults if not fault.exhausted]
