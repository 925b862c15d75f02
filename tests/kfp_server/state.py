"""In-memory KFP backend: pipelines, versions, experiments, runs, recurring runs.

Resources are kept as complete snake_case dicts (every field present, so
filters on empty fields work) and returned with empty fields omitted, as the
backend's protojson marshalling does.  All public methods take the state lock,
so the threaded HTTP server can call them concurrently.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from .common import ApiError, RecordedRequest, now, public
from .listing import ListError, list_page
from .runs import (
    DEFAULT_FAILURE_MESSAGE,
    FINAL_RUN_STATES,
    RunScript,
    SimulatedRun,
    validated_max_concurrency,
    validated_trigger,
)
from .specs import (
    ParsedPackage,
    SpecError,
    parse_inline_spec,
    parse_package,
    read_package_file,
    task_tree,
    validate_run_parameters,
)

DEFAULT_EXPERIMENT_NAME = "Default"
DEFAULT_EXPERIMENT_DESCRIPTION = (
    "All runs created without specifying an experiment will be grouped here."
)


@dataclass
class _Source:
    """Where a run's pipeline came from."""

    package: ParsedPackage
    pipeline_spec: dict[str, Any] | None
    version_reference: dict[str, str] | None
    pipeline_names: set[str]


class ServerState:
    """The backend's data and behaviour, plus the request log and run scripting for tests."""

    def __init__(
        self,
        *,
        run_polls: int = 1,
        multi_user: bool = False,
        forbidden_namespaces: tuple[str, ...] | list[str] | set[str] = (),
        default_experiment: bool = True,
    ) -> None:
        if run_polls < 1:
            raise ValueError("run_polls must be >= 1")
        self.lock = threading.RLock()
        self.run_polls = run_polls
        self.multi_user = multi_user
        self.forbidden_namespaces = set(forbidden_namespaces)
        self.requests: list[RecordedRequest] = []
        self.run_scripts: list[RunScript] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.pipeline_versions: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, ParsedPackage] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, SimulatedRun] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        #: ArtifactService records by ID, and the output artifacts each container task (by key)
        #: reports once it succeeded, for runs created after they were added
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.task_outputs: dict[str, dict[str, list[str]]] = {}
        if default_experiment and not multi_user:
            self._default_experiment()

    # ----------------------------------------------------------------- test API

    def script_runs(
        self,
        matching: str = "",
        *,
        pipeline_name: str | None = None,
        final_state: str = "FAILED",
        failing_task: str | None = None,
        polls: int | None = None,
        message: str = DEFAULT_FAILURE_MESSAGE,
        times: int | None = None,
    ) -> RunScript:
        """Script the outcome of future runs whose display name contains ``matching``.

        ``failing_task`` (task key or display name; default: the last task)
        is reported FAILED with ``message`` in ``run_details.task_details``;
        ``polls`` overrides how many GETs the run takes to finish.
        """
        final_state = final_state.upper()
        if final_state not in FINAL_RUN_STATES:
            raise ValueError(f"final_state must be one of {sorted(FINAL_RUN_STATES)}")
        script = RunScript(
            matching, pipeline_name, final_state, failing_task, polls, message, times
        )
        with self.lock:
            self.run_scripts.append(script)
        return script

    def add_output_artifact(self, task: str, output: str, uri: str,
                            artifact_type: str = "system.Metrics") -> str:
        """Give future runs' task ``task`` (its key) the output artifact ``output`` at ``uri``.

        As in ML Metadata, the artifact gets an int64 ID (written as a string in JSON, as
        protojson writes int64) that ``GET /artifacts/{id}`` answers; the object at ``uri`` is
        the caller's to write (e.g. into the SeaweedFS test server).
        """
        with self.lock:
            artifact_id = str(len(self.artifacts) + 1)
            bucket, _, path = uri.partition("://")[2].partition("/")
            self.artifacts[artifact_id] = {
                "artifact_id": artifact_id,
                "storage_provider": uri.partition("://")[0],
                "storage_path": path if bucket else "",
                "uri": uri,
                "namespace": "",
                "artifact_type": artifact_type,
                "created_at": now(),
                "last_updated_at": now(),
            }
            self.task_outputs.setdefault(task, {}).setdefault(output, []).append(artifact_id)
            return artifact_id

    def requests_to(self, path_regex: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path matches ``path_regex`` (and method, if given)."""
        pattern = re.compile(path_regex)
        with self.lock:
            return [
                request
                for request in self.requests
                if pattern.search(request.path)
                and (method is None or request.method == method.upper())
            ]

    def record(self, request: RecordedRequest) -> None:
        """Append to the request log."""
        with self.lock:
            self.requests.append(request)

    def find_pipeline(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        """The stored pipeline with this name in this namespace, if any."""
        with self.lock:
            for pipeline in self.pipelines.values():
                if pipeline["name"] == name and pipeline["namespace"] == namespace:
                    return dict(pipeline)
        return None

    def run_snapshot(self, run_id: str) -> dict[str, Any]:
        """A run as the API would return it, without counting as a poll."""
        with self.lock:
            return self._run(run_id).render()

    def trigger_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """Simulate the scheduler firing a recurring run: create one run from it."""
        with self.lock:
            job = self._recurring_run(recurring_run_id)
            body = {
                key: job[key]
                for key in (
                    "experiment_id",
                    "pipeline_spec",
                    "pipeline_version_reference",
                    "runtime_config",
                    "service_account",
                )
            }
            body["display_name"] = f"{job['display_name']}-{now()}"
            run = self.create_run(body)
            self.runs[run["run_id"]].resource["recurring_run_id"] = recurring_run_id
            return public(self.runs[run["run_id"]].resource)

    # ------------------------------------------------------------ authorization

    def check_namespace(self, namespace: str, *, upload: bool = False) -> None:
        """Refuse forbidden namespaces: 403, or 400 on the upload endpoints like the real server."""
        if namespace not in self.forbidden_namespaces:
            return
        if upload:
            raise ApiError(
                400,
                f"pipeline upload denied: permission to create pipelines.pipelines.kubeflow.org in namespace "
                f"{namespace!r} is required",
                upload=True,
            )
        raise ApiError(
            403, f"PermissionDenied: user is not authorized to access namespace {namespace!r}"
        )

    # ---------------------------------------------------------------- pipelines

    def upload_pipeline(self, query: dict[str, str], filename: str, data: bytes) -> dict[str, Any]:
        """``POST /pipelines/upload``: create a pipeline and its first version from a package."""
        failure = "Failed to create a pipeline and a pipeline version"
        namespace = query.get("namespace", "")
        self.check_namespace(namespace, upload=True)
        package = self._parse_upload(filename, data, failure)
        name = query.get("name") or query.get("display_name") or _stem(filename)
        tags = _parse_tags(query.get("tags", ""))
        with self.lock:
            if self.find_pipeline(name, namespace) is not None:
                raise ApiError(
                    409,
                    failure,
                    upload=True,
                    details=f"pipeline {name!r} already exists in namespace {namespace!r}",
                )
            pipeline = self._new_pipeline(
                name,
                query.get("display_name") or name,
                query.get("description", ""),
                namespace,
                tags,
            )
            self._new_version(
                pipeline,
                name,
                query.get("display_name") or name,
                query.get("description", ""),
                package,
                tags,
            )
            return public(pipeline)

    def upload_pipeline_version(
        self, query: dict[str, str], filename: str, data: bytes
    ) -> dict[str, Any]:
        """``POST /pipelines/upload_version``: add a version to an existing pipeline."""
        failure = "Failed to create a pipeline version"
        pipeline_id = query.get("pipelineid", "")
        name = query.get("name") or query.get("display_name") or _stem(filename)
        with self.lock:
            pipeline = self.pipelines.get(pipeline_id)
            if pipeline is None:
                # The real endpoint answers 400 (not 404) for an unknown pipeline id.
                raise ApiError(
                    400, failure, upload=True, details=f"pipeline {pipeline_id!r} not found"
                )
            self.check_namespace(pipeline["namespace"], upload=True)
            package = self._parse_upload(filename, data, failure)
            if any(
                v["pipeline_id"] == pipeline_id and v["name"] == name
                for v in self.pipeline_versions.values()
            ):
                raise ApiError(
                    409,
                    failure,
                    upload=True,
                    details=f"version {name!r} already exists in pipeline {pipeline_id}",
                )
            version = self._new_version(
                pipeline,
                name,
                query.get("display_name") or name,
                query.get("description", ""),
                package,
                _parse_tags(query.get("tags", "")),
            )
            return self._public_version(version)

    def create_pipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /pipelines``: a pipeline without versions."""
        name = body.get("name") or body.get("display_name") or ""
        if not name:
            raise ApiError(400, "Invalid input error: pipeline name is empty")
        namespace = body.get("namespace") or ""
        self.check_namespace(namespace)
        with self.lock:
            if self.find_pipeline(name, namespace) is not None:
                raise ApiError(409, f"Already exists: pipeline {name!r} in namespace {namespace!r}")
            pipeline = self._new_pipeline(
                name,
                body.get("display_name") or name,
                body.get("description") or "",
                namespace,
                body.get("tags") or {},
            )
            return public(pipeline)

    def create_pipeline_and_version(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /pipelines/create``: pipeline plus first version (inline ``pipeline_spec`` only)."""
        version_body = body.get("pipeline_version") or {}
        package = self._inline_version_package(version_body)
        with self.lock:
            pipeline = self.create_pipeline(body.get("pipeline") or {})
            stored = self.pipelines[pipeline["pipeline_id"]]
            name = version_body.get("name") or version_body.get("display_name") or stored["name"]
            self._new_version(
                stored,
                name,
                version_body.get("display_name") or name,
                version_body.get("description") or "",
                package,
                version_body.get("tags") or {},
            )
            return pipeline

    def create_pipeline_version(self, pipeline_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /pipelines/{id}/versions`` (inline ``pipeline_spec`` only)."""
        package = self._inline_version_package(body)
        with self.lock:
            pipeline = self._pipeline(pipeline_id)
            self.check_namespace(pipeline["namespace"])
            name = body.get("name") or body.get("display_name") or ""
            if not name:
                raise ApiError(400, "Invalid input error: pipeline version name is empty")
            if any(
                v["pipeline_id"] == pipeline_id and v["name"] == name
                for v in self.pipeline_versions.values()
            ):
                raise ApiError(409, f"Already exists: version {name!r} in pipeline {pipeline_id}")
            version = self._new_version(
                pipeline,
                name,
                body.get("display_name") or name,
                body.get("description") or "",
                package,
                body.get("tags") or {},
            )
            return self._public_version(version)

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        """``GET /pipelines/{id}``."""
        with self.lock:
            pipeline = self._pipeline(pipeline_id)
            self.check_namespace(pipeline["namespace"])
            return public(pipeline)

    def get_pipeline_by_name(self, name: str, namespace: str) -> dict[str, Any]:
        """``GET /pipelines/names/{name}``."""
        self.check_namespace(namespace)
        pipeline = self.find_pipeline(name, namespace)
        if pipeline is None:
            raise ApiError(404, f"Pipeline with name {name!r} not found in namespace {namespace!r}")
        return public(pipeline)

    def list_pipelines(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /pipelines``."""
        namespace = query.get("namespace", "")
        self.check_namespace(namespace)
        with self.lock:
            items = [
                p for p in self.pipelines.values() if not namespace or p["namespace"] == namespace
            ]
            return self._list("pipelines", items, query, {"id": "pipeline_id"}, public)

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> dict[str, Any]:
        """``DELETE /pipelines/{id}``; refuses while versions exist unless ``cascade=true``."""
        with self.lock:
            pipeline = self._pipeline(pipeline_id)
            self.check_namespace(pipeline["namespace"])
            versions = [
                vid for vid, v in self.pipeline_versions.items() if v["pipeline_id"] == pipeline_id
            ]
            if versions and not cascade:
                raise ApiError(
                    400,
                    f"Failed to delete pipeline with id {pipeline_id} as it has existing pipeline versions "
                    "(try deleting the pipeline versions first)",
                )
            for version_id in versions:
                del self.pipeline_versions[version_id]
                del self.packages[version_id]
            del self.pipelines[pipeline_id]
            return {}

    def list_pipeline_versions(self, pipeline_id: str, query: dict[str, str]) -> dict[str, Any]:
        """``GET /pipelines/{id}/versions``."""
        with self.lock:
            pipeline = self._pipeline(pipeline_id)
            self.check_namespace(pipeline["namespace"])
            items = [v for v in self.pipeline_versions.values() if v["pipeline_id"] == pipeline_id]
            return self._list(
                "pipeline_versions",
                items,
                query,
                {"id": "pipeline_version_id"},
                self._public_version,
            )

    def get_pipeline_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """``GET /pipelines/{id}/versions/{version_id}``."""
        with self.lock:
            version = self._version(pipeline_id, version_id)
            self.check_namespace(self.pipelines[version["pipeline_id"]]["namespace"])
            return self._public_version(version)

    def delete_pipeline_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """``DELETE /pipelines/{id}/versions/{version_id}``."""
        with self.lock:
            version = self._version(pipeline_id, version_id)
            self.check_namespace(self.pipelines[version["pipeline_id"]]["namespace"])
            del self.pipeline_versions[version_id]
            del self.packages[version_id]
            return {}

    # -------------------------------------------------------------- experiments

    def create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /experiments``; display names are unique per namespace (409)."""
        name = body.get("display_name") or ""
        namespace = body.get("namespace") or ""
        if not name:
            raise ApiError(400, "Invalid input error: experiment display_name is empty")
        if self.multi_user and not namespace:
            raise ApiError(
                400, "Invalid input error: in multi-user mode, an experiment requires a namespace"
            )
        self.check_namespace(namespace)
        with self.lock:
            if any(
                e["display_name"] == name and e["namespace"] == namespace
                for e in self.experiments.values()
            ):
                raise ApiError(
                    409, f"Already exists: experiment {name!r} in namespace {namespace!r}"
                )
            return public(self._new_experiment(name, body.get("description") or "", namespace))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """``GET /experiments/{id}``."""
        with self.lock:
            experiment = self._experiment(experiment_id)
            self.check_namespace(experiment["namespace"])
            return public(experiment)

    def list_experiments(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /experiments``; ``namespace`` narrows the list when given."""
        namespace = self._list_namespace(query, "experiments")
        with self.lock:
            items = [
                e for e in self.experiments.values() if not namespace or e["namespace"] == namespace
            ]
            return self._list(
                "experiments", items, query, {"id": "experiment_id", "name": "display_name"}, public
            )

    def delete_experiment(self, experiment_id: str) -> dict[str, Any]:
        """``DELETE /experiments/{id}``."""
        with self.lock:
            self.check_namespace(self._experiment(experiment_id)["namespace"])
            del self.experiments[experiment_id]
            return {}

    def set_experiment_storage(self, experiment_id: str, storage_state: str) -> dict[str, Any]:
        """``POST /experiments/{id}:archive`` and ``:unarchive``."""
        with self.lock:
            experiment = self._experiment(experiment_id)
            self.check_namespace(experiment["namespace"])
            experiment["storage_state"] = storage_state
            return {}

    # --------------------------------------------------------------------- runs

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /runs``: validate like the backend, then start the simulated lifecycle."""
        display_name = body.get("display_name") or ""
        if not display_name:
            raise ApiError(400, "Invalid input error: run display_name is empty")
        with self.lock:
            experiment = self._experiment_for_run(body.get("experiment_id") or "")
            source = self._resolve_source(body)
            runtime_config = body.get("runtime_config") or {}
            self._validate_parameters(source.package, runtime_config)
            script = next(
                (s for s in self.run_scripts if s.matches(display_name, source.pipeline_names)),
                None,
            )
            created_at = now()
            run_id = str(uuid.uuid4())
            resource = {
                "run_id": run_id,
                "experiment_id": experiment["experiment_id"],
                **_run_fields(body, source, runtime_config),
                "storage_state": "AVAILABLE",
                "namespace": experiment["namespace"],
                "created_at": created_at,
                "scheduled_at": created_at,
                "finished_at": "",
                "state": "PENDING",
                "recurring_run_id": "",
            }
            tree = task_tree(source.package.pipeline_spec)
            run = SimulatedRun.create(resource, tree, self.run_polls, script, source.package.name)
            run.outputs = {task: {name: list(ids) for name, ids in outputs.items()}
                           for task, outputs in self.task_outputs.items()}
            self.runs[run_id] = run
            experiment["last_run_created_at"] = created_at
            return run.render()

    def get_run(self, run_id: str) -> dict[str, Any]:
        """``GET /runs/{id}``: each GET is one poll and advances the simulated run."""
        with self.lock:
            run = self._run(run_id)
            self.check_namespace(run.resource["namespace"])
            run.poll()
            return run.render()

    def get_artifact(self, artifact_id: str, view: str) -> dict[str, Any]:
        """``GET /artifacts/{id}`` (ArtifactService, backend/api/v2beta1/artifacts.proto): the
        artifact's URI and storage fields; the MLMD ID is an int64. ``view=DOWNLOAD`` would add a
        signed ``download_url``, which this server cannot sign."""
        if not artifact_id.isdigit():
            raise ApiError(400, f"Invalid input error: artifact id `{artifact_id}` is not an int64")
        if view.upper() == "DOWNLOAD":
            raise ApiError(501, "the test server does not sign download URLs (view=DOWNLOAD)")
        with self.lock:
            artifact = self.artifacts.get(artifact_id)
            if artifact is None:
                raise ApiError(404, f"NotFoundError: Failed to get artifact {artifact_id}: "
                               "artifact not found")
            return public(dict(artifact))

    def list_runs(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /runs``; ``experiment_id`` and ``namespace`` narrow the list (no poll counted)."""
        experiment_id = query.get("experiment_id", "")
        namespace = "" if experiment_id else self._list_namespace(query, "runs")
        with self.lock:
            for run in self.runs.values():
                run.render()
            items = [
                run.resource
                for run in self.runs.values()
                if (not experiment_id or run.resource["experiment_id"] == experiment_id)
                and (not namespace or run.resource["namespace"] == namespace)
            ]
            return self._list(
                "runs", items, query, {"id": "run_id", "name": "display_name"}, public
            )

    def change_run(self, run_id: str, action: str) -> dict[str, Any]:
        """``DELETE /runs/{id}`` and the ``:archive``/``:unarchive``/``:terminate``/``:retry`` verbs."""
        with self.lock:
            run = self._run(run_id)
            self.check_namespace(run.resource["namespace"])
            if action == "delete":
                del self.runs[run_id]
            elif action in ("archive", "unarchive"):
                run.resource["storage_state"] = "ARCHIVED" if action == "archive" else "AVAILABLE"
            elif action == "terminate":
                run.canceled = run.canceled or not run.finished
            elif action == "retry":
                run.retry()
            return {}

    # ----------------------------------------------------------- recurring runs

    def create_recurring_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /recurringruns``: validates trigger, concurrency, pipeline and parameters."""
        display_name = body.get("display_name") or ""
        if not display_name:
            raise ApiError(400, "Invalid input error: recurring run display_name is empty")
        trigger = validated_trigger(body.get("trigger") or {})
        max_concurrency = validated_max_concurrency(body.get("max_concurrency"))
        with self.lock:
            experiment = self._experiment_for_run(body.get("experiment_id") or "")
            source = self._resolve_source(body)
            runtime_config = body.get("runtime_config") or {}
            self._validate_parameters(source.package, runtime_config)
            enabled = body.get("mode") == "ENABLE"
            created_at = now()
            recurring_run_id = str(uuid.uuid4())
            resource = {
                "recurring_run_id": recurring_run_id,
                **_run_fields(body, source, runtime_config),
                "max_concurrency": str(max_concurrency),
                "trigger": trigger,
                "mode": "ENABLE" if enabled else "DISABLE",
                "created_at": created_at,
                "updated_at": created_at,
                "status": "ENABLED" if enabled else "DISABLED",
                "no_catchup": bool(body.get("no_catchup")),
                "namespace": experiment["namespace"],
                "experiment_id": experiment["experiment_id"],
            }
            self.recurring_runs[recurring_run_id] = resource
            return public(resource)

    def get_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """``GET /recurringruns/{id}``."""
        with self.lock:
            job = self._recurring_run(recurring_run_id)
            self.check_namespace(job["namespace"])
            return public(job)

    def list_recurring_runs(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /recurringruns``; ``experiment_id`` and ``namespace`` narrow the list."""
        experiment_id = query.get("experiment_id", "")
        namespace = "" if experiment_id else self._list_namespace(query, "recurring runs")
        with self.lock:
            items = [
                job
                for job in self.recurring_runs.values()
                if (not experiment_id or job["experiment_id"] == experiment_id)
                and (not namespace or job["namespace"] == namespace)
            ]
            # The proto field is literally named ``recurringRuns``, so that is the wire key
            # (and the key kfp_server_api's V2beta1ListRecurringRunsResponse reads).
            return self._list(
                "recurringRuns",
                items,
                query,
                {"id": "recurring_run_id", "name": "display_name"},
                public,
            )

    def change_recurring_run(self, recurring_run_id: str, action: str) -> dict[str, Any]:
        """``DELETE /recurringruns/{id}`` and the ``:enable``/``:disable`` verbs."""
        with self.lock:
            job = self._recurring_run(recurring_run_id)
            self.check_namespace(job["namespace"])
            if action == "delete":
                del self.recurring_runs[recurring_run_id]
            else:
                enabled = action == "enable"
                job.update(
                    mode="ENABLE" if enabled else "DISABLE",
                    status="ENABLED" if enabled else "DISABLED",
                    updated_at=now(),
                )
            return {}

    # ------------------------------------------------------------------ helpers

    def _list(
        self,
        collection: str,
        items: list[dict[str, Any]],
        query: dict[str, str],
        aliases: dict[str, str],
        render: Any,
    ) -> dict[str, Any]:
        """Apply filter/sort/paging and build a list response."""
        try:
            page, total, next_token = list_page(items, query, aliases=aliases)
        except ListError as error:
            raise ApiError(400, str(error)) from error
        return public(
            {
                collection: [render(item) for item in page],
                "total_size": total,
                "next_page_token": next_token,
            }
        )

    def _list_namespace(self, query: dict[str, str], kind: str) -> str:
        """The namespace a list call is scoped to (required in multi-user mode)."""
        namespace = query.get("namespace", "")
        if self.multi_user and not namespace:
            raise ApiError(
                400,
                f"Invalid input error: in multi-user mode, listing {kind} requires filtering by namespace",
            )
        self.check_namespace(namespace)
        return namespace

    def _parse_upload(self, filename: str, data: bytes, failure: str) -> ParsedPackage:
        """Parse an uploaded file; problems become the upload endpoints' 400 answer."""
        try:
            return parse_package(read_package_file(filename, data))
        except SpecError as error:
            raise ApiError(400, f"{failure}: {error}", upload=True) from error

    def _inline_version_package(self, body: dict[str, Any]) -> ParsedPackage:
        """The spec of a JSON-created version; this server cannot fetch ``package_url``."""
        if body.get("pipeline_spec"):
            try:
                return parse_inline_spec(body["pipeline_spec"])
            except SpecError as error:
                raise ApiError(400, f"Invalid input error: {error}") from error
        raise ApiError(
            400,
            "Invalid input error: the test server needs an inline pipeline_spec (it cannot fetch package_url)",
        )

    def _new_pipeline(
        self, name: str, display_name: str, description: str, namespace: str, tags: dict[str, str]
    ) -> dict[str, Any]:
        pipeline: dict[str, Any] = {
            "pipeline_id": str(uuid.uuid4()),
            "name": name,
            "display_name": display_name,
            "description": description,
            "created_at": now(),
            "namespace": namespace,
            "tags": tags,
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        return pipeline

    def _new_version(
        self,
        pipeline: dict[str, Any],
        name: str,
        display_name: str,
        description: str,
        package: ParsedPackage,
        tags: dict[str, str],
    ) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline["pipeline_id"],
            "pipeline_version_id": str(uuid.uuid4()),
            "name": name,
            "display_name": display_name,
            "description": description,
            "created_at": now(),
            "code_source_url": "",
            "tags": tags,
        }
        self.pipeline_versions[version["pipeline_version_id"]] = version
        self.packages[version["pipeline_version_id"]] = package
        return version

    def _public_version(self, version: dict[str, Any]) -> dict[str, Any]:
        """A version as returned by the API, with its stored spec."""
        package = self.packages[version["pipeline_version_id"]]
        return public({**version, "pipeline_spec": package.to_api_object()})

    def _new_experiment(self, name: str, description: str, namespace: str) -> dict[str, Any]:
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": name,
            "description": description,
            "created_at": now(),
            "namespace": namespace,
            "storage_state": "AVAILABLE",
            "last_run_created_at": "",
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _default_experiment(self) -> dict[str, Any]:
        """The shared "Default" experiment, created on first use like single-user KFP does."""
        for experiment in self.experiments.values():
            if (
                experiment["display_name"] == DEFAULT_EXPERIMENT_NAME
                and not experiment["namespace"]
            ):
                return experiment
        return self._new_experiment(DEFAULT_EXPERIMENT_NAME, DEFAULT_EXPERIMENT_DESCRIPTION, "")

    def _experiment_for_run(self, experiment_id: str) -> dict[str, Any]:
        """The run's experiment; an empty id means the default experiment, as in single-user KFP."""
        if experiment_id:
            experiment = self._experiment(experiment_id)
        elif self.multi_user:
            raise ApiError(
                400, "Invalid input error: in multi-user mode, a run requires an experiment_id"
            )
        else:
            experiment = self._default_experiment()
        self.check_namespace(experiment["namespace"])
        if experiment["storage_state"] == "ARCHIVED":
            raise ApiError(
                400, f"Failed precondition: experiment {experiment['experiment_id']} is archived"
            )
        return experiment

    def _resolve_source(self, body: dict[str, Any]) -> _Source:
        """Parse the inline spec or resolve the version reference (latest version if only a pipeline id)."""
        inline = body.get("pipeline_spec")
        reference = body.get("pipeline_version_reference") or {}
        if inline and reference:
            raise ApiError(
                400,
                "Invalid input error: set either pipeline_spec or pipeline_version_reference, not both",
            )
        if inline:
            try:
                package = parse_inline_spec(inline)
            except SpecError as error:
                raise ApiError(400, f"Invalid input error: {error}") from error
            return _Source(package, inline, None, {package.name})
        pipeline_id = reference.get("pipeline_id") or ""
        version_id = reference.get("pipeline_version_id") or ""
        if version_id:
            version = self._version(pipeline_id or None, version_id)
        elif pipeline_id:
            self._pipeline(pipeline_id)
            versions = [
                v for v in self.pipeline_versions.values() if v["pipeline_id"] == pipeline_id
            ]
            if not versions:
                raise ApiError(404, f"Pipeline {pipeline_id} has no versions")
            version = versions[-1]
        else:
            raise ApiError(
                400,
                "Invalid input error: a run needs a pipeline_spec or a pipeline_version_reference",
            )
        pipeline = self.pipelines[version["pipeline_id"]]
        package = self.packages[version["pipeline_version_id"]]
        reference_out = {
            "pipeline_id": version["pipeline_id"],
            "pipeline_version_id": version["pipeline_version_id"],
        }
        return _Source(
            package, None, reference_out, {package.name, pipeline["display_name"], pipeline["name"]}
        )

    @staticmethod
    def _validate_parameters(package: ParsedPackage, runtime_config: dict[str, Any]) -> None:
        try:
            validate_run_parameters(package.pipeline_spec, runtime_config.get("parameters"))
        except SpecError as error:
            raise ApiError(400, f"Invalid input error: {error}") from error

    def _pipeline(self, pipeline_id: str) -> dict[str, Any]:
        if pipeline_id not in self.pipelines:
            raise ApiError(404, f"Pipeline {pipeline_id} not found")
        return self.pipelines[pipeline_id]

    def _version(self, pipeline_id: str | None, version_id: str) -> dict[str, Any]:
        version = self.pipeline_versions.get(version_id)
        if version is None or (pipeline_id is not None and version["pipeline_id"] != pipeline_id):
            raise ApiError(404, f"Pipeline version {version_id} not found")
        return version

    def _experiment(self, experiment_id: str) -> dict[str, Any]:
        if experiment_id not in self.experiments:
            raise ApiError(404, f"Experiment {experiment_id} not found")
        return self.experiments[experiment_id]

    def _run(self, run_id: str) -> SimulatedRun:
        if run_id not in self.runs:
            raise ApiError(404, f"Run {run_id} not found")
        return self.runs[run_id]

    def _recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        if recurring_run_id not in self.recurring_runs:
            raise ApiError(404, f"Recurring run {recurring_run_id} not found")
        return self.recurring_runs[recurring_run_id]


def _stem(filename: str) -> str:
    """File name without directories and package extensions (the backend's default name)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".zip", ".yaml", ".yml", ".json"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _parse_tags(raw: str) -> dict[str, str]:
    """The upload endpoints' optional ``tags`` JSON map."""
    if not raw:
        return {}
    try:
        tags = json.loads(raw)
    except json.JSONDecodeError:
        tags = None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ApiError(
            400,
            "Failed to parse tags query parameter. Expected JSON object with string keys and values",
            upload=True,
        )
    return tags


def _run_fields(body: dict[str, Any], source: Any, runtime_config: dict[str, Any]) -> dict[str, Any]:
    """The fields a run and a recurring run share, as the backend fills them in."""
    return {
        "display_name": body.get("display_name") or "",
        "description": body.get("description") or "",
        "pipeline_version_id": (source.version_reference or {}).get("pipeline_version_id", ""),
        "pipeline_spec": source.pipeline_spec,
        "pipeline_version_reference": source.version_reference,
        "runtime_config": {
            "parameters": runtime_config.get("parameters") or {},
            "pipeline_root": runtime_config.get("pipeline_root") or "",
        },
        "service_account": body.get("service_account") or "",
    }
