"""Context manager and pytest fixture that run the KFP test server for one test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from .server import KfpTestServer


@contextmanager
def running_kfp_server(**options: Any) -> Iterator[KfpTestServer]:
    """Start a :class:`KfpTestServer` on a free loopback port in a background thread.

    Yields the server (``.url``, ``.state``, ``.faults``); it is shut down on exit
    even if the test fails.  ``options`` are the server's constructor options.
    """
    options.setdefault("port", 0)
    server = KfpTestServer(**options).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kfp_server() -> Iterator[KfpTestServer]:
    """Pytest fixture: a fresh default server per test (``pytest_plugins = ["tests.kfp_server.fixture"]``)."""
    with running_kfp_server() as server:
        yield server
