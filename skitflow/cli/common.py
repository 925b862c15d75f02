"""Helpers shared by the commands: consoles and error printing."""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from skitflow.errors import SkitflowError, render
from skitflow.util.redact import redact

if TYPE_CHECKING:
    from rich.console import Console


@cache
def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@cache
def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(error: SkitflowError) -> None:
    """Print every problem with the lines it points at (files are read here, at the edge),
    with any secret from the environment or in the quoted lines masked."""
    sources: dict[str, str] = {}
    for problem in error.problems:
        if problem.location and problem.location.file not in sources:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                sources[problem.location.file] = Path(problem.location.file).read_text(encoding="utf-8")
    stderr().print(redact(render(error, sources)), markup=False)
    count = len(error.problems)
    if count > 1:
        stderr().print(f"\n{count} problems found", markup=False)


def print_warnings(problems) -> None:
    for problem in problems:
        where = f"{problem.location}: " if problem.location else ""
        hint = f" ({problem.hint})" if problem.hint else ""
        stderr().print(redact(f"warning: {where}{problem.message}{hint}"), markup=False)
