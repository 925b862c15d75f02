"""A finished run's metric values, for `GET /runs/{id}`.

The run API does not carry metric values, only where they are: each task detail's `outputs` map
names its output artifacts by ML Metadata ID (`run_details.task_details[].outputs.metrics.
artifact_ids`), and the ArtifactService (`GET /apis/v2beta1/artifacts/{id}`, KFP 2.1+) answers
the artifact's `uri`. A backend that also answers the artifact's `metadata` (where a KFP Metrics
artifact keeps its logged values) is read from there; otherwise the object at `uri` is read: our
evaluator writes `{"metrics": {name: value}, ...}` there (skitflow.run.runtime.evaluate).

Where the run API lists no outputs (Kubeflow Pipelines 2.5 with Argo leaves `outputs` empty for
v2 runs), the object is looked for where the backend's driver puts it: the run's own root is
`<pipeline root>/<pipeline name>/<run id>` (backend/src/v2/metadata `GetPipeline`), and an output
lies at `<run root>/<task>/<output>` (driver `generateOutputURI`); newer backends may add a
segment between task and output, so the task's folder is listed for an object named `metrics`.
The pipeline root is the run's `runtime_config.pipeline_root`, else `SKITFLOW_SERVE_PIPELINE_ROOT`,
else Kubeflow's default, `minio://mlpipeline/v2/artifacts`.

Reading metrics never fails the request: every problem becomes `metrics: null` and a note that
says why, with secrets scrubbed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from skitflow.plan.planner import Plan
from skitflow.util.redact import redact

#: the evaluate component's Metrics output (skitflow.compile.components)
OUTPUT = "metrics"
#: the most of a metrics object the service reads
MAX_BYTES = 1024 * 1024
#: schemes of the object stores the service reads with the S3 connector (KFP's MinIO is S3)
S3_SCHEMES = ("s3://", "minio://")
#: the pipeline root of a Kubeflow install that sets none (its `defaultPipelineRoot`)
DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
PIPELINE_ROOT_ENV = "SKITFLOW_SERVE_PIPELINE_ROOT"


@dataclass(frozen=True)
class MetricsResult:
    """`metrics` for the answer (one evaluator: {name: value}; several: {task: {name: value}}),
    or None with `note` saying why."""

    metrics: dict[str, Any] | None
    note: str | None = None


def evaluate_tasks(plan: Plan | None) -> list[str]:
    """The plan's evaluate tasks (one per matrix branch), in plan order."""
    if plan is None:
        return []
    return [t.id for t in plan.tasks if t.component == "evaluate"]


def read_metrics(run: Any, plan: Plan | None, get_artifact: Callable[[str], dict[str, Any]],
                 environ: Mapping[str, str] | None = None,
                 secrets: tuple[str, ...] = ()) -> MetricsResult:
    """The metric values of a finished run's evaluate tasks; never raises."""
    environ = os.environ if environ is None else environ
    tasks = evaluate_tasks(plan)
    if not tasks:
        return MetricsResult(None, "the recipe has no evaluator, so the run has no metrics"
                             if plan is not None else "the run's recipe is not in the service's "
                             "folder, so its evaluate tasks are not known")
    found: dict[str, dict[str, Any]] = {}
    for task in tasks:
        try:
            found[task] = _task_metrics(run, task, plan, get_artifact, environ)
        except _NoMetrics as exc:
            return MetricsResult(None, redact(str(exc), secrets, environ))
        except Exception as exc:  # noqa: BLE001 - whatever failed, the request still answers
            detail = f"{type(exc).__name__}: {exc}"
            return MetricsResult(None, redact(f"the metrics of `{task}` could not be read: "
                                              f"{detail}", secrets, environ))
    if len(found) == 1:
        return MetricsResult(next(iter(found.values())))
    return MetricsResult(found)


class _NoMetrics(Exception):
    """Why a task's metrics are not there, as the note says it."""


def _task_metrics(run: Any, task: str, plan: Plan | None,
                  get_artifact: Callable[[str], dict[str, Any]],
                  environ: Mapping[str, str]) -> dict[str, Any]:
    details = (run.run_details.task_details if run.run_details else None) or []
    ids: list[str] = []
    for detail in details:
        if detail.display_name != task:
            continue
        outputs = detail.outputs or {}
        listed = outputs.get(OUTPUT)
        if listed is not None and listed.artifact_ids:
            ids = [str(i) for i in listed.artifact_ids]
            break
    if not ids:
        return _from_run_root(run, task, plan, environ)
    artifact = get_artifact(ids[-1])  # a retried task's last attempt
    values = _from_metadata(artifact.get("metadata"))
    if values:
        return values
    uri = str(artifact.get("uri") or "")
    if not uri:
        raise _NoMetrics(f"the `{OUTPUT}` artifact of `{task}` has neither metadata nor a uri")
    return _from_object(uri, environ)


def _from_run_root(run: Any, task: str, plan: Plan | None,
                   environ: Mapping[str, str]) -> dict[str, Any]:
    """The task's metrics object found under the run's root in the object store, for backends
    whose run API lists no task outputs."""
    config = getattr(run, "runtime_config", None)
    root = (getattr(config, "pipeline_root", None) or environ.get(PIPELINE_ROOT_ENV)
            or DEFAULT_PIPELINE_ROOT).rstrip("/")
    if plan is None or not root.startswith(S3_SCHEMES):
        raise _NoMetrics(f"Kubeflow lists no `{OUTPUT}` output artifact for `{task}`, and the "
                         f"pipeline root `{root.split('://')[0]}://...` is not a store the service "
                         "reads (s3://, minio://)")
    folder = f"{root}/{plan.name}/{run.run_id}/{task}/"
    try:
        return _from_object(folder + OUTPUT, environ)
    except _NoMetrics:
        raise
    except Exception:  # noqa: BLE001 - not at the plain path: look below the task's folder
        pass
    from skitflow.connectors.s3 import S3

    try:
        listed = S3(environ, max_attempts=2).list_objects(_s3_location(folder))
    except Exception as exc:  # noqa: BLE001 - said in the note
        raise _NoMetrics(f"Kubeflow lists no `{OUTPUT}` output artifact for `{task}`, and the "
                         f"run's root could not be read ({folder}: {exc})") from None
    named = [o for o in listed if o.uri.key.rsplit("/", 1)[-1] == OUTPUT]
    if not named:
        raise _NoMetrics(f"Kubeflow lists no `{OUTPUT}` output artifact for `{task}`, and none is "
                         f"under the run's root ({folder}; set {PIPELINE_ROOT_ENV} if the "
                         "install uses another pipeline root)")
    return _from_object(f"s3://{named[-1].uri.bucket}/{named[-1].uri.key}", environ)


def _s3_location(uri: str) -> Any:
    """An s3:// or minio:// URI as the S3 connector's location (KFP's MinIO speaks S3)."""
    from skitflow.connectors.s3 import parse_uri

    scheme = next(s for s in S3_SCHEMES if uri.startswith(s))
    return parse_uri("s3://" + uri[len(scheme):])


def _from_metadata(metadata: Any) -> dict[str, Any]:
    """A Metrics artifact's logged values: its numeric metadata (`display_name`, `format` and
    other strings left out)."""
    if not isinstance(metadata, dict):
        return {}
    return {k: v for k, v in sorted(metadata.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _from_object(uri: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Read `{"metrics": {...}}` from the artifact's object with the S3 connector (the
    service's AWS_* environment: credentials, AWS_ENDPOINT_URL for MinIO or SeaweedFS)."""
    from skitflow.connectors.s3 import S3

    if not uri.startswith(S3_SCHEMES):
        raise _NoMetrics(f"the metrics artifact is at `{uri.split('://')[0]}://...`, a store the "
                         "service cannot read (it reads s3:// and minio://)")
    location = _s3_location(uri)
    body = S3(environ, max_attempts=2).open_stream(location)
    try:
        raw = body.read(MAX_BYTES + 1)
    finally:
        body.close()
    if len(raw) > MAX_BYTES:
        raise _NoMetrics(f"the metrics object {location} is over {MAX_BYTES} bytes")
    try:
        document = json.loads(raw)
    except ValueError:
        raise _NoMetrics(f"the metrics object {location} is not JSON") from None
    values = document.get("metrics") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise _NoMetrics(f"the metrics object {location} has no `metrics` mapping")
    return dict(sorted(values.items()))
