"""Which Kubeflow Pipelines backend runs what skitflow compiles.

The API server reports its version in healthz: `GET /apis/v2beta1/healthz` answers
`{"commit_sha", "tag_name", "multi_user", "pipeline_store"}` (kubeflow/pipelines
backend/src/apiserver/main.go; the version fields are not in the v2beta1 proto, so
kfp_server_api's model drops them and we read the raw body). `submit` compares `tag_name` with what
the package uses and refuses, before uploading anything, a feature the host's backend does not
execute: a package that a backend accepts and then runs differently is worse than a clear no.

The oldest backend skitflow supports is 2.5.0: it is the first that substitutes the run
placeholders `run.*` is made of, and the first that executes task retries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from skitflow.errors import SkitflowError

OLDEST_SUPPORTED = (2, 5, 0)
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Feature:
    name: str
    since: tuple[int, int, int]
    why: str
    used_by: Callable[[Mapping[str, Any]], list[str]]  # IR document -> tasks that use it


def parse_version(tag: str | None) -> tuple[int, int, int] | None:
    """`2.5.0`, `v2.14.3`, `2.5.0-rc.1` -> a tuple; `unknown`, `dev`, `` -> None."""
    match = _VERSION.match((tag or "").strip())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _tasks(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    dags = [spec.get("root", {}), *spec.get("components", {}).values()]
    for component in dags:
        yield from component.get("dag", {}).get("tasks", {}).items()


def _with_placeholders(spec: Mapping[str, Any]) -> list[str]:
    return sorted({name for name, task in _tasks(spec)
                   for value in task.get("inputs", {}).get("parameters", {}).values()
                   if str(value.get("runtimeValue", {}).get("constant", "")).startswith("{{$.pipeline_job_")})


def _with_retries(spec: Mapping[str, Any]) -> list[str]:
    return sorted(name for name, task in _tasks(spec)
                  if int(float(task.get("retryPolicy", {}).get("maxRetryCount", 0) or 0)) > 0)


def _with_final_status(spec: Mapping[str, Any]) -> list[str]:
    return sorted({name for name, task in _tasks(spec)
                   for value in task.get("inputs", {}).get("parameters", {}).values()
                   if "taskFinalStatus" in value})


FEATURES = (
    Feature("run identity (`run.id`, `run.date`, `run.name`)", (2, 5, 0),
            "older backends pass kfp's run placeholders to the task as literal text "
            "(job placeholders arrived in kubeflow/pipelines#11599)", _with_placeholders),
    Feature("task retries (`retries:`)", (2, 5, 0),
            "older backends compile `retryPolicy` but never retry (kubeflow/pipelines#9950, fixed "
            "by #11673)", _with_retries),
    Feature("final-status inputs of exit handlers (`notify:`)", (2, 14, 0),
            "PipelineTaskFinalStatus is executed from 2.14.0 (kubeflow/pipelines#11953)",
            _with_final_status),
)


def unsupported(package_text: str, version: tuple[int, int, int]) -> list[str]:
    """One line per feature the package uses that a backend of `version` does not run."""
    spec = next(yaml.safe_load_all(package_text))
    lines = []
    for feature in FEATURES:
        if version >= feature.since:
            continue
        tasks = feature.used_by(spec)
        if tasks:
            shown = ", ".join(tasks[:4]) + (" ..." if len(tasks) > 4 else "")
            lines.append(f"{feature.name} needs {_text(feature.since)} or newer, used by {shown}: "
                         f"{feature.why}")
    return lines


def check_backend(tag: str | None, package_text: str, host: str) -> str | None:
    """Raise when the host's backend cannot run the package; a note when its version is unknown."""
    version = parse_version(tag)
    if version is None:
        return (f"note: {host} does not report its Kubeflow Pipelines version (tag_name "
                f"`{tag or ''}`); skitflow needs {_text(OLDEST_SUPPORTED)} or newer and cannot check it")
    problems = unsupported(package_text, version)
    if problems:
        raise SkitflowError(
            f"Kubeflow Pipelines {_text(version)} at {host} cannot run this package: "
            + "; ".join(problems),
            hint=f"upgrade the backend to {_text(OLDEST_SUPPORTED)} or newer (the oldest skitflow "
            "supports), or drop the feature from the recipe",
        )
    if version < OLDEST_SUPPORTED:
        return (f"note: Kubeflow Pipelines {_text(version)} at {host} is older than "
                f"{_text(OLDEST_SUPPORTED)}, the oldest skitflow supports; this package uses none "
                "of the features known to need it")
    return None


def _text(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))
