"""`skitflow submit` and `skitflow schedules`: recipes onto a Kubeflow Pipelines host.

The commands only parse flags and print; what happens on the host is in `skitflow.submit.reconcile`, how
requests are made, retried and explained is in `skitflow.submit.client`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from skitflow.cli.common import print_warnings, stderr, stdout
from skitflow.errors import RemoteError, SkitflowError

if TYPE_CHECKING:
    from skitflow.submit.client import Failure, Kfp
    from skitflow.submit.reconcile import RunProgress

_HOST = typer.Option(None, "--host", help="Kubeflow Pipelines URL [env KFP_HOST; [tool.skitflow] host].")
_NAMESPACE = typer.Option(None, "--namespace", "-n",
                          help="Namespace (multi-user installs) [env KFP_NAMESPACE].")
_TOKEN = typer.Option(None, "--token", help="Bearer token [env KFP_TOKEN]; prefer the variable.",
                      show_default=False)
_COOKIE = typer.Option(None, "--cookie", show_default=False,
                       help="Session cookie NAME=VALUE for Dex/oauth2-proxy installs [env KFP_COOKIE].")
_CA_CERT = typer.Option(None, "--ca-cert", help="CA bundle to verify the host's TLS certificate.")


def submit(
    recipe: Path = typer.Argument(..., help="The recipe to submit."),
    host: str | None = _HOST,
    namespace: str | None = _NAMESPACE,
    experiment: str | None = typer.Option(
        None, "--experiment", "-e", help="Experiment of the run, created if missing [env "
        "KFP_EXPERIMENT; default: Default]."),
    run_name: str | None = typer.Option(None, "--run-name", help="Run name (default: RECIPE-TIME)."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE; lists/dicts as JSON or YAML."),
    params_file: Path | None = typer.Option(None, "--params-file", help="YAML/JSON file of parameter values."),
    wait: bool = typer.Option(False, "--wait", help="Follow the run; exit 0 only if it succeeds."),
    timeout: float | None = typer.Option(None, "--timeout", min=0, help="Stop waiting after SECONDS (with --wait)."),
    no_run: bool = typer.Option(False, "--no-run", help="Upload (and schedule) only; start no run."),
    schedule: str | None = typer.Option(
        None, "--schedule", help="Cron for a recurring run (seconds first; 5 fields get 0 s); overrides the recipe's."),
    unschedule: bool = typer.Option(False, "--unschedule", help="Remove the recipe's recurring run and exit."),
    token: str | None = _TOKEN,
    cookie: str | None = _COOKIE,
    ca_cert: Path | None = _CA_CERT,
) -> None:
    """Compile a recipe, upload it as a content-named version and start it on Kubeflow.

    Examples:

    \b
      skitflow submit recipes/seed-workflow.yaml --host https://kubeflow.example --wait
      skitflow submit recipes/seed-workflow.yaml -p test_size=0.3 --experiment nightly
    """
    from skitflow.submit import reconcile as api

    _check_flags(wait=wait, timeout=timeout, no_run=no_run, schedule=schedule, unschedule=unschedule)
    kfp, settings = _connect(host, namespace, experiment, token, cookie, ca_cert)
    experiment_name = settings["experiment"].value or "Default"
    namespace_name = settings["namespace"].value
    out = stdout()

    if unschedule:
        from skitflow.api import load_recipe

        name = load_recipe(recipe).recipe.name
        removed = api.unschedule(kfp, name, experiment_name, namespace_name)
        if removed:
            out.print(f"removed schedule {api.schedule_name(name)} from experiment {experiment_name} "
                      f"({', '.join(removed)})", markup=False)
        else:
            out.print(f"no schedule {api.schedule_name(name)} in experiment {experiment_name}; "
                      "nothing to remove", markup=False)
        return

    submission = api.prepare(recipe, experiment=experiment_name, namespace=namespace_name,
                             params=param, params_file=params_file, run_name=run_name,
                             start_run=not no_run, schedule_cron=schedule)
    print_warnings(submission.package.plan.warnings)
    plan = submission.package.plan
    from skitflow.submit.versions import check_backend

    note = check_backend(kfp.backend_version(), submission.package.text, kfp.target.host)
    if note:
        stderr().print(note, markup=False)
    out.print(f"submitting {plan.name} ({len(plan.tasks)} tasks) to {kfp.target.host}", markup=False)
    result = api.submit(kfp, submission)

    out.print(f"  pipeline   {plan.name} ({'created' if result.pipeline_created else 'exists'})",
              markup=False)
    out.print(f"  version    {submission.version} "
              f"({'uploaded' if result.version_created else 'unchanged, reused'})", markup=False)
    if result.experiment_id:
        out.print(f"  experiment {experiment_name}", markup=False)
    if result.schedule is not None:
        change = result.schedule
        state = "" if change.spec.enabled else ", disabled"
        out.print(f"  schedule   {api.schedule_name(plan.name)} {change.action} "
                  f"(cron {change.spec.cron}{state})", markup=False)
    for job_id in result.stale_schedules:
        stderr().print(f"note: schedule {api.schedule_name(plan.name)} ({job_id}) still runs an "
                       "older version; pass --schedule CRON to move it to this one, or "
                       "--unschedule to remove it", markup=False)
    if result.run_id is None:
        return
    link = kfp.target.run_link(result.run_id)
    out.print(f"  run        {result.run_name} started", markup=False)
    out.print(f"run id: {result.run_id}", markup=False)
    out.print(f"run: {link}", markup=False)
    if wait:
        _wait(kfp, result.run_id, {t.id for t in plan.tasks}, timeout, link)


def schedules(
    host: str | None = _HOST,
    namespace: str | None = _NAMESPACE,
    experiment: str | None = typer.Option(
        None, "--experiment", "-e", help="Only this experiment [env KFP_EXPERIMENT] (default: all)."),
    token: str | None = _TOKEN,
    cookie: str | None = _COOKIE,
    ca_cert: Path | None = _CA_CERT,
) -> None:
    """List the recurring runs created by `skitflow submit`.

    Examples:

    \b
      skitflow schedules --host https://kubeflow.example
      skitflow schedules --experiment nightly
    """
    from rich import box
    from rich.table import Column, Table

    from skitflow.submit import reconcile as api

    kfp, settings = _connect(host, namespace, experiment, token, cookie, ca_cert)
    # The built-in "Default" narrows nothing here: only an experiment someone chose does.
    chosen = settings["experiment"].value if settings["experiment"].source != "default" else None
    rows = api.list_schedules(kfp, chosen, settings["namespace"].value)
    out = stdout()
    if not rows:
        where = f"experiment {chosen}" if chosen else kfp.target.host
        out.print(f"no skitflow schedules in {where}", markup=False)
        return
    columns = [Column(name, overflow="fold") for name in
               ("schedule", "version", "cron", "status", "experiment")]
    table = Table(*columns, box=box.SIMPLE_HEAD, title_justify="left",
                  title=f"skitflow schedules on {kfp.target.host}")
    for row in rows:
        status = ("enabled" if row.enabled else "disabled") + (
            f", max {row.max_concurrency}" if row.max_concurrency > 1 else "")
        table.add_row(row.name, row.version, row.cron, status, row.experiment)
    out.print(table)


# -- helpers -------------------------------------------------------------------------------------


def _check_flags(*, wait: bool, timeout: float | None, no_run: bool, schedule: str | None,
                 unschedule: bool) -> None:
    """Combinations that cannot mean anything are input errors, found before any request."""
    if unschedule and (wait or no_run or schedule or timeout is not None):
        raise SkitflowError("--unschedule only removes the schedule; it takes no run options",
                            hint="drop --wait/--no-run/--schedule/--timeout")
    if wait and no_run:
        raise SkitflowError("--wait needs a run to wait for, and --no-run starts none")
    if timeout is not None and not wait:
        raise SkitflowError("--timeout bounds --wait", hint="add --wait")


def _connect(host: str | None, namespace: str | None, experiment: str | None, token: str | None,
             cookie: str | None, ca_cert: Path | None) -> tuple[Kfp, dict[str, Any]]:
    """Settings by precedence, credentials, retry policy -> a Kfp (nothing is sent yet)."""
    from skitflow.submit import config
    from skitflow.submit.client import Kfp, Target, credentials_from, kfp_policy

    settings = config.resolve({"host": host, "namespace": namespace, "experiment": experiment})
    if ca_cert is not None and not ca_cert.is_file():
        raise SkitflowError(f"--ca-cert `{ca_cert}` is not a file")
    target = Target(config.require_host(settings), settings["namespace"].value,
                    credentials_from(token, cookie), str(ca_cert) if ca_cert else None)
    return Kfp(target, kfp_policy(), on_retry=_report_retry), settings


def _report_retry(what: str, failure: Failure, attempt: int, wait: float) -> None:
    stderr().print(f"retrying in {wait:.1f}s: {failure.short()} while {what} (attempt {attempt})",
                   markup=False)


def _wait(kfp: Kfp, run_id: str, task_ids: set[str], timeout: float | None, link: str) -> None:
    """Follow the run; Ctrl-C stops following (exit 130), never the run."""
    from skitflow.submit import reconcile as api

    display = _RunDisplay()
    try:
        with display:
            last = api.watch_run(kfp, run_id, task_ids, timeout=timeout, on_progress=display.update)
    except KeyboardInterrupt:
        stderr().print(f"\nstopped waiting; the run goes on. Follow it at {link}", markup=False)
        raise typer.Exit(130) from None
    except api.WaitTimeout as exc:
        raise RemoteError(f"run still {exc.last.state} after {timeout:g}s; it keeps running on the "
                          "cluster", hint=f"follow it at {link}") from None
    error = api.outcome_error(last, link)
    if error is not None:
        raise error
    stdout().print(f"run SUCCEEDED in {_clock(last.elapsed)}", markup=False)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class _RunDisplay:
    """A live table on a terminal (its clock ticks between polls); one line per change otherwise,
    so CI logs stay readable."""

    def __init__(self) -> None:
        self.console = stdout()
        self.live: Any = None
        self.seen: dict[str, str] = {}
        self.state = ""
        self.last: RunProgress | None = None
        self.polled_at = time.monotonic()

    def __enter__(self) -> _RunDisplay:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self, console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc_info)

    def update(self, progress: RunProgress) -> None:
        self.last, self.polled_at = progress, time.monotonic()
        if self.live is not None:
            self.live.refresh()
            return
        if progress.state != self.state:
            self.state = progress.state
            self.console.print(f"  [{_clock(progress.elapsed)}] run {progress.state}", markup=False)
        for name, state in progress.tasks:
            if self.seen.get(name) != state:
                self.seen[name] = state
                self.console.print(f"  [{_clock(progress.elapsed)}]   {name}: {state}", markup=False)

    def __rich__(self) -> Any:
        from rich.table import Table

        progress = self.last
        if progress is None:
            return "waiting for the run ..."
        elapsed = progress.elapsed + (0 if progress.finished else time.monotonic() - self.polled_at)
        table = Table("task", "state", title_justify="left",
                      title=f"run {progress.state} · {_clock(elapsed)}")
        for name, state in progress.tasks:
            table.add_row(name, state)
        return table
