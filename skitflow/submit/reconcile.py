"""`skitflow submit`: a compiled recipe onto a Kubeflow Pipelines host, idempotently.

Names make repeated submits safe:

- the pipeline is named after the recipe;
- each version is named after the package's content (`v-<sha256[:12]>`, or `<version>-<hash>`
  when the recipe sets `version:`), so an unchanged recipe finds its version and uploads nothing;
- a schedule is the recurring run `<recipe>-schedule` in the experiment: reconciled (kept when
  identical, otherwise replaced), never duplicated;
- a run carries a submission token in its description, so a retried POST whose answer was lost
  finds the run it already made instead of starting a second one.

Everything a user can get wrong (parameters, cron, flags) is checked in :func:`prepare` before
any request. Every request goes through :class:`skitflow.submit.client.Kfp`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skitflow.compile.build import Package, compile_loaded
from skitflow.errors import RemoteError, SkitflowError
from skitflow.plan.cluster import require_cluster_ready
from skitflow.recipe.loader import load_recipe_file
from skitflow.recipe.models import Schedule, kfp_arguments
from skitflow.recipe.parameters import parse_assignments, read_params_file, resolve_parameters
from skitflow.steps.registry import default_registry
from skitflow.submit.client import Kfp
from skitflow.util.redact import redact

SCHEDULE_SUFFIX = "-schedule"
MARKER = "skitflow"  # first word of the description of everything skitflow creates
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
MAX_CONCURRENCY = 10  # the Kubeflow API refuses more
PAGE_SIZE = 100
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,\-#LW]+$")


# -- before the network --------------------------------------------------------------------------


def content_hash(text: str) -> str:
    """First 12 hex digits of the package's sha256: the version's identity."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def version_name(package: Package) -> str:
    """`v-<hash>`, or `<recipe version>-<hash>` when the recipe names its own version."""
    return f"{package.plan.version or 'v'}-{content_hash(package.text)}"


def schedule_name(recipe: str) -> str:
    """The display name of a recipe's recurring run: one per recipe and experiment."""
    return f"{recipe}{SCHEDULE_SUFFIX}"


@dataclass(frozen=True)
class ScheduleSpec:
    """A recurring run as Kubeflow stores it, in a form that compares equal when unchanged."""

    cron: str
    max_concurrency: int = 1
    start: datetime | None = None
    end: datetime | None = None
    enabled: bool = True


def normalise_cron(cron: str) -> str:
    """Kubeflow's cron has seconds first; a classic 5-field cron gets `0` seconds prepended."""
    text = " ".join(cron.split())
    if text.startswith("@"):
        return text
    fields = text.split(" ")
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise SkitflowError(
            f"`{cron}` is not a cron expression",
            hint="write six fields with seconds first, e.g. `0 0 3 * * *` (daily at 03:00), "
            "or a descriptor like `@daily`",
        )
    return text if len(fields) == 6 else f"0 {text}"


def schedule_spec(recipe_schedule: Schedule | None, cron_flag: str | None) -> ScheduleSpec | None:
    """The wanted schedule: `--schedule CRON` overrides the recipe's cron, keeping its other settings."""
    if recipe_schedule is None and cron_flag is None:
        return None
    base = recipe_schedule or Schedule(cron=cron_flag or "")
    if base.max_concurrency > MAX_CONCURRENCY:
        raise SkitflowError(
            f"schedule max_concurrency is {base.max_concurrency}; Kubeflow allows 1 to {MAX_CONCURRENCY}"
        )
    start, end = _utc(base.start), _utc(base.end)
    if start and end and end <= start:
        raise SkitflowError("the schedule's `end` is not after its `start`")
    return ScheduleSpec(normalise_cron(cron_flag or base.cron), base.max_concurrency, start, end,
                        base.enabled)


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetimes, second precision (a naive time in a recipe means UTC)."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=0)


def _rfc3339(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class Submission:
    """Everything decided locally: what to upload, run and schedule."""

    package: Package
    version: str
    experiment: str
    namespace: str | None = None
    arguments: dict[str, Any] | None = None  # None when nothing is started
    run_name: str | None = None
    start_run: bool = True
    schedule: ScheduleSpec | None = None

    @property
    def recipe(self) -> str:
        return self.package.name

    @property
    def kfp_arguments(self) -> dict[str, Any]:
        """The run's parameter values as the package declares them (lists/dicts as JSON text)."""
        return kfp_arguments(self.package.plan.parameters, self.arguments or {})


def prepare(
    recipe: str | os.PathLike[str],
    *,
    experiment: str,
    namespace: str | None = None,
    params: list[str] | tuple[str, ...] = (),
    params_file: Path | None = None,
    run_name: str | None = None,
    start_run: bool = True,
    schedule_cron: str | None = None,
) -> Submission:
    """Load, check parameters, compile (in memory) and decide the schedule; no network."""
    loaded = load_recipe_file(recipe)
    schedule = schedule_spec(loaded.recipe.schedule, schedule_cron)
    arguments = None
    if start_run or schedule is not None:
        given = read_params_file(params_file) if params_file else {}
        given.update(parse_assignments(params))
        arguments = resolve_parameters(loaded.recipe.parameters, given, for_kubeflow=True)
    elif params or params_file:
        raise SkitflowError("parameters are only used by a run or a schedule",
                            hint="drop --param/--params-file, or drop --no-run")
    package = compile_loaded(loaded)
    # What the run will see: the given parameters, else the defaults (a schedule's too).
    require_cluster_ready(loaded, default_registry(), arguments)
    return Submission(package, version_name(package), experiment, namespace, arguments, run_name,
                      start_run, schedule)


# -- on the host ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleChange:
    action: str  # created, replaced, unchanged
    recurring_run_id: str
    spec: ScheduleSpec


@dataclass
class SubmitResult:
    pipeline_id: str = ""
    pipeline_created: bool = False
    version_id: str = ""
    version_created: bool = False
    experiment_id: str = ""
    run_id: str | None = None
    run_name: str | None = None
    schedule: ScheduleChange | None = None
    stale_schedules: list[str] = field(default_factory=list)  # ids bound to another version


def submit(kfp: Kfp, submission: Submission) -> SubmitResult:
    """Upload (or reuse) the version, then start a run and/or reconcile the schedule."""
    kfp.connect()
    result = SubmitResult()
    result.pipeline_id, result.pipeline_created = find_or_create_pipeline(kfp, submission)
    result.version_id, result.version_created = find_or_upload_version(
        kfp, submission, result.pipeline_id, new_pipeline=result.pipeline_created)
    if submission.start_run or submission.schedule is not None:
        result.experiment_id = ensure_experiment(kfp, submission.experiment, submission.namespace)
    if submission.start_run:
        result.run_id, result.run_name = start_run(kfp, submission, result)
    if submission.schedule is not None:
        result.schedule = reconcile_schedule(kfp, submission, result)
    elif result.version_created and not result.pipeline_created and result.experiment_id:
        # A schedule made earlier keeps running the old version: say so rather than guess.
        existing = kfp.call("looking for the recipe's schedule", lambda c: find_schedules(
            c, result.experiment_id, schedule_name(submission.recipe)))
        result.stale_schedules = [j.recurring_run_id for j in existing
                                  if _version_id(j) != result.version_id]
    return result


def find_or_create_pipeline(kfp: Kfp, submission: Submission) -> tuple[str, bool]:
    """The recipe's pipeline by name in the namespace, created (without versions) if missing.

    kfp's `upload_pipeline` would name the first version after the pipeline; creating the
    pipeline bare and uploading the version by name gives exactly one, content-named version.
    """
    name, namespace = submission.recipe, submission.namespace

    def operation(client: Any) -> tuple[str, bool]:
        from kfp_server_api import V2beta1Pipeline

        found = _pipeline_by_name(client, name, namespace)
        if found is not None:
            return found.pipeline_id, False
        body = V2beta1Pipeline(name=name, display_name=name, namespace=namespace,
                               description=submission.package.plan.description or None)
        created = client.pipelines.pipeline_service_create_pipeline(pipeline=body)
        return created.pipeline_id, True

    return kfp.call(f"creating pipeline `{name}`", operation)


def _pipeline_by_name(client: Any, name: str, namespace: str | None) -> Any:
    from kfp_server_api.exceptions import ApiException

    try:
        return client.pipelines.pipeline_service_get_pipeline_by_name(name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def find_or_upload_version(kfp: Kfp, submission: Submission, pipeline_id: str,
                           new_pipeline: bool) -> tuple[str, bool]:
    """The version named by content hash: reused when present, uploaded otherwise."""
    name = submission.version
    checked = {"skip_lookup": new_pipeline}  # a pipeline created just now has no versions

    def operation(client: Any) -> tuple[str, bool]:
        if not checked["skip_lookup"]:
            found = _version_by_name(client, pipeline_id, name)
            if found is not None:
                return found.pipeline_version_id, False
        checked["skip_lookup"] = False  # a retry re-checks: the upload may have happened
        with tempfile.TemporaryDirectory(prefix="skitflow-") as folder:
            path = Path(folder) / f"{submission.recipe}.yaml"
            path.write_text(submission.package.text, encoding="utf-8")
            plan = submission.package.plan
            version = client.upload_pipeline_version(
                str(path), name, pipeline_id=pipeline_id,
                description=f"{MARKER} recipe={plan.name} recipe_hash={plan.recipe_hash}")
        return version.pipeline_version_id, True

    return kfp.call(f"uploading version `{name}` of `{submission.recipe}`", operation)


def _version_by_name(client: Any, pipeline_id: str, name: str) -> Any:
    token = ""
    while True:
        page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=PAGE_SIZE,
                                             filter=_name_filter(name))
        for version in page.pipeline_versions or []:
            if name in (version.name, version.display_name):
                return version
        token = page.next_page_token or ""
        if not token:
            return None


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                       "stringValue": name}]})


def ensure_experiment(kfp: Kfp, name: str, namespace: str | None) -> str:
    """The experiment's id, created if missing (kfp's create_experiment looks first)."""

    def operation(client: Any) -> str:
        try:
            return client.create_experiment(name, namespace=namespace).experiment_id
        except ValueError as exc:  # kfp: several experiments share the name
            raise RemoteError(f"experiment `{name}`: {exc}",
                              hint="rename or archive the duplicates in the Kubeflow UI") from None

    return kfp.call(f"finding experiment `{name}`", operation)


def find_experiment(kfp: Kfp, name: str, namespace: str | None) -> str | None:
    """The experiment's id, or None; never creates one."""

    def operation(client: Any) -> str | None:
        try:
            return client.get_experiment(experiment_name=name, namespace=namespace).experiment_id
        except ValueError as exc:
            if str(exc).startswith("No experiment"):
                return None
            raise RemoteError(f"experiment `{name}`: {exc}") from None

    return kfp.call(f"finding experiment `{name}`", operation)


def start_run(kfp: Kfp, submission: Submission, result: SubmitResult) -> tuple[str, str]:
    """Start a run of the version; a retry first looks for the run by its submission token."""
    from kfp_server_api import V2beta1PipelineVersionReference, V2beta1Run, V2beta1RuntimeConfig

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = submission.run_name or f"{submission.recipe}-{stamp}"
    token = uuid.uuid4().hex[:16]
    description = (f"{MARKER} recipe={submission.recipe} version={submission.version} "
                   f"submission={token}")
    sent = {"before": False}

    def operation(client: Any) -> tuple[str, str]:
        if sent["before"]:
            found = _run_by_token(client, result.experiment_id, name, token)
            if found is not None:
                return found.run_id, name
        sent["before"] = True
        body = V2beta1Run(
            experiment_id=result.experiment_id,
            display_name=name,
            description=description,
            pipeline_version_reference=V2beta1PipelineVersionReference(
                pipeline_id=result.pipeline_id, pipeline_version_id=result.version_id),
            runtime_config=V2beta1RuntimeConfig(parameters=submission.kfp_arguments),
        )
        return client.runs.run_service_create_run(run=body).run_id, name

    return kfp.call(f"starting run `{name}`", operation)


def _run_by_token(client: Any, experiment_id: str, name: str, token: str) -> Any:
    token_text = f"submission={token}"
    page_token = ""
    while True:
        page = client.list_runs(experiment_id=experiment_id, filter=_name_filter(name),
                                page_size=PAGE_SIZE, page_token=page_token)
        for run in page.runs or []:
            if token_text in (run.description or ""):
                return run
        page_token = page.next_page_token or ""
        if not page_token:
            return None


# -- schedules -----------------------------------------------------------------------------------


def find_schedules(client: Any, experiment_id: str, name: str) -> list[Any]:
    """Recurring runs with exactly this display name in the experiment."""
    found, token = [], ""
    while True:
        page = client.list_recurring_runs(experiment_id=experiment_id, filter=_name_filter(name),
                                          page_size=PAGE_SIZE, page_token=token)
        found += [j for j in page.recurring_runs or [] if j.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return found


def _version_id(job: Any) -> str:
    reference = job.pipeline_version_reference
    return (reference.pipeline_version_id if reference else None) or job.pipeline_version_id or ""


def spec_of(job: Any) -> ScheduleSpec | None:
    """What an existing recurring run does, comparable with a wanted ScheduleSpec."""
    cron = job.trigger.cron_schedule if job.trigger else None
    if cron is None or not cron.cron:
        return None
    return ScheduleSpec(cron.cron, int(job.max_concurrency or 1), _as_utc(cron.start_time),
                        _as_utc(cron.end_time), str(job.mode or "").upper() == "ENABLE")


def _as_utc(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return _utc(value)


def _same_schedule(job: Any, spec: ScheduleSpec, version_id: str, arguments: Mapping[str, Any]) -> bool:
    parameters = job.runtime_config.parameters if job.runtime_config else None
    return (spec_of(job) == spec and _version_id(job) == version_id
            and _canonical(parameters or {}) == _canonical(arguments))


def _canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def reconcile_schedule(kfp: Kfp, submission: Submission, result: SubmitResult) -> ScheduleChange:
    """Make `<recipe>-schedule` match the wanted one: keep it if identical, else delete + create.

    The whole reconciliation is re-run on a retry (list, delete, create), so a create whose
    answer was lost is found by the next list instead of being made twice.
    """
    from kfp_server_api.exceptions import ApiException

    spec = submission.schedule
    assert spec is not None
    name = schedule_name(submission.recipe)
    arguments = submission.kfp_arguments
    replaced = {"any": False}

    def operation(client: Any) -> ScheduleChange:
        existing = find_schedules(client, result.experiment_id, name)
        same = [j for j in existing if _same_schedule(j, spec, result.version_id, arguments)]
        keep = same[0] if same else None
        for job in existing:
            if job is keep:
                continue
            replaced["any"] = True
            try:
                client.delete_recurring_run(job.recurring_run_id)
            except ApiException as exc:
                if exc.status != 404:  # already gone (an earlier attempt's delete went through)
                    raise
        if keep is not None:
            return ScheduleChange("replaced" if replaced["any"] else "unchanged",
                                  keep.recurring_run_id, spec)
        job = client.create_recurring_run(
            result.experiment_id, name,
            description=f"{MARKER} recipe={submission.recipe} version={submission.version}",
            start_time=_rfc3339(spec.start), end_time=_rfc3339(spec.end),
            cron_expression=spec.cron, max_concurrency=spec.max_concurrency,
            params=arguments, pipeline_id=result.pipeline_id, version_id=result.version_id,
            enabled=spec.enabled)
        return ScheduleChange("replaced" if replaced["any"] else "created", job.recurring_run_id, spec)

    return kfp.call(f"scheduling `{name}`", operation)


def unschedule(kfp: Kfp, recipe: str, experiment: str, namespace: str | None) -> list[str]:
    """Delete the recipe's recurring run(s) in the experiment; the ids removed."""
    from kfp_server_api.exceptions import ApiException

    kfp.connect()
    experiment_id = find_experiment(kfp, experiment, namespace)
    if experiment_id is None:
        return []
    name = schedule_name(recipe)
    removed: list[str] = []

    def operation(client: Any) -> list[str]:
        for job in find_schedules(client, experiment_id, name):
            try:
                client.delete_recurring_run(job.recurring_run_id)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            removed.append(job.recurring_run_id)
        return removed

    return kfp.call(f"removing schedule `{name}`", operation)


@dataclass(frozen=True)
class ScheduleRow:
    """One recurring run made by skitflow, for `skitflow schedules`."""

    name: str
    recipe: str
    version: str
    cron: str
    enabled: bool
    max_concurrency: int
    experiment: str
    recurring_run_id: str
    created_at: datetime | None


def list_schedules(kfp: Kfp, experiment: str | None, namespace: str | None) -> list[ScheduleRow]:
    """skitflow's recurring runs (known by their description), in one experiment or all."""
    kfp.connect()
    experiment_id = find_experiment(kfp, experiment, namespace) if experiment else None
    if experiment and experiment_id is None:
        return []

    def operation(client: Any) -> list[ScheduleRow]:
        names: dict[str, str] = {}
        if experiment_id is not None and experiment is not None:
            names[experiment_id] = experiment
        else:
            token = ""
            while True:
                page = client.list_experiments(page_size=PAGE_SIZE, page_token=token,
                                               namespace=namespace)
                names.update({e.experiment_id: e.display_name for e in page.experiments or []})
                token = page.next_page_token or ""
                if not token:
                    break
        rows, token = [], ""
        while True:
            page = client.list_recurring_runs(experiment_id=experiment_id, namespace=namespace,
                                              page_size=PAGE_SIZE, page_token=token)
            for job in page.recurring_runs or []:
                tags = _description_tags(job.description)
                if tags is None:
                    continue
                spec = spec_of(job)
                rows.append(ScheduleRow(
                    job.display_name, tags.get("recipe", ""), tags.get("version", ""),
                    spec.cron if spec else "(periodic)", bool(spec and spec.enabled),
                    int(job.max_concurrency or 1), names.get(job.experiment_id, job.experiment_id or ""),
                    job.recurring_run_id, job.created_at))
            token = page.next_page_token or ""
            if not token:
                return sorted(rows, key=lambda r: (r.experiment, r.name))

    return kfp.call("listing recurring runs", operation)


def _description_tags(description: str | None) -> dict[str, str] | None:
    """`skitflow recipe=a version=b` -> {recipe: a, version: b}; None when not skitflow's."""
    words = (description or "").split()
    if not words or words[0] != MARKER:
        return None
    return dict(w.split("=", 1) for w in words[1:] if "=" in w)


# -- waiting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunProgress:
    """A run as seen by one poll: state, time waited, the tasks' states, the error if any."""

    state: str
    elapsed: float
    tasks: tuple[tuple[str, str], ...]
    failed_task: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def progress_of(run: Any, task_ids: set[str], elapsed: float) -> RunProgress:
    """Reduce a V2beta1Run to what a person watching needs (drivers and DAG plumbing left out)."""
    details = (run.run_details.task_details if run.run_details else None) or []
    named = [(t.display_name or "", str(t.state or ""), t) for t in details]
    ours = [item for item in named if item[0] in task_ids]
    if not ours:
        ours = [item for item in named
                if item[0] and item[0] != "root" and not item[0].endswith("-driver")]
    failed = [item for item in ours if item[1] == "FAILED"]
    leaf = [item for item in failed if not item[2].child_tasks] or failed
    failed_task = leaf[0][0] if leaf else None
    error = None
    if leaf and leaf[0][2].error is not None:
        error = leaf[0][2].error.message
    if not error and run.error is not None:
        error = run.error.message
    return RunProgress(str(run.state or "PENDING"), elapsed,
                       tuple((name, state) for name, state, _ in ours), failed_task, error)


class WaitTimeout(Exception):
    """The run did not finish within --timeout (it keeps going on the cluster)."""

    def __init__(self, last: RunProgress) -> None:
        super().__init__(last.state)
        self.last = last


def watch_run(
    kfp: Kfp,
    run_id: str,
    task_ids: set[str],
    *,
    timeout: float | None = None,
    poll_interval: float | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunProgress:
    """Poll `get_run` until the run finishes; raises WaitTimeout past `timeout` seconds."""
    interval = poll_interval if poll_interval is not None else float(
        os.environ.get("SKITFLOW_POLL_INTERVAL", "5") or 5)
    started = time.monotonic()
    while True:
        run = kfp.call("checking the run", lambda c: c.get_run(run_id))
        progress = progress_of(run, task_ids, time.monotonic() - started)
        if on_progress is not None:
            on_progress(progress)
        if progress.finished:
            return progress
        left = None if timeout is None else timeout - (time.monotonic() - started)
        if left is not None and left <= 0:
            raise WaitTimeout(progress)
        sleep(interval if left is None else min(interval, left))


def outcome_error(progress: RunProgress, link: str) -> SkitflowError | None:
    """None for SUCCEEDED; otherwise the error to exit 1 with, naming the failing task."""
    if progress.state == "SUCCEEDED":
        return None
    if progress.state == "FAILED":
        what = f"task `{progress.failed_task}` failed" if progress.failed_task else "the run failed"
        detail = f": {redact(progress.error)}" if progress.error else ""  # the server's words
        return RemoteError(f"run FAILED: {what}{detail}", hint=f"logs and details: {link}")
    return RemoteError(f"run ended {progress.state}", hint=f"details: {link}")
