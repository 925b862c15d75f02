"""Importing many modules at once, cheaply."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run a burst of imports with the cyclic garbage collector paused, then freeze what they made.

    Imports create many long-lived objects (modules, classes, pydantic validators) and few cycles
    worth collecting; without the pause the collector scans them again and again while they are
    built. Frozen, they are never scanned again, which also makes later collections and the
    interpreter's exit cheaper. Nested uses leave the collector as the outermost found it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
