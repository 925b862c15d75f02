"""`skitflow submit` / `skitflow schedules` through the CLI, the real kfp.Client and the KFP test
server over HTTP on 127.0.0.1.

No `from __future__ import annotations` here, like test_kfp_server.py (kfp reads annotations).
"""

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kfp
import kfp.client.client as kfp_client_module
import pytest
from typer.testing import CliRunner

from skitflow.api import compile_recipe
from skitflow.cli.app import app
from skitflow.submit import config
from skitflow.submit.client import Credentials, RetryPolicy, credentials_from
from skitflow.submit.reconcile import normalise_cron, schedule_spec
from skitflow.util.redact import redact
from tests.kfp_server import KfpTestServer, bearer_token, running_kfp_server, session_cookie

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

RECIPE = """\
apiVersion: skitflow/v1
name: submit-demo
description: A small recipe for submit tests.
{version}parameters:
  columns: {{type: list, default: [a, b]}}
  renames: {{type: dict, default: {{a: x}}}}
  limit: {{type: int, default: 10}}
  ratio: {{type: float, default: 0.5}}
  verbose: {{type: bool, default: false}}
  label: {{type: str, default: demo}}
source:
  csv: {{path: "s3://data/rows.csv", columns: [a, b, c]}}
steps:
  - select_columns: {{columns: "{{{{ params.columns }}}}"}}
  - rename_columns: {{mapping: "{{{{ params.renames }}}}"}}
    isolate: true
sinks:
  - s3: {{uri: "s3://out/{{{{ params.label }}}}.{suffix}", format: csv}}
{schedule}"""
SCHEDULE = """\
schedule:
  cron: "0 0 3 * * *"
  max_concurrency: 2
  start: 2030-01-01T00:00:00Z
"""
REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = ("KFP_HOST", "KFP_NAMESPACE", "KFP_EXPERIMENT", "KFP_TOKEN", "KFP_COOKIE",
               "KF_PIPELINES_SA_TOKEN_PATH", kfp_client_module.KF_PIPELINES_ENDPOINT_ENV,
               kfp_client_module.KF_PIPELINES_UI_ENDPOINT_ENV)


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user kfp context, no KFP_* variables, no project files; short backoff and polls."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SKITFLOW_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("SKITFLOW_POLL_INTERVAL", "0.01")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server():
    with running_kfp_server() as running:
        yield running


def write_recipe(tmp_path: Path, *, version: str | None = None, schedule: bool = False,
                 suffix: str = "csv", name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(RECIPE.format(version=f"version: {version}\n" if version else "",
                                  schedule=SCHEDULE if schedule else "", suffix=suffix))
    return path


def skitflow(*args: object):
    """The CLI in-process; stdout and stderr apart."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def submit(server: KfpTestServer, recipe: Path, *args: object):
    return skitflow("submit", recipe, "--host", server.url, *args)


def run_ids(server: KfpTestServer) -> list[str]:
    return list(server.state.runs)


def posts(server: KfpTestServer, since: int = 0) -> list[str]:
    return [r.path for r in server.state.requests[since:] if r.method == "POST"]


# --------------------------------------------------------------------- submit and versions


def test_first_submit_uploads_a_content_named_version_and_starts_a_run(server, tmp_path):
    recipe = write_recipe(tmp_path)
    result = submit(server, recipe)

    assert result.exit_code == 0, result.output
    package = compile_recipe(recipe)
    expected_version = "v-" + hashlib.sha256(package.text.encode()).hexdigest()[:12]
    [pipeline] = server.state.pipelines.values()
    [version] = server.state.pipeline_versions.values()
    [run] = server.state.runs.values()
    assert pipeline["name"] == "submit-demo"
    assert version["name"] == expected_version and version["pipeline_id"] == pipeline["pipeline_id"]
    assert run.resource["pipeline_version_reference"]["pipeline_version_id"] == version[
        "pipeline_version_id"]
    run_id = run.resource["run_id"]
    assert f"run id: {run_id}" in result.stdout
    assert f"run: {server.url}/#/runs/details/{run_id}" in result.stdout
    assert "(created)" in result.stdout and "(uploaded)" in result.stdout
    assert "Pipeline details" not in result.output  # kfp's own prints are kept out
    assert server.state.packages[version["pipeline_version_id"]].name == "submit-demo"


def test_unchanged_resubmit_reuses_the_version_and_only_starts_a_run(server, tmp_path):
    recipe = write_recipe(tmp_path)
    assert submit(server, recipe).exit_code == 0
    before = len(server.state.requests)

    again = submit(server, recipe)

    assert again.exit_code == 0, again.output
    assert "unchanged, reused" in again.stdout
    assert len(server.state.pipelines) == 1 and len(server.state.pipeline_versions) == 1
    assert len(server.state.runs) == 2
    assert posts(server, before) == ["/apis/v2beta1/runs"]


def test_changed_recipe_adds_exactly_one_version(server, tmp_path):
    assert submit(server, write_recipe(tmp_path)).exit_code == 0
    changed = write_recipe(tmp_path, suffix="txt")

    result = submit(server, changed, "--no-run")

    assert result.exit_code == 0, result.output
    assert len(server.state.pipelines) == 1
    names = sorted(v["name"] for v in server.state.pipeline_versions.values())
    assert len(names) == 2 and names[0] != names[1]
    assert len(server.state.runs) == 1  # --no-run only uploaded


def test_recipe_version_prefixes_the_version_name(server, tmp_path):
    result = submit(server, write_recipe(tmp_path, version="1.4.0"), "--no-run")

    assert result.exit_code == 0, result.output
    [version] = server.state.pipeline_versions.values()
    assert version["name"].startswith("1.4.0-") and len(version["name"]) == len("1.4.0-") + 12
    assert not server.state.runs


# -------------------------------------------------------------------------------- parameters


def test_parameters_are_typed_for_the_api(server, tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("limit: 7\nlabel: from-file\n")

    result = submit(server, write_recipe(tmp_path), "--params-file", params_file,
                    "-p", "columns=[a, c]", "-p", 'renames={"a": "y", "c": "z"}',
                    "-p", "ratio=1", "-p", "verbose=yes", "-p", "label=cli")

    assert result.exit_code == 0, result.output
    [create] = server.state.requests_to("/runs$", method="POST")
    parameters = create.json()["runtime_config"]["parameters"]
    # lists and dicts travel as JSON text (a protobuf Struct would turn their ints into floats)
    assert parameters == {"columns": '["a","c"]', "renames": '{"a":"y","c":"z"}', "limit": 7,
                          "ratio": 1.0, "verbose": True, "label": "cli"}
    assert isinstance(parameters["ratio"], float)


GRID_RECIPE = """\
apiVersion: skitflow/v1
name: grid-demo
parameters:
  grid: {type: dict, default: {n_estimators: 50, max_depth: 3}}
  layers: {type: list, default: [1, 2]}
source:
  csv: {path: "s3://data/rows.csv", columns: [a, b, label]}
steps:
  - select_columns: {columns: [a, b, label]}
split:
  train_test: {test_size: 0.5}
trainer:
  xgboost: {target: label, params: "{{ params.grid }}"}
"""


def test_dict_parameters_keep_their_ints_through_submit(server, tmp_path):
    from skitflow.recipe.models import Parameter, coerce_parameter

    recipe = tmp_path / "grid.yaml"
    recipe.write_text(GRID_RECIPE)
    result = submit(server, recipe, "-p", 'grid={"max_depth": 4, "n_estimators": 5}')

    assert result.exit_code == 0, result.output
    [create] = server.state.requests_to("/runs$", method="POST")
    parameters = create.json()["runtime_config"]["parameters"]
    assert parameters == {"grid": '{"max_depth":4,"n_estimators":5}', "layers": "[1,2]"}
    # the package declares them as strings, so the backend passes the text through untouched ...
    # (the server validated the values against these declarations, as the backend does)
    from kfp.pipeline_spec import pipeline_spec_pb2

    [package] = server.state.packages.values()
    declared = package.pipeline_spec.root.input_definitions.parameters
    string = pipeline_spec_pb2.ParameterType.STRING
    assert declared["grid"].parameter_type == string and declared["layers"].parameter_type == string
    # ... and the task decodes it with the declared type: ints stay ints
    grid = coerce_parameter("grid", Parameter(type="dict"), parameters["grid"])
    assert grid == {"max_depth": 4, "n_estimators": 5}
    assert all(type(v) is int for v in grid.values())


@pytest.mark.parametrize("assignment, message", [
    ("limit=many", "`limit` expects an int, got `many`"),
    ("colour=red", "unknown parameter `colour`"),
    ("label=" + "x" * 10_001, "Kubeflow refuses values over 10000"),
])
def test_bad_parameter_is_refused_before_any_request(server, tmp_path, assignment, message):
    result = submit(server, write_recipe(tmp_path), "-p", assignment)

    assert result.exit_code == 2
    assert message in result.stderr
    assert server.state.requests == []


def test_input_errors_exit_2_without_requests(server, tmp_path):
    recipe = write_recipe(tmp_path)
    cases = [
        (["--wait", "--no-run"], "--wait needs a run"),
        (["--timeout", "5"], "--timeout bounds --wait"),
        (["--unschedule", "--schedule", "0 0 * * * *"], "--unschedule only removes"),
        (["--schedule", "every day"], "is not a cron expression"),
        (["--cookie", "no-equals-sign"], "must be NAME=VALUE"),
    ]
    for args, message in cases:
        result = submit(server, recipe, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr
    missing_host = skitflow("submit", recipe)
    assert missing_host.exit_code == 2 and "no Kubeflow Pipelines host" in missing_host.stderr
    assert server.state.requests == []


# -------------------------------------------------------------------------------------- wait


def test_wait_until_success_shows_tasks(tmp_path):
    with running_kfp_server(run_polls=4) as server:
        result = submit(server, write_recipe(tmp_path), "--wait")

    assert result.exit_code == 0, result.output
    assert "run RUNNING" in result.stdout and "run SUCCEEDED" in result.stdout
    assert "csv-select-columns: SUCCEEDED" in result.stdout
    assert "rename-columns: RUNNING" in result.stdout


def test_wait_on_failure_names_the_failing_task(tmp_path):
    with running_kfp_server(run_polls=2) as server:
        server.state.script_runs("submit-demo", failing_task="rename-columns", message="OOMKilled")
        result = submit(server, write_recipe(tmp_path), "--wait")

    assert result.exit_code == 1
    assert "run FAILED: task `rename-columns` failed: OOMKilled" in result.stderr
    assert "/#/runs/details/" in result.stderr
    assert "Traceback" not in result.output


def test_wait_timeout_stops_waiting_not_the_run(tmp_path):
    with running_kfp_server(run_polls=10_000) as server:
        result = submit(server, write_recipe(tmp_path), "--wait", "--timeout", "0.2")
        [run] = server.state.runs.values()

    assert result.exit_code == 1
    assert "run still RUNNING after 0.2s" in result.stderr
    assert f"/#/runs/details/{run.resource['run_id']}" in result.stderr
    assert not run.canceled


def test_ctrl_c_stops_waiting_not_the_run(tmp_path, monkeypatch):
    from skitflow.cli import submit as submit_cli

    def interrupted(self, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr(submit_cli._RunDisplay, "update", interrupted)
    with running_kfp_server(run_polls=10_000) as server:
        result = submit(server, write_recipe(tmp_path), "--wait")
        [run] = server.state.runs.values()

    assert result.exit_code == 130
    assert "stopped waiting; the run goes on" in result.stderr
    assert f"/#/runs/details/{run.resource['run_id']}" in result.stderr
    assert not run.canceled and not server.state.requests_to(":terminate$")


# --------------------------------------------------------------------------------- schedules


def test_schedule_is_created_then_reconciled_never_duplicated(server, tmp_path):
    recipe = write_recipe(tmp_path, schedule=True)

    first = submit(server, recipe, "--no-run")
    assert first.exit_code == 0, first.output
    [job] = server.state.recurring_runs.values()
    assert job["display_name"] == "submit-demo-schedule"
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert job["max_concurrency"] == "2" and job["mode"] == "ENABLE"
    assert job["pipeline_version_id"] in server.state.pipeline_versions

    before = len(server.state.requests)
    same = submit(server, recipe, "--no-run")
    assert same.exit_code == 0 and "schedule   submit-demo-schedule unchanged" in same.stdout
    assert posts(server, before) == [] and list(server.state.recurring_runs) == [
        job["recurring_run_id"]]

    moved = submit(server, recipe, "--no-run", "--schedule", "30 2 * * *")
    assert moved.exit_code == 0 and "replaced (cron 0 30 2 * * *)" in moved.stdout
    [new_job] = server.state.recurring_runs.values()
    assert new_job["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * *"
    assert new_job["recurring_run_id"] != job["recurring_run_id"]

    changed = submit(server, write_recipe(tmp_path, schedule=True, suffix="txt"), "--no-run",
                     "--schedule", "30 2 * * *")
    assert "replaced" in changed.stdout
    [rebound] = server.state.recurring_runs.values()
    assert rebound["pipeline_version_id"] != new_job["pipeline_version_id"]


def test_schedules_lists_and_unschedule_removes(server, tmp_path):
    recipe = write_recipe(tmp_path)
    assert submit(server, recipe, "--no-run", "--schedule", "0 0 1 * * *",
                  "--experiment", "nightly").exit_code == 0

    listed = skitflow("schedules", "--host", server.url)
    assert listed.exit_code == 0, listed.output
    assert "submit-demo-schedule" in listed.stdout and "nightly" in listed.stdout

    other = skitflow("schedules", "--host", server.url, "--experiment", "Default")
    assert "no skitflow schedules" in other.stdout

    removed = submit(server, recipe, "--unschedule", "--experiment", "nightly")
    assert removed.exit_code == 0 and "removed schedule submit-demo-schedule" in removed.stdout
    assert server.state.recurring_runs == {}
    again = submit(server, recipe, "--unschedule", "--experiment", "nightly")
    assert again.exit_code == 0 and "nothing to remove" in again.stdout


def test_new_version_warns_about_a_schedule_on_the_old_one(server, tmp_path):
    assert submit(server, write_recipe(tmp_path, schedule=True), "--no-run").exit_code == 0

    result = submit(server, write_recipe(tmp_path, suffix="txt"))

    assert result.exit_code == 0
    assert "still runs an older version" in result.stderr
    assert len(server.state.recurring_runs) == 1


def test_schedule_spec_from_recipe_and_flag():
    assert normalise_cron("*/5 * * * *") == "0 */5 * * * *"
    assert normalise_cron("@daily") == "@daily"
    with pytest.raises(Exception, match="not a cron"):
        normalise_cron("0 0 3 * * * * *")
    assert schedule_spec(None, None) is None
    assert schedule_spec(None, "0 3 * * *").cron == "0 0 3 * * *"


# -------------------------------------------------------------------------------------- auth


def test_bearer_token_from_flag_and_environment(tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path)
    with running_kfp_server(require_auth=bearer_token("t0ken-flag")) as server:
        assert submit(server, recipe, "--token", "t0ken-flag").exit_code == 0
        assert {r.authorization for r in server.state.requests} == {"Bearer t0ken-flag"}
    with running_kfp_server(require_auth=bearer_token("t0ken-env")) as server:
        monkeypatch.setenv("KFP_TOKEN", "t0ken-env")
        assert submit(server, recipe).exit_code == 0
        assert {r.authorization for r in server.state.requests} == {"Bearer t0ken-env"}


def test_session_cookie_reaches_the_server(tmp_path, monkeypatch):
    monkeypatch.setenv("KFP_COOKIE", "authservice_session=c00kie-value")
    with running_kfp_server(require_auth=session_cookie("authservice_session", "c00kie-value")) as server:
        result = submit(server, write_recipe(tmp_path))
        assert result.exit_code == 0, result.output
        assert all(r.cookies == {"authservice_session": "c00kie-value"} for r in server.state.requests)
        assert all(r.authorization is None for r in server.state.requests)


def test_service_account_token_file_is_used_and_reread(tmp_path, monkeypatch):
    """kfp.Client ignores KF_PIPELINES_SA_TOKEN_PATH when given a host; skitflow passes it on."""
    token_file = tmp_path / "token"
    token_file.write_text("sa-t0ken-1\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    accepted = {"Bearer sa-t0ken-1", "Bearer sa-t0ken-2"}
    with running_kfp_server(require_auth=lambda r: r.authorization in accepted) as server:
        assert submit(server, write_recipe(tmp_path)).exit_code == 0
        assert {r.authorization for r in server.state.requests} == {"Bearer sa-t0ken-1"}
        token_file.write_text("sa-t0ken-2\n")  # the kubelet rotated it
        assert submit(server, write_recipe(tmp_path)).exit_code == 0
        assert server.state.requests[-1].authorization == "Bearer sa-t0ken-2"


@pytest.mark.parametrize("args, env, kind", [
    (["--token", "wr0ng-secret"], {}, "a bearer token (--token / KFP_TOKEN)"),
    ([], {"KFP_COOKIE": "authservice_session=wr0ng-secret"}, "a session cookie"),
    ([], {}, "no credentials"),
])
def test_401_names_the_credential_kind_never_its_value(tmp_path, monkeypatch, args, env, kind):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with running_kfp_server(require_auth=bearer_token("right")) as server:
        result = submit(server, write_recipe(tmp_path), *args)

    assert result.exit_code == 1
    assert "401 Unauthorized" in result.stderr and kind in result.stderr
    assert "wr0ng-secret" not in result.output
    assert "Traceback" not in result.output


def test_login_redirect_says_the_host_is_behind_an_auth_proxy(tmp_path):
    """Dex/oauth2-proxy answer API calls without a session with a redirect to the login page."""

    class LoginRedirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "https://dex.example/auth?state=s3cret-state")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), LoginRedirect)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        result = skitflow("submit", write_recipe(tmp_path), "--host",
                          f"http://127.0.0.1:{proxy.server_address[1]}")
    finally:
        proxy.shutdown()
        proxy.server_close()

    assert result.exit_code == 1
    assert "redirected the API request to https://dex.example/auth (302)" in result.stderr
    assert "--cookie" in result.stderr and "s3cret-state" not in result.output


def test_wrong_api_path_is_a_clear_404(server, tmp_path):
    result = skitflow("submit", write_recipe(tmp_path), "--host", f"{server.url}/dashboard")

    assert result.exit_code == 1
    assert "not found (404) while connecting" in result.stderr
    assert "Kubeflow Pipelines API" in result.stderr


def test_forbidden_namespace_is_a_clear_403(tmp_path):
    with running_kfp_server(forbidden_namespaces={"team-b"}) as server:
        result = submit(server, write_recipe(tmp_path), "--namespace", "team-b")

    assert result.exit_code == 1
    assert "denied access to namespace `team-b` (403 Forbidden)" in result.stderr
    assert "contributor" in result.stderr
    assert not server.state.pipelines


def test_multi_user_install_needs_and_uses_a_namespace(tmp_path):
    recipe = write_recipe(tmp_path)
    with running_kfp_server(multi_user=True) as server:
        missing = submit(server, recipe)
        assert missing.exit_code == 2 and "multi-user install" in missing.stderr

        result = submit(server, recipe, "--namespace", "team-a", "--experiment", "exp")
        assert result.exit_code == 0, result.output
        [pipeline] = server.state.pipelines.values()
        [experiment] = server.state.experiments.values()
        [run] = server.state.runs.values()
        assert pipeline["namespace"] == experiment["namespace"] == run.resource["namespace"] == "team-a"


# ------------------------------------------------------------------------------------ faults


def test_503_bursts_are_retried_without_duplicates(server, tmp_path):
    for path in (r"/pipelines$", r"/upload_version$", r"/experiments$", r"/runs$"):
        server.faults.add(path, status=503, times=2, method="POST")
    server.faults.add(r"/pipelines/names/", status=503, times=2)

    result = submit(server, write_recipe(tmp_path), "--experiment", "fresh")

    assert result.exit_code == 0, result.output
    assert result.stderr.count("retrying in") == 10
    assert len(server.state.pipelines) == 1 and len(server.state.pipeline_versions) == 1
    assert len(server.state.runs) == 1
    assert [e["display_name"] for e in server.state.experiments.values()].count("fresh") == 1
    assert not server.faults.pending


def test_lost_responses_are_rechecked_not_recreated(server, tmp_path, monkeypatch):
    """The server handles the POST after the client gave up waiting; a retry must find it."""
    monkeypatch.setenv("SKITFLOW_KFP_TIMEOUT", "0.2")
    monkeypatch.setenv("SKITFLOW_RETRY_BACKOFF", "1.0")
    for path in (r"/pipelines$", r"/upload_version$", r"/runs$"):
        server.faults.add(path, status=None, delay=0.4, method="POST")

    result = submit(server, write_recipe(tmp_path))

    assert result.exit_code == 0, result.output
    assert len(server.state.pipelines) == 1 and len(server.state.pipeline_versions) == 1
    assert len(server.state.runs) == 1
    [run_id] = run_ids(server)
    assert f"run id: {run_id}" in result.stdout


def test_lost_schedule_create_is_not_duplicated(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SKITFLOW_KFP_TIMEOUT", "0.2")
    monkeypatch.setenv("SKITFLOW_RETRY_BACKOFF", "1.0")
    server.faults.add(r"/recurringruns$", status=None, delay=0.4, method="POST")

    result = submit(server, write_recipe(tmp_path, schedule=True), "--no-run")

    assert result.exit_code == 0, result.output
    assert len(server.state.recurring_runs) == 1


def test_slow_responses_succeed(server, tmp_path):
    fault = server.faults.add(r"/apis/v2beta1/", status=None, delay=0.15, times=4)
    started = time.monotonic()

    result = submit(server, write_recipe(tmp_path))

    assert result.exit_code == 0, result.output
    assert fault.hits == 4 and time.monotonic() - started >= 0.6
    assert "retrying" not in result.stderr


def test_dropped_connections_are_retried(server, tmp_path):
    server.faults.add(r"/pipelines/names/", drop=True)
    server.faults.add(r"/upload_version$", drop=True)
    server.faults.add(r"/runs$", drop=True, method="POST")

    result = submit(server, write_recipe(tmp_path))

    assert result.exit_code == 0, result.output
    assert result.stderr.count("connection dropped") == 3
    assert len(server.state.pipeline_versions) == 1 and len(server.state.runs) == 1


def test_persistent_503_gives_up_with_a_clear_message(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SKITFLOW_RETRY_ATTEMPTS", "4")
    server.faults.add(r"/upload_version$", status=503, times=None)

    result = submit(server, write_recipe(tmp_path))

    assert result.exit_code == 1
    assert "failed (503 Service Unavailable) while uploading version" in result.stderr
    assert "gave up after 4 attempts" in result.stderr
    assert "ml-pipeline" in result.stderr and "Traceback" not in result.output
    assert len(server.state.requests_to(r"/upload_version$")) == 4
    assert not server.state.pipeline_versions and not server.state.runs


def test_unreachable_host_fails_fast_and_clearly(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()

    result = skitflow("submit", write_recipe(tmp_path), "--host", f"http://127.0.0.1:{port}")

    assert result.exit_code == 1
    assert f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" in result.stderr
    assert "Connection refused" in result.stderr and "Traceback" not in result.output
    assert "retrying" not in result.stderr
    assert time.monotonic() - started < 5


def test_tls_failure_says_what_to_check(server, tmp_path):
    result = skitflow("submit", write_recipe(tmp_path), "--host",
                      server.url.replace("http://", "https://"))

    assert result.exit_code == 1
    assert "TLS failure" in result.stderr and "--ca-cert" in result.stderr


# ------------------------------------------------------------------------------------ config


def test_config_precedence_flag_env_file_default(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.skitflow]\nhost = "http://from-pyproject"\nnamespace = "ns-file"\n')
    (tmp_path / "skitflow.toml").write_text('host = "http://from-skitflow-toml"\n')
    env = {"KFP_NAMESPACE": "ns-env"}

    resolved = config.resolve({"host": None, "namespace": None, "experiment": None}, env, tmp_path)
    assert resolved["host"] == config.Setting("http://from-skitflow-toml", "skitflow.toml")
    assert resolved["namespace"] == config.Setting("ns-env", "KFP_NAMESPACE")
    assert resolved["experiment"] == config.Setting("Default", "default")
    flagged = config.resolve({"host": "http://flag", "namespace": "ns-flag", "experiment": "x"},
                             env, tmp_path)
    assert [s.value for s in flagged.values()] == ["http://flag", "ns-flag", "x"]
    (tmp_path / "skitflow.toml").write_text('hots = "typo"\n')
    with pytest.raises(Exception, match="unknown skitflow setting `hots`"):
        config.resolve({}, {}, tmp_path)
    assert config.normalise_host("kfp.example.com/") == "https://kfp.example.com"


def test_host_and_experiment_from_pyproject(server, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.skitflow]\nhost = "{server.url}"\nexperiment = "from-file"\n')
    monkeypatch.setenv("KFP_EXPERIMENT", "from-env")

    result = skitflow("submit", write_recipe(tmp_path))

    assert result.exit_code == 0, result.output
    [run] = server.state.runs.values()
    experiment = server.state.experiments[run.resource["experiment_id"]]
    assert experiment["display_name"] == "from-env"


def test_credentials_and_redaction():
    assert credentials_from("Bearer abcd1234", None, {}).token == "abcd1234"
    assert credentials_from(None, None, {"KFP_COOKIE": "a=b1b2b3"}).kind == "cookie"
    both = Credentials(token="tok-123456", cookie="s=val-654321")
    assert both.kind == "bearer+cookie"
    assert redact("x tok-123456 y val-654321", both.secrets()) == "x *** y ***"
    policy = RetryPolicy(attempts=5, backoff=0.5, max_backoff=4)
    assert [round(policy.delay(n) / d, 1) <= 1.1 for n, d in ((1, 0.5), (4, 4.0), (9, 4.0))] == [
        True] * 3
    for retry, expected in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)):
        waits = [policy.delay(retry) for _ in range(200)]
        assert min(waits) >= 0.9 * expected, (retry, min(waits))  # backs off, not at once
        assert max(waits) <= 1.1 * expected, (retry, max(waits))
    assert policy.delay(1, retry_after=3.0) >= 0.9 * 3.0  # a server's Retry-After is honoured
    assert policy.delay(1, retry_after=60.0) <= 1.1 * 4.0  # ... up to max_backoff


# --------------------------------------------------------------------- backend versions

RETRYING = RECIPE.replace("source:", "defaults:\n  retries: {{count: 2}}\nsource:", 1)


@pytest.mark.parametrize("version", ["2.4.1", "v2.3.0"])
def test_an_old_backend_is_refused_before_any_upload(tmp_path, version):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RETRYING.format(version="", schedule="", suffix="csv"))
    with running_kfp_server(backend_version=version) as old:
        result = submit(old, recipe)
        assert result.exit_code == 2, result.output
        assert "task retries (`retries:`) needs 2.5.0 or newer" in result.stderr
        assert version.lstrip("v") in result.stderr and "upgrade the backend" in result.stderr
        assert posts(old) == []


def test_a_supported_or_unknown_backend_is_accepted(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RETRYING.format(version="", schedule="", suffix="csv"))
    with running_kfp_server(backend_version="2.5.0") as new:
        assert submit(new, recipe, "--no-run").exit_code == 0
    with running_kfp_server(backend_version="unknown") as dev:
        result = submit(dev, recipe, "--no-run")
        assert result.exit_code == 0, result.output
        assert "does not report its Kubeflow Pipelines version" in result.stderr


def test_a_package_without_newer_features_runs_on_an_older_backend_with_a_note(tmp_path):
    with running_kfp_server(backend_version="2.3.0") as old:
        result = submit(old, write_recipe(tmp_path), "--no-run")
        assert result.exit_code == 0, result.output
        assert "older than 2.5.0, the oldest skitflow supports" in result.stderr


def test_run_identity_needs_a_backend_that_substitutes_placeholders():
    from skitflow.submit.versions import parse_version, unsupported

    text = compile_recipe(REPO_ROOT / "tests" / "recipes" / "valid" / "kubernetes-options.yaml").text
    assert any(line.startswith("run identity") for line in unsupported(text, (2, 4, 0)))
    assert unsupported(text, (2, 5, 0)) == []
    assert parse_version("2.5.0-rc.1") == (2, 5, 0) and parse_version("unknown") is None


LOOP_RECIPE = """\
apiVersion: skitflow/v1
name: loop-demo
parameters:
  clients: {type: list, default: [acme, globex]}
matrix:
  client: "{{ params.clients }}"
source:
  csv: {path: "s3://data/{{ matrix.client }}.csv", columns: [a, b, label]}
split:
  train_test: {test_size: 0.5}
trainer:
  xgboost: {target: label, features: [a, b]}
"""


@pytest.mark.parametrize("assignment", ['clients=["a", "b"]', "clients=[a, b]"])
def test_a_loop_parameter_travels_as_a_list(server, tmp_path, assignment):
    recipe = tmp_path / "loop.yaml"
    recipe.write_text(LOOP_RECIPE)
    result = submit(server, recipe, "-p", assignment)

    assert result.exit_code == 0, result.output
    [create] = server.state.requests_to("/runs$", method="POST")
    assert create.json()["runtime_config"]["parameters"] == {"clients": ["a", "b"]}
    from kfp.pipeline_spec import pipeline_spec_pb2

    [package] = server.state.packages.values()
    declared = package.pipeline_spec.root.input_definitions.parameters
    assert declared["clients"].parameter_type == pipeline_spec_pb2.ParameterType.LIST
    refused = submit(server, recipe, "-p", "clients={a: 1}")
    assert refused.exit_code == 2 and "`clients` expects a list" in refused.output
