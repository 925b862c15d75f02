"""The `skitflow` command line: thin typer commands, one module each.

Heavy imports (kfp, pandas) happen inside the commands that need them, so `skitflow validate`
stays fast enough to run on every save. A SkitflowError is printed without a traceback and sets
the exit code (2: invalid input, 3: `run`'s gate refused the model, 1: anything else
failed).

`skitflow validate FILE...` with no options, the command run on every save, skips building the
typer application (importing typer and building its parameter adapters is about a third of that
command's time); anything else, `--help` included, goes through typer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    if is_plain_validate(argv):
        code = run_plain_validate([Path(arg) for arg in argv[1:]])
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe: what was printed is lost
            code = code or 1
        # nothing is left to clean up, and tearing down the interpreter (every module and
        # pydantic validator) would cost a sixth of the command
        os._exit(code)
    from skitflow.cli.app import app

    app()


def is_plain_validate(argv: list[str]) -> bool:
    """`validate` followed only by paths: what the fast path serves exactly as typer would."""
    return len(argv) > 1 and argv[0] == "validate" and not any(arg.startswith("-") for arg in argv[1:])


def run_plain_validate(paths: list[Path]) -> int:
    """`skitflow validate PATHS` without typer: the same checks, output and exit codes."""
    from skitflow.errors import SkitflowError
    from skitflow.util.imports import gc_paused

    try:
        # a recipe's size is bounded (util.limits), so the collector has nothing to reclaim in
        # time: paused, it does not scan every module, class and validator made on the way
        with gc_paused():
            from skitflow.cli import common
            from skitflow.cli.validate import validate_recipes

            validate_recipes(paths)
    except SkitflowError as exc:
        common.print_error(exc)
        return exc.exit_code
    except (KeyboardInterrupt, EOFError):
        print("\nAborted!", file=sys.stderr)  # what click prints
        return 1
    return 0
