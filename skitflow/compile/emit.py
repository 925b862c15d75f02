"""Writing packages to disk: atomically (temp file, fsync, rename), so a failed or interrupted
compile never leaves a partial package behind."""

from __future__ import annotations

import os
from pathlib import Path

from skitflow.util.atomic import write_text


def write_package(path: str | os.PathLike[str], text: str) -> Path:
    """Write a compiled package's text to `path`; readers see the old file or the whole new one."""
    return write_text(path, text)
