"""read_ahead, write_behind and side_by_side: order, bounded look-ahead, errors where the caller expects
them, and no thread or open generator left behind (skitflow.util.overlap)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from skitflow.util.overlap import read_ahead, side_by_side, write_behind

WAIT = 10.0  # seconds: only reached when the behaviour under test is broken


class Source:
    """A generator of 0..n-1 that records how far it got and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.made: list[int] = []
        self.closed = False
        self.started = {i: threading.Event() for i in range(n + 1)}

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.started[i].set()
                if i == self.fail_at:
                    raise ValueError(f"bad chunk {i}")
                self.made.append(i)
                yield i
            self.started[self.n].set()
        finally:
            self.closed = True


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("skitflow-")}


def test_read_ahead_gives_every_item_in_order_and_stops_its_thread() -> None:
    source = Source(50)
    with read_ahead(source) as items:
        assert list(items) == list(range(50))
    assert source.closed and not _threads()


def test_the_next_item_is_made_while_the_caller_holds_this_one() -> None:
    source = Source(3)
    with read_ahead(source) as items:
        first = next(items)
        # the caller has not asked for item 1, yet the source is already making it
        assert source.started[1].wait(WAIT)
        assert first == 0
        assert list(items) == [1, 2]


def test_read_ahead_is_at_most_one_item_ahead() -> None:
    source = Source(20)
    with read_ahead(source) as items:
        for taken, item in enumerate(items, start=1):
            assert item == taken - 1
            # taken by the caller, one waiting in the queue, one being made at most
            assert len(source.made) <= taken + 2


def test_a_source_error_reaches_the_caller_after_the_items_before_it() -> None:
    source = Source(10, fail_at=4)
    got = []
    with pytest.raises(ValueError, match="bad chunk 4"), read_ahead(source) as items:
        for item in items:
            got.append(item)
    assert got == [0, 1, 2, 3]
    assert source.closed and not _threads()


def test_leaving_early_stops_the_source_and_closes_it() -> None:
    source = Source(1000)
    with pytest.raises(KeyError), read_ahead(source) as items:
        next(items)
        raise KeyError("the caller failed")
    assert source.closed and not _threads()
    assert len(source.made) <= 3  # it did not read on to the end


def test_write_behind_writes_in_order_and_waits_on_leaving() -> None:
    written: list[int] = []
    release = threading.Event()

    def write(item: int) -> None:
        if item == 0:
            assert release.wait(WAIT)
        written.append(item)

    with write_behind(write) as write_later:
        write_later(0)
        assert written == []  # the call returned before the write ran
        release.set()
        for item in range(1, 10):
            write_later(item)
    assert written == list(range(10)) and not _threads()


def test_a_write_error_is_raised_at_the_next_write() -> None:
    written: list[int] = []

    def write(item: int) -> None:
        if item == 2:
            raise OSError("disk full")
        written.append(item)

    with pytest.raises(OSError, match="disk full"), write_behind(write) as write_later:
        for item in range(10):
            write_later(item)
    assert written == [0, 1]
    assert not _threads()


def test_a_write_error_of_the_last_write_is_raised_on_leaving() -> None:
    def write(item: int) -> None:
        raise OSError(f"cannot write {item}")

    with pytest.raises(OSError, match="cannot write 0"), write_behind(write) as write_later:
        write_later(0)


def test_the_callers_error_wins_and_the_pending_write_finishes_first() -> None:
    finished = threading.Event()
    release = threading.Event()

    def write(_item: int) -> None:
        assert release.wait(WAIT)
        finished.set()
        raise OSError("the write failed too")

    with pytest.raises(KeyError), write_behind(write) as write_later:
        write_later(0)
        release.set()
        raise KeyError("the caller failed")
    assert finished.is_set() and not _threads()


def test_side_by_side_runs_both_at_once_and_returns_both_results() -> None:
    started = threading.Event()

    def background() -> str:
        started.set()
        return "digest"

    def foreground() -> str:
        assert started.wait(WAIT)  # the background ran while this one was running
        return "rows"

    assert side_by_side(background, foreground) == ("digest", "rows")
    assert not _threads()


def test_side_by_side_raises_the_foregrounds_error_after_both_finished() -> None:
    finished = threading.Event()
    release = threading.Event()

    def background() -> None:
        assert release.wait(WAIT)
        finished.set()
        raise OSError("the background failed too")

    def foreground() -> None:
        release.set()
        raise KeyError("the foreground failed")

    with pytest.raises(KeyError):
        side_by_side(background, foreground)
    assert finished.is_set() and not _threads()


def test_side_by_side_raises_the_backgrounds_error() -> None:
    def background() -> None:
        raise OSError("cannot write test")

    with pytest.raises(OSError, match="cannot write test"):
        side_by_side(background, lambda: "train written")
