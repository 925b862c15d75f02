"""`skitflow run`: compile a recipe and execute that package on this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

from skitflow.cli.common import print_warnings

_ICONS = {"running": "->", "succeeded": "ok", "failed": "!!", "cached": "==", "skipped": "--",
          "not run": "xx", "interrupted": "^C"}


def run(
    recipe: Path = typer.Argument(..., help="The recipe to run."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE; lists/dicts as JSON or YAML."),
    params_file: Path | None = typer.Option(None, "--params-file", help="YAML/JSON file of parameter values."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default: a new folder under runs/)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse results of unchanged finished tasks."),
    cache_dir: Path = typer.Option(Path("runs/.cache"), "--cache-dir", help="Where finished tasks are cached."),
    jobs: str | None = typer.Option(None, "--jobs", "-j", help="Tasks run at once: independent tasks and "
                                    "matrix branches in parallel (default: the number of cores; 1: one at a time)."),
) -> None:
    """Run a recipe end to end on this machine (no cluster, no Docker).

    Exit codes: 0 the run succeeded (and its gate passed), 1 a task failed, 2 invalid recipe or
    parameters, 3 every task ran but the gate refused the model (it was not published).

    Examples:

    \b
      skitflow run examples/tickets.yaml
      skitflow run examples/tickets.yaml -p test_size=0.3 --no-cache
      skitflow run examples/tickets.yaml --jobs 1
    """
    task_slots = _jobs(jobs)
    from skitflow.run import task_processes

    task_processes.start_warm_worker()  # its imports (about 0.4 s) overlap compiling the recipe
    try:
        _run(recipe, param, params_file, out, cache_dir if cache else None, task_slots)
    finally:
        task_processes.stop_warm_worker()  # a no-op after a run (which stops it itself)


def _run(recipe: Path, param: list[str], params_file: Path | None, out: Path | None,
         cache_dir: Path | None, task_slots: int) -> None:
    from skitflow.api import compile_recipe
    from skitflow.recipe.loader import load_recipe_file
    from skitflow.recipe.parameters import parse_assignments, read_params_file, resolve_parameters
    from skitflow.run.local import (
        failure_error,
        gate_failed_error,
        interrupted_error,
        new_run_folder,
        run_package,
    )

    loaded = load_recipe_file(recipe, partial=True)
    given = read_params_file(params_file) if params_file else {}
    given.update(parse_assignments(param))
    arguments = resolve_parameters(loaded.recipe.parameters, given)
    package = compile_recipe(loaded)
    print_warnings(package.plan.warnings)
    out_dir = out or new_run_folder(package.name)
    from rich.console import Console

    # Bound now: while kfp.local runs, sys.stdout is redirected into the run log.
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    console.print(f"running {package.name} ({len(package.plan.tasks)} tasks) -> {out_dir}", markup=False)
    from skitflow.run.parity import parity_lines

    parity = parity_lines(package.plan, os.environ)
    if parity:
        console.print("local run differs from Kubeflow in:", markup=False)
        for line in parity:
            console.print(f"  - {line}", markup=False)

    seen: dict[str, tuple[str, int]] = {}

    def show(state) -> None:
        last_status, last_message = seen.get(state.id, ("", 0))
        for message in state.messages[last_message:]:
            console.print(f"     {state.id}: {message}", markup=False)
        if state.status != last_status:
            took = f" in {state.seconds:.1f}s" if state.seconds else ""
            console.print(f"  {_ICONS.get(state.status, '  ')} {state.id} {state.status}{took}", markup=False)
        seen[state.id] = (state.status, len(state.messages))

    result = run_package(package, arguments, out_dir, recipe_file=str(recipe),
                         cache_dir=cache_dir, listener=show, jobs=task_slots,
                         branch_labels=tuple(branch.label for branch, _ in loaded.branches))
    print_summary(result, console)
    if package.plan.notify:  # after the summary, before the exit code: it never changes it
        from skitflow.run.notify_local import notify_run

        notify_run(package.plan, result, environ=os.environ,
                   log=lambda line: console.print(line, markup=False))
    if result.interrupted:
        raise interrupted_error(result)
    if not result.succeeded:
        raise failure_error(result, str(recipe))
    if result.gate_failed:
        raise gate_failed_error(result)


def _jobs(given: str | None) -> int:
    """`--jobs`: a whole number of at least 1 (default: this machine's cores)."""
    from skitflow.errors import SkitflowError

    if given is None:
        return os.cpu_count() or 1
    try:
        jobs = int(given)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise SkitflowError(f"--jobs must be a whole number of at least 1, not `{given}`",
                            hint="--jobs 1 runs one task at a time; leave it out to use every core")
    return jobs


def print_summary(result, console: Console) -> None:
    from rich.table import Table

    verdict = {"succeeded": "succeeded", "failed": "FAILED", "interrupted": "INTERRUPTED"}[result.status]
    table = Table("task", "status", "seconds", "rows out",
                  title=f"{result.recipe}: {verdict} in {result.seconds:.1f}s")
    for state in result.tasks.values():
        status = state.status
        if state.blocked_by:
            status += f" ({', '.join(state.blocked_by)} failed)"
        table.add_row(state.id, status, "" if state.seconds is None else f"{state.seconds:.1f}",
                      "" if state.rows is None else str(state.rows))
    console.print(table)
    artifacts = [(state.id, name, path) for state in result.tasks.values()
                 for name, path in sorted(state.artifacts.items())]
    if artifacts:
        console.print("artifacts:", markup=False)
        for task, name, path in artifacts:
            console.print(f"  {task}/{name}: {_short(path, result.out_dir)}", markup=False)
    if result.metrics:
        console.print("metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items())),
                      markup=False)
    if result.gate is not None:  # a recipe without a gate has no verdict to show
        verdict = "passed: the model was written to its sinks" if result.gate.get("passed") else (
            "FAILED: the model was not written to its sinks")
        console.print(f"gate {verdict}; {result.gate.get('reason')}", markup=False)
    for label, branch in result.branches.items():
        scores = ", ".join(f"{k}={v:.4f}" for k, v in sorted(branch.get("metrics", {}).items()))
        gate = branch.get("gate")
        verdict = "" if gate is None else "; gate passed" if gate.get("passed") else "; gate FAILED"
        console.print(f"  branch {label}: {scores or 'no metrics'}{verdict}", markup=False)
    for note in result.notes:
        console.print(note, markup=False)
    console.print(f"run folder: {result.out_dir}", markup=False)


def _short(path: str, out_dir: Path) -> str:
    """Artifact paths relative to the run folder: the table stays readable."""
    try:
        return os.path.relpath(path, out_dir.resolve())
    except ValueError:
        return path
