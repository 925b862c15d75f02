"""Overlapping I/O and C-level work with the work of the current thread, on a second core.

The CSV parser, the Parquet reader and writer, pyarrow's kernels and hashlib spend most of
their time in C code that releases the GIL, so on a machine with a second core some of a
task's work can run beside the rest:

- `read_ahead` and `write_behind`: a streamed data-prep task parses the next chunk, and writes
  the last one, while its transforms work on the current one (the 1,000,000-row benchmark's
  data prep: 0.82 s -> 0.58 s). Both keep order and hold at most one chunk beyond the one being
  worked on, so memory stays bounded by the chunk size. An error on either side reaches the
  caller as if nothing ran in the background: the reader's at the next chunk, the writer's at
  the next write or on leaving the block.
- `side_by_side`: two independent pieces of one task at once (the train rows' digest beside
  the preprocessing chain's fit; the test rows beside the train rows in the split).

Whatever happens, the background thread has stopped when a helper returns or raises.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")

_DONE = object()
_POLL_SECONDS = 0.05  # how often a blocked reader checks whether the caller has gone


class Ahead(Iterator[T]):
    """The items `read_ahead` hands over, and `seconds`: the time its thread spent making them
    (what the source cost, which the caller's wait for each item no longer shows)."""

    def __init__(self, ready: queue.Queue[Any]) -> None:
        self._ready = ready
        self._done = False
        self.seconds = 0.0

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._ready.get()
        if item is _DONE:
            self._done = True
            raise StopIteration
        if isinstance(item, _Raised):
            self._done = True
            raise item.error
        return item  # type: ignore[no-any-return]


@contextlib.contextmanager
def read_ahead(items: Iterable[T]) -> Iterator[Ahead[T]]:
    """`items`, produced one step ahead by a background thread (which also closes them)."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()
    ahead: Ahead[T] = Ahead(ready)

    def hand_over(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            while True:
                started = time.perf_counter()
                item = next(source, _DONE)
                ahead.seconds += time.perf_counter() - started
                if item is _DONE:
                    break
                if not hand_over(item) or stop.is_set():
                    return
            hand_over(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            hand_over(_Raised(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator's files are closed by the thread that ran it

    producer = threading.Thread(target=produce, name="skitflow-read-ahead", daemon=True)
    producer.start()
    try:
        yield ahead
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            ready.get_nowait()  # a reader blocked on a full queue sees `stop` at once
        producer.join()


@contextlib.contextmanager
def write_behind(write: Callable[[T], None]) -> Iterator[Callable[[T], None]]:
    """A `write` that returns at once and runs in a background thread, one call at a time and
    in order. Each call first waits for the previous one (raising its error); leaving the block
    waits for the last one."""
    pending: list[Future[None]] = []

    def submit(item: T) -> None:
        if pending:
            pending.pop().result()
        pending.append(pool.submit(write, item))

    with ThreadPoolExecutor(1, thread_name_prefix="skitflow-write-behind") as pool:
        try:
            yield submit
        except BaseException:
            for future in pending:  # the caller's error wins; the write only has to finish
                with contextlib.suppress(BaseException):
                    future.result()
            raise
        for future in pending:
            future.result()


def side_by_side(background: Callable[[], A], foreground: Callable[[], B]) -> tuple[A, B]:
    """`background()` on a second thread while `foreground()` runs on this one; both results.

    Worth it where at least one of them spends its time in C code that releases the GIL
    (pyarrow, hashlib, numpy's take). The foreground's error wins; either way both have
    finished when this returns or raises.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="skitflow-side-by-side") as pool:
        pending = pool.submit(background)
        try:
            here = foreground()
        except BaseException:
            with contextlib.suppress(BaseException):
                pending.result()
            raise
        return pending.result(), here


class _Raised:
    """An exception of the reader's thread, on its way to the caller's."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
