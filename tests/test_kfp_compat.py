"""One test per private kfp API that skitflow/compile/kfp_compat.py relies on.

The version pin is not the only guard: when kfp renames, moves or reshapes one of these, the
test for that name fails with a message naming the installed kfp version and what changed, so
whoever upgrades kfp knows which shim in kfp_compat to revisit.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skitflow.compile import kfp_compat

kfp = kfp_compat.import_kfp()
VERSION = kfp.__version__
REPO = Path(__file__).resolve().parent.parent


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def _fresh_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_kfp_runtime_variable_skips_the_client_import() -> None:
    source = Path(inspect.getfile(kfp)).read_text(encoding="utf-8")
    assert kfp_compat.KFP_RUNTIME_VARIABLE in source, (
        f"kfp {VERSION}: kfp/__init__.py no longer reads {kfp_compat.KFP_RUNTIME_VARIABLE}; "
        "import_kfp() changed")
    loaded = _fresh_python("import sys; from skitflow.compile.kfp_compat import import_kfp; "
                           "k = import_kfp(); print('kfp.client' in sys.modules, "
                           "k.Client.__name__)")
    assert loaded == "False Client", (
        f"kfp {VERSION}: {kfp_compat.KFP_RUNTIME_VARIABLE}=true no longer keeps kfp.client out "
        f"of `import kfp` (got {loaded!r}); import_kfp() changed")


def test_kfp_kubernetes_imports_without_the_kubernetes_client() -> None:
    loaded = _fresh_python(
        "import sys; from skitflow.compile.kfp_compat import import_kfp_kubernetes; "
        "k = import_kfp_kubernetes(); print(callable(k.use_secret_as_env), "
        "'kubernetes.client' in sys.modules, 'kubernetes' in sys.modules)")
    assert loaded == "True False False", (
        f"kfp {VERSION}: kfp.kubernetes now needs the kubernetes client at import time "
        f"(got {loaded!r}); import_kfp_kubernetes() changed")


def test_pipeline_spec_builder_extract_comments() -> None:
    from kfp.compiler import pipeline_spec_builder

    function = getattr(pipeline_spec_builder, "extract_comments_from_pipeline_spec", None)
    assert function is not None, (
        f"kfp {VERSION}: kfp.compiler.pipeline_spec_builder.extract_comments_from_pipeline_spec "
        "is gone; package_comments() changed")
    assert _parameters(function) == ["pipeline_spec", "pipeline_description"], (
        f"kfp {VERSION}: extract_comments_from_pipeline_spec{inspect.signature(function)} changed")
    spec = {"pipelineInfo": {"name": "p"}, "root": {
        "inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}}}
    text = kfp_compat.package_comments(spec, "what it does")
    assert text.startswith("# PIPELINE DEFINITION\n# Name: p\n# Description: what it does"), (
        f"kfp {VERSION}: the package comment header changed: {text!r}")


def test_condition_evaluator_resolve_pipeline_channel() -> None:
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag

    evaluator = getattr(dag, "ConditionEvaluator", None)
    assert evaluator is not None, (
        f"kfp {VERSION}: kfp.local.orchestrator.enhanced_dag_orchestrator.ConditionEvaluator is "
        "gone; patch_kfp_local() changed")
    raw = inspect.getattr_static(evaluator, "_resolve_pipeline_channel", None)
    assert isinstance(raw, staticmethod), (
        f"kfp {VERSION}: ConditionEvaluator._resolve_pipeline_channel is gone or no longer a "
        "staticmethod; patch_kfp_local() changed")
    assert _parameters(raw.__func__) == ["channel_ref", "io_store"], (
        f"kfp {VERSION}: ConditionEvaluator._resolve_pipeline_channel"
        f"{inspect.signature(raw.__func__)} changed")


def test_orchestrator_utils_get_dag_output_artifacts() -> None:
    from kfp.local.orchestrator import orchestrator_utils

    utils = getattr(orchestrator_utils, "OrchestratorUtils", None)
    raw = inspect.getattr_static(utils, "get_dag_output_artifacts", None) if utils else None
    assert isinstance(raw, classmethod), (
        f"kfp {VERSION}: kfp.local.orchestrator.orchestrator_utils.OrchestratorUtils."
        "get_dag_output_artifacts is gone or no longer a classmethod; patch_kfp_local() changed")
    assert _parameters(raw.__func__) == ["cls", "dag_outputs_spec", "io_store"], (
        f"kfp {VERSION}: OrchestratorUtils.get_dag_output_artifacts"
        f"{inspect.signature(raw.__func__)} changed")


def test_io_store_get_task_output() -> None:
    from kfp.local import io

    method = getattr(getattr(io, "IOStore", None), "get_task_output", None)
    assert method is not None and _parameters(method) == ["self", "task_name", "key"], (
        f"kfp {VERSION}: kfp.local.io.IOStore.get_task_output(task_name, key), which the "
        "patched kfp.local functions call, changed")


def test_patch_kfp_local_is_applied_once() -> None:
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag
    from kfp.local.orchestrator import orchestrator_utils

    kfp_compat.patch_kfp_local()
    first = dag.ConditionEvaluator._resolve_pipeline_channel
    kfp_compat.patch_kfp_local()
    assert dag.ConditionEvaluator._resolve_pipeline_channel is first
    assert getattr(first, "_skitflow", False)
    assert getattr(orchestrator_utils.OrchestratorUtils.get_dag_output_artifacts, "_skitflow", False)


def test_client_load_config() -> None:
    from kfp.client import Client

    method = getattr(Client, "_load_config", None)
    assert method is not None, f"kfp {VERSION}: kfp.Client._load_config is gone; client_class() changed"
    assert "host" in _parameters(method), (
        f"kfp {VERSION}: kfp.Client._load_config{inspect.signature(method)} changed")
    assert "return config" in inspect.getsource(method) or "-> kfp_server_api.Configuration" in str(
        inspect.signature(method)), (
        f"kfp {VERSION}: kfp.Client._load_config no longer returns the Configuration")


def test_client_get_kfp_healthz() -> None:
    from kfp.client import Client

    method = getattr(Client, "get_kfp_healthz", None)
    assert method is not None and _parameters(method) == ["self", "sleep_duration"], (
        f"kfp {VERSION}: kfp.Client.get_kfp_healthz(sleep_duration) changed; client_class() "
        "overrides it")
    assert "get_kfp_healthz(" in inspect.getsource(Client.__init__), (
        f"kfp {VERSION}: kfp.Client() no longer asks healthz through get_kfp_healthz()")


def test_client_healthz_api_and_its_pool_manager(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With a namespace, kfp.Client() sends nothing: its private parts can be looked at."""
    from kfp.client import Client

    monkeypatch.setattr(Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "context.json"))
    client = kfp_compat.client_class(7.0)(host="http://127.0.0.1:9", namespace="team")
    assert hasattr(client, "_healthz_api"), (
        f"kfp {VERSION}: kfp.Client has no _healthz_api any more; client_class() changed")
    pool = client._healthz_api.api_client.rest_client.pool_manager
    assert isinstance(getattr(pool, "connection_pool_kw", None), dict), (
        f"kfp {VERSION}: Client._healthz_api.api_client.rest_client.pool_manager changed")
    kfp_compat.set_request_timeout(client)
    assert pool.connection_pool_kw["timeout"].read_timeout == 7.0
    retries = client._existing_config.retries
    assert retries.total == 0 and retries.redirect == 0 and not retries.raise_on_redirect, (
        f"kfp {VERSION}: the Configuration from _load_config no longer carries urllib3 retries")
    assert kfp_compat.client_healthz(client) is None


def test_service_account_token_credentials(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc")
    try:
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials
    except ImportError as exc:
        pytest.fail(f"kfp {VERSION}: kfp.client.set_volume_credentials moved: {exc}")
    credentials = kfp_compat.service_account_credentials(str(token))
    assert isinstance(credentials, ServiceAccountTokenVolumeCredentials)
    assert _parameters(ServiceAccountTokenVolumeCredentials) == ["path"], (
        f"kfp {VERSION}: ServiceAccountTokenVolumeCredentials(path) changed")


@pytest.mark.parametrize("module, names", [
    ("kfp.local.orchestrator.dag_orchestrator", ["run_dag"]),
    ("kfp.local.orchestrator.enhanced_dag_orchestrator", ["run_enhanced_dag"]),
    ("kfp.local.subprocess_task_handler", ["run_local_subprocess"]),
    ("kfp.local.cache", ["LocalCache", "_MissingArtifactError", "reset_local_cache_singleton"]),
    ("kfp.local.cache:LocalCache", ["_serialize_outputs", "_deserialize_outputs", "_entry_path"]),
])
def test_the_kfp_local_internals_the_runner_replaces_still_exist(module: str, names: list[str]) -> None:
    """`patch_kfp_local` swaps these private kfp.local names; a kfp upgrade that moves one must
    fail here, by name, not deep inside a run."""
    import importlib

    from skitflow.compile.kfp_compat import import_kfp

    kfp = import_kfp()
    path, _, owner = module.partition(":")
    found = importlib.import_module(path)
    if owner:
        found = getattr(found, owner)
    for name in names:
        assert hasattr(found, name), (
            f"kfp {kfp.__version__}: {module}.{name} is gone; update skitflow/compile/kfp_compat.py")


def test_linear_spec_builder_writes_kfps_own_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp_compat.linear_spec_builder: the spec kfp builds in linear time is the one it builds
    by itself (matrix branches, a sweep's select, Kubernetes options, an exit handler)."""
    import contextlib
    import inspect as _inspect

    from kfp.compiler import pipeline_spec_builder
    from kfp.dsl import utils

    from skitflow.compile import build
    from skitflow.recipe.loader import load_recipe_file, load_recipe_text
    from tests.test_notify import NOTIFY_RECIPE

    for name in ("create_pipeline_spec", "build_spec_by_group", "build_exit_handler_groups_recursively"):
        assert hasattr(pipeline_spec_builder, name), f"kfp {VERSION}: pipeline_spec_builder.{name} is gone"
    source = _inspect.getsource(pipeline_spec_builder.build_spec_by_group)
    assert "json_format.MessageToDict(deployment_config)" in source, (
        f"kfp {VERSION}: build_spec_by_group no longer converts the deployment config per group; "
        "linear_spec_builder() can go")
    assert hasattr(utils, "sanitize_task_name"), f"kfp {VERSION}: utils.sanitize_task_name is gone"
    valid = REPO / "tests" / "recipes" / "valid"
    recipes = {name: load_recipe_file(valid / name)
               for name in ("matrix-clients.yaml", "matrix-sweep.yaml", "kubernetes-options.yaml")}
    recipes["notify (an exit handler)"] = load_recipe_text(NOTIFY_RECIPE.format(path="data.csv"), "r.yaml")
    for recipe, loaded in recipes.items():
        fast = build.compile_loaded(loaded).text
        with monkeypatch.context() as patched:
            patched.setattr(build, "linear_spec_builder", contextlib.nullcontext)
            slow = build.compile_loaded(loaded).text
        assert fast == slow, f"kfp {VERSION}: linear_spec_builder() changed the package of {recipe}"
    assert pipeline_spec_builder.json_format.__name__ == "google.protobuf.json_format", \
        "linear_spec_builder() left its patch behind"
