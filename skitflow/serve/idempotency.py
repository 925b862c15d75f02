"""`Idempotency-Key`: the same key returns the first run instead of starting another.

A key is claimed before anything is sent to Kubeflow, under a lock, so two requests racing with
the same key share one submission (the second waits for the first's outcome). A key whose
submission failed is forgotten, so the client may try again with it. The store is bounded in size
(oldest entries go first) and entries expire after a TTL. One process holds it: run one service
process per store (a restart forgets the keys; Kubeflow keeps the runs).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_KEY_LENGTH = 255


class KeyReused(Exception):
    """The key was used before for a different request (another recipe or other parameters)."""


@dataclass
class Entry:
    fingerprint: str
    created: float
    result: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class IdempotencyStore:
    """key -> the first request's outcome (a Future), bounded and expiring; thread-safe."""

    def __init__(self, ttl: float = 24 * 3600, capacity: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.capacity, self.clock = ttl, capacity, clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, fingerprint: str) -> tuple[Entry, bool]:
        """The entry for `key` and whether this caller created it (and so must fill it)."""
        with self._lock:
            now = self.clock()
            while self._entries:
                oldest = next(iter(self._entries.values()))
                if now - oldest.created <= self.ttl:
                    break
                self._entries.popitem(last=False)
            entry = self._entries.get(key)
            if entry is not None:
                if entry.fingerprint != fingerprint:
                    raise KeyReused(key)
                return entry, False
            entry = Entry(fingerprint, now)
            self._entries[key] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry, True

    def forget(self, key: str, entry: Entry) -> None:
        """Drop a failed submission's key (only if it still maps to that entry)."""
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
