"""Helpers shared by the commands: consoles and error printing."""

from __future__ import annotations

import contextlib
import re
import sys
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


def echo(text: str, *, err: bool = False) -> None:
    """Plain text and a newline to stdout (or stderr): no markup, emoji codes or wrapping; tabs
    expanded to 8 columns, so a caret under a quoted recipe line stays under its column.

    Messages, warnings and errors need nothing more; rich (about 20 ms to import, a tenth of
    `skitflow validate`) is for tables and live progress.
    """
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{text.expandtabs(8)}\n")
    stream.flush()


def print_error(error: SkitflowError) -> None:
    """Print every problem with the lines it points at (files are read here, at the edge),
    with any secret from the environment or in the quoted lines masked."""
    sources: dict[str, str] = {}
    for problem in error.problems:
        if problem.location and problem.location.file not in sources:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                sources[problem.location.file] = Path(problem.location.file).read_text(encoding="utf-8")
    echo(redact(render(error, sources)), err=True)
    count = len(error.problems)
    if count > 1:
        echo(f"\n{count} problems found", err=True)


def print_warnings(problems) -> None:
    for problem in problems:
        where = f"{problem.location}: " if problem.location else ""
        hint = f" ({problem.hint})" if problem.hint else ""
        echo(redact(f"warning: {where}{problem.message}{hint}"), err=True)


RECIPE_SUFFIXES = (".yaml", ".yml")


#: What makes a YAML file under a folder a recipe, and what marks a compiled KFP package.
_RECIPE_MARK = re.compile(r"""(?:^|[{,\s])["']?apiVersion["']?\s*:\s*["']?skitflow/""", re.M)
_PACKAGE_MARK = re.compile(r"^(?:pipelineInfo|deploymentSpec)\s*:", re.M)


def looks_like_recipe(path: Path) -> bool:
    """A cheap look at the text: `apiVersion: skitflow/...` and not a compiled package.

    Unreadable files count as recipes, so that loading them reports why.
    """
    from skitflow.util.limits import MAX_RECIPE_BYTES

    try:
        with path.open("rb") as handle:
            head = handle.read(MAX_RECIPE_BYTES).decode("utf-8", "replace")
    except OSError:
        return True
    return bool(_RECIPE_MARK.search(head)) and not _PACKAGE_MARK.search(head)


def find_recipes(paths: list[Path]) -> list[Path]:
    """Files as given, and every recipe among the *.yaml/*.yml under each folder, sorted.

    Other YAML under a folder (compiled packages, CI files) is skipped with a note; a file named
    on the command line is always loaded, so its mistakes are reported.
    """
    found: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(p for p in path.rglob("*") if p.suffix in RECIPE_SUFFIXES and p.is_file()):
                (found if looks_like_recipe(candidate) else skipped).append(candidate)
        elif path.exists():
            found.append(path)
        else:
            raise SkitflowError(f"`{path}` does not exist", hint="give a recipe file or a folder of recipes")
    if skipped:
        echo(f"note: skipped {len(skipped)} YAML file(s) that are not skitflow recipes "
             f"(no `apiVersion: skitflow/...`, or a compiled package): {', '.join(map(str, skipped))}",
             err=True)
    if not found:
        raise SkitflowError(f"no recipes (*.yaml) found in {', '.join(map(str, paths))}")
    return found
