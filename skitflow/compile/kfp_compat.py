"""Every private kfp API skitflow touches, in one module (kfp 2.17.3 is what it was written for).

kfp offers no public way to do these things, so each is named here and each has its own test in
``tests/test_kfp_compat.py`` that fails naming the installed kfp version when kfp changes it:

- ``_KFP_RUNTIME``: the switch kfp's executor sets so that ``kfp/__init__`` skips importing
  ``kfp.client`` (and with it the Kubernetes client, ~0.3 s); :func:`import_kfp` uses it for
  every `skitflow compile` and `skitflow run`. ``kfp.kubernetes`` imports the Kubernetes client
  again for one function skitflow never calls: :func:`import_kfp_kubernetes` stands in for it
  while ``kfp.kubernetes`` is imported and loads it only if something really uses it. Nothing
  global is left behind: ``kfp.Client`` still works (loaded on first use), and a later
  ``import kubernetes`` gets the real package.
- ``kfp.compiler.pipeline_spec_builder.extract_comments_from_pipeline_spec``: the comment header
  kfp's compiler writes above a package (:func:`package_comments`).
- ``kfp.local.orchestrator``'s ``ConditionEvaluator._resolve_pipeline_channel`` and
  ``OrchestratorUtils.get_dag_output_artifacts``, patched by :func:`patch_kfp_local` to close two
  gaps of kfp.local that stop packages Kubeflow runs fine from running locally.
- ``kfp.local.orchestrator.enhanced_dag_orchestrator``'s ``run_enhanced_dag``, ``execute_task``,
  ``_run_parallel_for_task``, ``_has_valid_iterator``, ``_has_task_final_status_input``,
  ``TaskKind``, ``ParallelExecutor``, and ``kfp.local.task_dispatcher.logging_utils``: the parallel
  DAG runner of `skitflow run --jobs` (:func:`patch_kfp_local`, tested in tests/test_run_jobs.py).
- ``kfp.Client._load_config``, ``Client._healthz_api`` (and the urllib3 pool manager behind it)
  and ``Client.get_kfp_healthz``, adjusted by :func:`client_class` so that skitflow's retry policy
  is the only one; ``kfp.client.set_volume_credentials`` for the service-account token file.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from skitflow.util.atomic import write_text
from skitflow.util.hashing import tree_digest

#: kfp/__init__ skips `from kfp.client import Client` while this is "true" (its executor sets it).
KFP_RUNTIME_VARIABLE = "_KFP_RUNTIME"


def import_kfp() -> types.ModuleType:
    """`kfp`, without importing `kfp.client` until someone asks for it."""
    if "kfp" not in sys.modules:
        previous = os.environ.get(KFP_RUNTIME_VARIABLE)
        os.environ[KFP_RUNTIME_VARIABLE] = "true"
        try:
            import kfp  # noqa: F401
        finally:
            if previous is None:
                del os.environ[KFP_RUNTIME_VARIABLE]
            else:
                os.environ[KFP_RUNTIME_VARIABLE] = previous
        sys.modules["kfp"].__getattr__ = _kfp_attribute  # type: ignore[attr-defined,method-assign]
    return sys.modules["kfp"]


def _kfp_attribute(name: str) -> Any:
    """What a plain `import kfp` would have set, loaded on first use."""
    if name == "Client":
        from kfp.client import Client

        return Client
    if name in ("client", "compiler", "components", "dsl", "local", "kubernetes"):
        return importlib.import_module(f"kfp.{name}")
    raise AttributeError(f"module 'kfp' has no attribute {name!r}")


class _Deferred(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then imports the real one."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(self.__name__), name)


def import_kfp_kubernetes() -> types.ModuleType:
    """`kfp.kubernetes`, with the Kubernetes API client imported only if it is really used."""
    import_kfp()
    if "kfp.kubernetes" in sys.modules or "kubernetes" in sys.modules:
        return importlib.import_module("kfp.kubernetes")
    package, client = _Deferred("kubernetes"), _Deferred("kubernetes.client")
    package.client = client  # type: ignore[attr-defined]
    sys.modules.update({"kubernetes": package, "kubernetes.client": client})
    try:
        return importlib.import_module("kfp.kubernetes")
    finally:  # the stand-ins stay only where kfp.kubernetes bound them
        for name, stand_in in (("kubernetes.client", client), ("kubernetes", package)):
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


# -- compile -------------------------------------------------------------------------------------


def package_comments(spec: dict[str, Any], description: str | None) -> str:
    """The comment block kfp's compiler writes above a package (inputs, outputs, description)."""
    import_kfp()
    from kfp.compiler import pipeline_spec_builder

    return str(pipeline_spec_builder.extract_comments_from_pipeline_spec(spec, description))


# -- kfp.local -----------------------------------------------------------------------------------


def patch_kfp_local(run_subprocess: Callable[..., int] | None = None, jobs: int = 1) -> None:
    """Fix gaps in kfp.local 2.17.3; idempotent, applied only inside `skitflow run`.

    1. Conditions on task outputs: kfp names such a channel `pipelinechannel--<task>-<output>`,
       but kfp.local's condition evaluator only recognises `<task>--<output>` and otherwise looks
       for a pipeline input, so every `dsl.If` on a task output (data conditions, gates) was False.
    2. `dsl.OneOf` over artifacts: a dsl.If/dsl.Else group's output selects from one producer per
       branch; kfp.local refuses any selector list longer than one. The branch that ran is taken.
    3. Independent tasks after a failure: a package without control flow goes to kfp.local's
       simple orchestrator (`dag_orchestrator.run_dag`), which returns at the first failed task,
       so sinks that do not depend on it never ran. Kubeflow runs them; kfp.local's enhanced
       orchestrator does too (it skips only the tasks downstream of a failure), so every package
       runs there.
    4. Task processes: `run_subprocess` (the runner's guarded process starter) replaces
       kfp.local's `run_local_subprocess`, with the same arguments and output.
    5. A verified cache: kfp.local's cache trusts any cached artifact file that still exists.
       Entries now record each local artifact's SHA-256 when the task finishes, and an artifact
       whose content no longer matches (edited, truncated) makes the entry a miss. Entries are
       written atomically, so concurrent runs sharing a cache never see a partial entry.

    6. Run identity: `{{$.pipeline_job_create_time_utc}}` is filled in once per run (kfp.local
       leaves it as it is), and each run's identity is kept for :func:`local_run_identity`.
    7. Parallel tasks (`jobs` > 1): kfp.local walks a DAG's tasks one at a time. The DAG runner
       here has the enhanced orchestrator's semantics but starts each task as soon as its
       dependencies are done, on threads, with at most `jobs` task processes at once (one
       semaphore for the whole run; nested DAGs take no slot, so they cannot deadlock).
       kfp.local's per-task logger and print indentation swap process-wide state; they are made
       safe to enter from several threads. `jobs` = 1 is kfp.local's own runner, unchanged.

    The package itself is unchanged.
    """
    _fill_run_create_time()
    _fix_conditions_and_oneof()
    from kfp.local import subprocess_task_handler
    from kfp.local.orchestrator import dag_orchestrator
    from kfp.local.orchestrator import enhanced_dag_orchestrator as enhanced

    _install_parallel_dag_runner()
    dag_orchestrator.run_dag = enhanced.run_enhanced_dag
    set_local_jobs(jobs)
    if run_subprocess is not None:
        subprocess_task_handler.run_local_subprocess = run_subprocess
    _verify_cached_artifacts()


class _Jobs:
    """The current run's task slots: None runs kfp.local's own sequential orchestrator."""

    slots: threading.BoundedSemaphore | None = None
    stopping = threading.Event()


def set_local_jobs(jobs: int) -> None:
    """At most `jobs` task processes at once in the following local runs (1: one at a time)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    _Jobs.slots = threading.BoundedSemaphore(jobs) if jobs > 1 else None
    _Jobs.stopping = threading.Event()


def stop_local_tasks() -> None:
    """No task process starts any more in this run (the run was interrupted)."""
    _Jobs.stopping.set()


def local_tasks_stopping() -> bool:
    """Whether this run was interrupted: a task that ends now was stopped, it did not fail."""
    return _Jobs.stopping.is_set()


def _install_parallel_dag_runner() -> None:
    from kfp.local import logging_utils, task_dispatcher
    from kfp.local.orchestrator import enhanced_dag_orchestrator as enhanced

    if getattr(enhanced.run_enhanced_dag, "_skitflow", False):
        return
    sequential_dag, sequential_task = enhanced.run_enhanced_dag, enhanced.execute_task

    def run_dag(*args: Any, **kwargs: Any) -> Any:
        if _Jobs.slots is None:
            return sequential_dag(*args, **kwargs)
        return _run_dag_in_parallel(*args, **kwargs)

    def execute_task(**kwargs: Any) -> Any:
        slots = _Jobs.slots
        component = kwargs["components"][kwargs["task_spec"].component_ref.name]
        if slots is None or component.WhichOneof("implementation") == "dag":
            return sequential_task(**kwargs)  # a nested DAG comes back to run_dag: no slot held
        with slots:
            if _Jobs.stopping.is_set():
                from kfp.local import status

                return {}, status.Status.FAILURE
            return sequential_task(**kwargs)

    run_dag._skitflow = True  # type: ignore[attr-defined]
    enhanced.run_enhanced_dag = run_dag
    enhanced.execute_task = execute_task
    task_dispatcher.logging_utils = _shared_logging_utils(logging_utils)


def _shared_logging_utils(logging_utils: types.ModuleType) -> types.ModuleType:
    """kfp.local's logging helpers for the task dispatcher, safe to enter from several threads:
    `local_logger_context` swaps the root logger's handlers and `indented_print` swaps
    `builtins.print`, each restoring what it saw on entry, so two overlapping tasks left the
    other's handler (or indentation) installed for good. Here the first task in installs them
    and the last one out restores them."""
    lock = threading.Lock()
    entered = {"logger": 0, "print": 0}
    saved: dict[str, Any] = {}

    def shared(name: str, original: Callable[[], Any]) -> Callable[[], Any]:
        @contextlib.contextmanager
        def context() -> Iterator[None]:
            with lock:
                if entered[name] == 0:
                    saved[name] = original()
                    saved[name].__enter__()
                entered[name] += 1
            try:
                yield
            finally:
                with lock:
                    entered[name] -= 1
                    if entered[name] == 0:
                        saved.pop(name).__exit__(None, None, None)
        return context

    wrapper = types.ModuleType("kfp_local_logging_utils_shared")
    wrapper.__dict__.update({k: v for k, v in vars(logging_utils).items() if not k.startswith("__")})
    wrapper.local_logger_context = shared("logger", logging_utils.local_logger_context)  # type: ignore[attr-defined]
    wrapper.indented_print = shared("print", logging_utils.indented_print)  # type: ignore[attr-defined]
    return wrapper


def _run_dag_in_parallel(
    pipeline_resource_name: str, dag_component_spec: Any, executors: Any, components: Any,
    dag_arguments: dict[str, Any], pipeline_root: str, runner: Any, unique_pipeline_id: str,
    fail_stack: list[str], parent_io_store: Any = None,
) -> tuple[dict[str, Any], Any]:
    """`run_enhanced_dag` (kfp 2.17.3) with every ready task started at once, on threads.

    Same semantics: condition tasks run only when their condition holds; ParallelFor goes to
    kfp's `_run_parallel_for_task`; a task whose upstream failed is skipped unless its trigger
    strategy is ALL_UPSTREAM_TASKS_COMPLETED; exit tasks run after the body, in order; then the
    DAG's outputs. Task slots are taken in `execute_task`, not here."""
    import concurrent.futures as futures

    from kfp.local import graph_utils, io, status
    from kfp.local.orchestrator import enhanced_dag_orchestrator as enhanced
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
    from kfp.pipeline_spec import pipeline_spec_pb2

    arguments = OrchestratorUtils.join_user_inputs_and_defaults(
        dag_arguments=dag_arguments, dag_inputs_spec=dag_component_spec.input_definitions)
    io_store = io.IOStore(parent=parent_io_store)
    for key, value in arguments.items():
        io_store.put_parent_input(key, value)
    strategy = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy
    on_completion = strategy.ALL_UPSTREAM_TASKS_COMPLETED

    exit_tasks: list[tuple[str, Any]] = []
    body: dict[str, Any] = {}
    kinds: dict[str, enhanced.TaskKind] = {}
    for name, spec in dag_component_spec.dag.tasks.items():
        if spec.trigger_policy.strategy == on_completion and enhanced._has_task_final_status_input(spec):
            exit_tasks.append((name, spec))
            continue
        body[name] = spec
        if spec.trigger_policy.condition:
            kinds[name] = enhanced.TaskKind.CONDITION
        elif spec.WhichOneof("iterator") and enhanced._has_valid_iterator(spec):
            kinds[name] = enhanced.TaskKind.PARALLEL_FOR
        else:
            kinds[name] = enhanced.TaskKind.REGULAR
    common = dict(pipeline_resource_name=pipeline_resource_name, components=components,
                  executors=executors, io_store=io_store, pipeline_root=pipeline_root,
                  runner=runner, unique_pipeline_id=unique_pipeline_id, fail_stack=fail_stack)

    def execute(name: str, spec: Any) -> bool:
        """Run one task, record its status and (when it succeeded) its outputs; True when it failed."""
        outputs, task_status = enhanced.execute_task(task_name=name, task_spec=spec, **common)
        failed = task_status == status.Status.FAILURE
        io_store.put_task_status(name, "FAILED" if failed else "SUCCEEDED")
        if failed:
            fail_stack.append(name)
            return True
        for key, output in outputs.items():
            io_store.put_task_output(name, key, output)
        return False

    def run_one(name: str) -> bool:
        """Run one body task; True when it failed."""
        spec, kind = body[name], kinds[name]
        if kind == enhanced.TaskKind.PARALLEL_FOR:
            return bool(enhanced._run_parallel_for_task(
                task_name=name, task_spec=spec, parallel_executor=enhanced.ParallelExecutor(),
                **common))
        if kind == enhanced.TaskKind.CONDITION and not enhanced.ConditionEvaluator.evaluate_condition(
                spec.trigger_policy.condition, io_store):
            logging.info(f"Skipping conditional task {name} (condition evaluated to False)")
            return False
        return execute(name, spec)

    # kfp's topological order, popped from the right: ready tasks start in that order
    order = graph_utils.topological_sort_tasks(body)[::-1] if body else []
    upstream = {name: [d for d in body[name].dependent_tasks if d in body] for name in body}
    done: set[str] = set()
    failed: set[str] = set()
    started: set[str] = set()
    body_failed = False
    with futures.ThreadPoolExecutor(max_workers=max(len(body), 1),
                                    thread_name_prefix="skitflow-task") as pool:
        running: dict[futures.Future[bool], str] = {}
        try:
            while len(done) < len(body):
                for name in order:
                    if name in started or not all(d in done for d in upstream[name]):
                        continue
                    started.add(name)
                    failed_deps = [d for d in body[name].dependent_tasks if d in failed]
                    if failed_deps and body[name].trigger_policy.strategy != on_completion:
                        logging.info(f"Skipping task {name}: upstream task(s) "
                                     f"{sorted(failed_deps)} failed.")
                        io_store.put_task_status(name, "FAILED")
                        failed.add(name)
                        done.add(name)
                        body_failed = True
                        continue
                    running[pool.submit(run_one, name)] = name
                if len(done) == len(body):
                    break
                if not running:  # a cycle kfp's sort would have refused; never in a package
                    raise RuntimeError(f"tasks {sorted(set(body) - done)} can never start")
                finished, _ = futures.wait(running, timeout=0.5, return_when=futures.FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    done.add(name)
                    if future.result():  # an error of kfp.local's own propagates, as there
                        failed.add(name)
                        body_failed = True
        except BaseException:  # interrupted (or kfp.local broke): start nothing more
            _Jobs.stopping.set()
            raise

    if body_failed and not exit_tasks:
        return {}, status.Status.FAILURE
    exit_failed = False
    for name, spec in exit_tasks:
        exit_failed = execute(name, spec) or exit_failed
    if body_failed or exit_failed:
        return {}, status.Status.FAILURE
    return OrchestratorUtils.get_dag_outputs(dag_outputs_spec=dag_component_spec.dag.outputs,
                                             io_store=io_store), status.Status.SUCCESS


_CREATE_TIME = "{{$.pipeline_job_create_time_utc}}"
#: pipeline root -> {"id", "name", "created"} of the last run kfp.local started there
_IDENTITIES: dict[str, dict[str, str]] = {}


def local_run_identity(pipeline_root: str) -> dict[str, str] | None:
    """The identity kfp.local gave the last run under `pipeline_root` (None: no task started)."""
    return _IDENTITIES.get(pipeline_root)


def _fill_run_create_time() -> None:
    """kfp.local substitutes the job id and name placeholders but leaves
    `{{$.pipeline_job_create_time_utc}}` as it is: substitute the time the run's first task
    started (one value per run, as Kubeflow's driver does), and remember each run's identity by
    pipeline root, so `skitflow run` can record it in summary.json."""
    import datetime as dt

    from kfp.local import placeholder_utils

    if getattr(placeholder_utils.replace_placeholders, "_skitflow", False):
        return
    replace_placeholders = placeholder_utils.replace_placeholders
    resolve_individual = placeholder_utils.resolve_individual_placeholder

    def replace(full_command: Any, executor_input_dict: Any, pipeline_resource_name: str,
                task_resource_name: str, pipeline_root: str, unique_pipeline_id: str) -> Any:
        known = _IDENTITIES.get(pipeline_root)
        if known is None or known["id"] != unique_pipeline_id:
            created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
            _IDENTITIES[pipeline_root] = {"id": unique_pipeline_id, "name": pipeline_resource_name,
                                          "created": created.replace("+00:00", "Z")}
        return replace_placeholders(full_command, executor_input_dict, pipeline_resource_name,
                                    task_resource_name, pipeline_root, unique_pipeline_id)

    def resolve(element: str, *args: Any, **kwargs: Any) -> Any:
        if _CREATE_TIME in element:
            known = _IDENTITIES.get(kwargs.get("pipeline_root", ""))
            if known is not None:
                element = element.replace(_CREATE_TIME, known["created"])
        return resolve_individual(element, *args, **kwargs)

    replace._skitflow = True  # type: ignore[attr-defined]
    placeholder_utils.replace_placeholders = replace
    placeholder_utils.resolve_individual_placeholder = resolve


def _fix_conditions_and_oneof() -> None:
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag
    from kfp.local.orchestrator import orchestrator_utils

    evaluator = dag.ConditionEvaluator
    if not getattr(evaluator._resolve_pipeline_channel, "_skitflow", False):
        original = evaluator._resolve_pipeline_channel

        def resolve(channel_ref: str, io_store: Any) -> Any:
            name = channel_ref.replace("pipelinechannel--", "")
            for cut in [i for i, char in enumerate(name) if char == "-"][::-1]:
                try:
                    return io_store.get_task_output(name[:cut], name[cut + 1:])
                except (ValueError, KeyError):
                    continue
            return original(channel_ref, io_store)

        resolve._skitflow = True  # type: ignore[attr-defined]
        evaluator._resolve_pipeline_channel = staticmethod(resolve)

    utils = orchestrator_utils.OrchestratorUtils
    if not getattr(utils.get_dag_output_artifacts, "_skitflow", False):

        def get_dag_output_artifacts(cls: Any, dag_outputs_spec: Any, io_store: Any) -> dict[str, Any]:
            outputs = {}
            for key, spec in dag_outputs_spec.artifacts.items():
                for selector in spec.artifact_selectors:  # one per branch: the one that ran
                    try:
                        outputs[key] = io_store.get_task_output(
                            selector.producer_subtask, selector.output_artifact_key)
                        break
                    except ValueError:
                        continue
                else:
                    raise ValueError(f"no branch produced the output artifact `{key}`")
            return outputs

        get_dag_output_artifacts._skitflow = True  # type: ignore[attr-defined]
        utils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)


def _local_artifact_paths(outputs: dict[str, Any]) -> list[str]:
    from kfp import dsl

    paths = []
    for value in outputs.values():
        for item in value if isinstance(value, list) else [value]:
            uri = getattr(item, "uri", "") if isinstance(item, dsl.Artifact) else ""
            if uri and "://" not in uri and os.path.exists(uri):
                paths.append(uri)
    return paths


def _verified_cache_class() -> type:
    from kfp.local import cache

    class VerifiedCache(cache.LocalCache):  # type: ignore[misc]
        """kfp.local's cache, with each local artifact's checksum recorded and checked."""

        _skitflow = True

        def put(self, key: str, outputs: dict[str, Any]) -> None:
            entry = {
                "skitflow": 1,
                "outputs": self._serialize_outputs(outputs),
                "checksums": {path: tree_digest(path) for path in _local_artifact_paths(outputs)},
            }
            write_text(self._entry_path(key), json.dumps(entry, sort_keys=True))

        def get(self, key: str) -> dict[str, Any] | None:
            path = self._entry_path(key)
            try:
                with open(path, encoding="utf-8") as handle:
                    entry = json.load(handle)
            except FileNotFoundError:
                return None
            except (OSError, ValueError) as exc:
                logging.info(f"Cache entry {key[:12]} unreadable ({exc}); running the task again.")
                return None
            if not isinstance(entry, dict) or entry.get("skitflow") != 1:
                return None  # written without checksums: nothing to verify it by
            for uri, digest in entry.get("checksums", {}).items():
                if not os.path.exists(uri) or tree_digest(uri) != digest:
                    logging.info(f"Cache entry {key[:12]} rejected: {uri} changed after its task "
                                 "wrote it; running the task again.")
                    return None
            try:
                return self._deserialize_outputs(entry["outputs"])
            except cache._MissingArtifactError:
                return None

    return VerifiedCache


def _verify_cached_artifacts() -> None:
    from kfp.local import cache

    if not getattr(cache.LocalCache, "_skitflow", False):
        cache.LocalCache = _verified_cache_class()
        cache.reset_local_cache_singleton()


# -- kfp.Client ----------------------------------------------------------------------------------


_CLIENT_CLASSES: dict[float, type] = {}


def client_class(timeout: float) -> type:
    """kfp.Client, adjusted so that skitflow's retry policy is the only one.

    - healthz is tried once (kfp would try 5 times, 5 s apart, before saying anything), and its
      answer is kept for :func:`client_healthz`;
    - urllib3 retries nothing and follows no redirects (a redirect means a login page);
    - every request has a timeout (kfp sets none, so a hung proxy would hang the submit):
      call :func:`set_request_timeout` on a new client.
    """
    if timeout in _CLIENT_CLASSES:
        return _CLIENT_CLASSES[timeout]
    import_kfp()
    import urllib3
    from kfp.client import Client

    from skitflow.util.retry import no_urllib3_retries

    class SkitflowClient(Client):  # type: ignore[misc]
        def _load_config(self, *args: Any, **kwargs: Any) -> Any:
            config = super()._load_config(*args, **kwargs)
            config.retries = no_urllib3_retries()
            return config

        def get_kfp_healthz(self, sleep_duration: int = 0) -> Any:
            """One healthz request; the raw body is kept too, for `tag_name` and `commit_sha`,
            which the API server sends but the v2beta1 model drops."""
            from kfp_server_api.models import V2beta1GetHealthzResponse

            set_request_timeout(self)
            response = self._healthz_api.healthz_service_get_healthz(_preload_content=False)
            try:
                raw = json.loads(response.data or b"{}")
            except ValueError:
                raw = {}
            self._skitflow_healthz_raw = raw if isinstance(raw, dict) else {}
            self._skitflow_healthz = V2beta1GetHealthzResponse(
                multi_user=self._skitflow_healthz_raw.get("multi_user"),
                pipeline_store=self._skitflow_healthz_raw.get("pipeline_store"))
            return self._skitflow_healthz

        def _skitflow_timeout(self) -> Any:
            return urllib3.Timeout(connect=min(timeout, 15.0), read=timeout)

    _CLIENT_CLASSES[timeout] = SkitflowClient
    return SkitflowClient


def set_request_timeout(client: Any) -> None:
    """Give every request of a :func:`client_class` client its timeout (one shared pool)."""
    pool = client._healthz_api.api_client.rest_client.pool_manager
    pool.connection_pool_kw["timeout"] = client._skitflow_timeout()


def client_healthz(client: Any) -> Any:
    """The healthz answer a :func:`client_class` client got at construction, or None."""
    return getattr(client, "_skitflow_healthz", None)


def client_healthz_raw(client: Any) -> dict[str, Any]:
    """The raw healthz body (with `tag_name`), asked for again if the client has none yet."""
    if getattr(client, "_skitflow_healthz_raw", None) is None:
        client.get_kfp_healthz()
    return dict(client._skitflow_healthz_raw)


def service_account_credentials(token_path: str) -> Any:
    """kfp's credentials that re-read a projected service-account token file on every request."""
    import_kfp()
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    return ServiceAccountTokenVolumeCredentials(token_path)


# -- API server endpoints kfp_server_api has no class for (the v2beta1 ArtifactService) -----------


def client_get_json(client: Any, path: str) -> Any:
    """GET one API server path through the client's own ApiClient (host, auth, timeout) as JSON;
    kfp_server_api 2.x has no ArtifactServiceApi, so `GET /apis/v2beta1/artifacts/{id}` goes here."""
    return client._run_api.api_client.call_api(
        path, "GET", {}, [], {"Accept": "application/json"}, response_type="object",
        auth_settings=["Bearer"], _return_http_data_only=True, _preload_content=True)


# -- compile: linear pipeline-spec building (matrix branches) --------------------------------------
# Kept in its own section so that edits to the kfp.local patches above merge cleanly.


@contextlib.contextmanager
def linear_spec_builder() -> Iterator[None]:
    """While kfp builds a pipeline spec, make its cost linear in the task count; the spec is the
    same message, byte for byte.

    kfp 2.17.3's ``pipeline_spec_builder.build_spec_by_group`` runs once per group (each `dsl.If`
    of a matrix branch is one) and ends with ``pipeline_spec.deployment_spec.update(
    json_format.MessageToDict(deployment_config))``: every executor so far converted again, so 128
    branches cost 129 conversions of up to 640 executors. `Struct.update` replaces the one
    ``executors`` key wholly, so only the last conversion counts: inside this context the
    conversions of a ``PipelineDeploymentConfig`` made by ``build_spec_by_group`` and
    ``build_exit_handler_groups_recursively`` return ``{}`` and ``create_pipeline_spec`` converts the
    final one once (nothing reads ``pipeline_spec.deployment_spec`` in between; sub-pipelines
    merge into ``deployment_config``). Its loop also re-sanitises every sibling's name per task
    (n² calls of a pure regex function, ``kfp.dsl.utils.sanitize_task_name``): memoised here.
    tests/test_kfp_compat.py checks the output against kfp's own path.
    """
    import_kfp()
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder as builder
    from kfp.dsl import utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    seen: list[list[Any]] = [[]]  # one list per create_pipeline_spec in progress (nested ones)
    real_convert = json_format.MessageToDict

    class _Deferring(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(json_format, name)

        @staticmethod
        def MessageToDict(message: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 (kfp's name)
            if isinstance(message, pipeline_spec_pb2.PipelineDeploymentConfig) and not args \
                    and not kwargs:
                seen[-1].append(message)
                return {}
            return real_convert(message, *args, **kwargs)

    real_create = builder.create_pipeline_spec

    def create_pipeline_spec(*args: Any, **kwargs: Any) -> Any:
        seen.append([])
        try:
            pipeline_spec, platform_spec = real_create(*args, **kwargs)
            if seen[-1]:
                pipeline_spec.deployment_spec.update(real_convert(seen[-1][-1]))
        finally:
            seen.pop()
        return pipeline_spec, platform_spec

    real_sanitize = utils.sanitize_task_name
    saved = (builder.json_format, builder.create_pipeline_spec, utils.sanitize_task_name)
    builder.json_format = _Deferring("json_format")  # type: ignore[assignment]
    builder.create_pipeline_spec = create_pipeline_spec  # type: ignore[assignment]
    utils.sanitize_task_name = functools.lru_cache(maxsize=None)(real_sanitize)  # type: ignore[assignment]
    try:
        yield
    finally:
        builder.json_format, builder.create_pipeline_spec, utils.sanitize_task_name = saved  # type: ignore[assignment]
