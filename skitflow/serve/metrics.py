"""A finished run's metric values, for `GET /runs/{id}`.

The run API does not carry metric values, only where they are: each task detail's `outputs` map
names its output artifacts by ML Metadata ID (`run_details.task_details[].outputs.metrics.
artifact_ids`), and the ArtifactService (`GET /apis/v2beta1/artifacts/{id}`, KFP 2.1+) answers
the artifact's `uri`. A backend that also answers the artifact's `metadata` (where a KFP Metrics
artifact keeps its logged values) is read from there; otherwise the object at `uri` is read: our
evaluator writes `{"metrics": {name: value}, ...}` there (skitflow.run.runtime.evaluate).

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
            found[task] = _task_metrics(run, task, get_artifact, environ)
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


def _task_metrics(run: Any, task: str, get_artifact: Callable[[str], dict[str, Any]],
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
        raise _NoMetrics(f"Kubeflow lists no `{OUTPUT}` output artifact for `{task}` (its run "
                         "API fills task outputs only where the backend records them)")
    artifact = get_artifact(ids[-1])  # a retried task's last attempt
    values = _from_metadata(artifact.get("metadata"))
    if values:
        return values
    uri = str(artifact.get("uri") or "")
    if not uri:
        raise _NoMetrics(f"the `{OUTPUT}` artifact of `{task}` has neither metadata nor a uri")
    return _from_object(uri, environ)


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
    from skitflow.connectors.s3 import S3, parse_uri

    scheme = next((s for s in S3_SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        raise _NoMetrics(f"the metrics artifact is at `{uri.split('://')[0]}://...`, a store the "
                         "service cannot read (it reads s3:// and minio://)")
    location = parse_uri("s3://" + uri[len(scheme):])
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
