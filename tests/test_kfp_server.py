"""Tests of the KFP test server, driven by the real ``kfp.Client`` (kfp 2.17.3) over HTTP.

No ``from __future__ import annotations`` here: kfp reads component annotations as types.
"""

import io
import json
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import kfp
import kfp.client.client as kfp_client_module
import pytest
import urllib3
from kfp import compiler, dsl, kubernetes
from kfp.pipeline_spec import pipeline_spec_pb2
from kfp_server_api.exceptions import ApiException

from tests.kfp_server import KfpTestServer, bearer_token, running_kfp_server, session_cookie

# kfp.Client warns about backend versions on every construction.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

REPO_ROOT = Path(__file__).resolve().parent.parent
PIPELINE_NAME = "skit-tiny"


@dsl.component(base_image="python:3.11")
def prepare(rows: int) -> int:
    return rows * 2


@dsl.component(base_image="python:3.11")
def train(rows: int, epochs: int) -> str:
    return f"{rows}x{epochs}"


@dsl.pipeline(name=PIPELINE_NAME)
def tiny_pipeline(rows: int = 10, epochs: int = 1) -> None:
    prepared = prepare(rows=rows)
    train(rows=prepared.output, epochs=epochs)


@dsl.pipeline(name="skit-k8s")
def k8s_pipeline(rows: int = 10) -> None:
    task = prepare(rows=rows)
    kubernetes.add_node_selector(
        task, label_key="cloud.google.com/gke-accelerator", label_value="nvidia-h100"
    )


@pytest.fixture(scope="module")
def package_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real package compiled by kfp: two tasks (prepare -> train), two int parameters."""
    path = tmp_path_factory.mktemp("packages") / "tiny.yaml"
    compiler.Compiler().compile(tiny_pipeline, str(path))
    return path


@pytest.fixture(scope="module")
def k8s_package_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package with a second YAML document: the Kubernetes PlatformSpec."""
    path = tmp_path_factory.mktemp("packages") / "k8s.yaml"
    compiler.Compiler().compile(k8s_pipeline, str(path))
    return path


@pytest.fixture(autouse=True)
def hermetic_kfp_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep kfp.Client away from ~/.config/kfp/context.json and KF_PIPELINES_* variables."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for variable in (
        kfp_client_module.KF_PIPELINES_ENDPOINT_ENV,
        kfp_client_module.KF_PIPELINES_UI_ENDPOINT_ENV,
        kfp_client_module.KF_PIPELINES_DEFAULT_EXPERIMENT_NAME,
        kfp_client_module.KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME,
    ):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def no_client_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp.Client sleeps 5 s between healthz retries; make that instant."""
    monkeypatch.setattr(kfp_client_module.time, "sleep", lambda seconds: None)


@pytest.fixture
def server() -> Iterator[KfpTestServer]:
    with running_kfp_server() as running:
        yield running


@pytest.fixture
def client(server: KfpTestServer) -> kfp.Client:
    return kfp.Client(host=server.url)


def raw_request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    """A plain HTTP call that bypasses kfp.Client and any proxy settings."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def pipeline_tasks(details: list) -> dict[str, str]:
    """State by name of the pipeline's own tasks: not drivers, executor pods or DAG plumbing."""
    plumbing = {"root", "root-driver", "executor"}
    return {
        t.display_name: t.state
        for t in details or []
        if t.display_name not in plumbing
        and not t.display_name.endswith("-driver")
        and not t.display_name.startswith((PIPELINE_NAME + "-", "condition"))
    }


def name_filter(name: str, operation: str | int = 1, value_key: str = "stringValue") -> str:
    """A filter in the form kfp.Client builds (numeric operation, camelCase value) or variants."""
    return json.dumps(
        {"predicates": [{"operation": operation, "key": "display_name", value_key: name}]}
    )


def write_package(tmp_path: Path, filename: str, text: str) -> Path:
    path = tmp_path / filename
    path.write_text(text)
    return path


# ------------------------------------------------------------------ healthz / auth


def test_client_construction_calls_healthz(server: KfpTestServer) -> None:
    client = kfp.Client(host=server.url)

    healthz = server.state.requests_to(r"/apis/v2beta1/healthz$", method="GET")
    assert [request.status for request in healthz] == [200]
    assert client.get_kfp_healthz().multi_user is False


def test_bearer_token_reaches_server_and_is_required() -> None:
    with running_kfp_server(require_auth=bearer_token("s3cret")) as server:
        client = kfp.Client(host=server.url, existing_token="s3cret")
        client.list_pipelines()

        assert server.state.requests
        assert {request.authorization for request in server.state.requests} == {"Bearer s3cret"}
        status, body = raw_request(f"{server.url}/apis/v2beta1/pipelines")
        assert status == 401
        assert "Unauthenticated" in body["message"]


def test_session_cookie_reaches_server_and_is_required() -> None:
    with running_kfp_server(require_auth=session_cookie("authservice_session", "abc123")) as server:
        client = kfp.Client(host=server.url, cookies="authservice_session=abc123")
        client.list_experiments()

        assert all(r.cookies == {"authservice_session": "abc123"} for r in server.state.requests)
        assert (
            raw_request(
                f"{server.url}/apis/v2beta1/healthz", headers={"Cookie": "authservice_session=nope"}
            )[0]
            == 401
        )


def test_wrong_token_fails_client_construction(no_client_sleep: None) -> None:
    with running_kfp_server(require_auth=bearer_token("right")) as server:
        with pytest.raises(TimeoutError, match="healthz"):
            kfp.Client(host=server.url, existing_token="wrong")

        assert [r.status for r in server.state.requests_to("/healthz$")] == [401] * 5


def test_forbidden_namespace_is_refused(package_path: Path) -> None:
    with running_kfp_server(forbidden_namespaces={"team-b"}) as server:
        client = kfp.Client(host=server.url)

        with pytest.raises(ApiException) as listing:
            client.create_experiment("exp", namespace="team-b")
        assert listing.value.status == 403
        with pytest.raises(ApiException) as upload:
            client.upload_pipeline(str(package_path), "p", namespace="team-b")
        assert upload.value.status == 400  # the real upload endpoint reports denials as 400
        assert "pipeline upload denied" in json.loads(upload.value.body)["error_message"]
        assert not server.state.pipelines


def test_multi_user_mode_scopes_lists_by_namespace() -> None:
    with running_kfp_server(multi_user=True) as server:
        client = kfp.Client(host=server.url, namespace="team-a")
        experiment = client.create_experiment("exp", namespace="team-a")

        assert experiment.namespace == "team-a"
        assert [e.display_name for e in client.list_experiments().experiments] == ["exp"]
        assert raw_request(f"{server.url}/apis/v2beta1/experiments")[0] == 400


# --------------------------------------------------------------- pipelines / versions


def test_upload_pipeline_stores_parsed_spec(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    pipeline = client.upload_pipeline(str(package_path), "tiny", description="demo")

    upload = server.state.requests_to(r"/pipelines/upload$", method="POST")[0]
    assert upload.query == {"name": "tiny", "description": "demo"}
    assert (upload.header("Content-Type") or "").startswith("multipart/form-data")
    assert client.get_pipeline_id("tiny") == pipeline.pipeline_id
    assert client.get_pipeline_id("absent") is None
    assert client.get_pipeline(pipeline.pipeline_id).description == "demo"
    versions = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert [v.display_name for v in versions] == ["tiny"]
    assert versions[0].pipeline_spec["pipelineInfo"]["name"] == PIPELINE_NAME
    stored = server.state.packages[versions[0].pipeline_version_id]
    assert isinstance(stored.pipeline_spec, pipeline_spec_pb2.PipelineSpec)
    assert sorted(stored.pipeline_spec.root.dag.tasks) == ["prepare", "train"]
    assert stored.platform_spec is None


def test_upload_platform_spec_document(
    server: KfpTestServer, client: kfp.Client, k8s_package_path: Path
) -> None:
    pipeline = client.upload_pipeline(str(k8s_package_path), "k8s")

    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    assert set(version.pipeline_spec) == {"pipeline_spec", "platform_spec"}
    platform = server.state.packages[version.pipeline_version_id].platform_spec
    assert platform is not None and "kubernetes" in platform.platforms


def test_upload_versions_list_filter_sort_and_page(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    pipeline = client.upload_pipeline(str(package_path), "tiny")
    for name in ("v2", "v3"):
        version = client.upload_pipeline_version(
            str(package_path), name, pipeline_name="tiny", description=name
        )
        assert version.pipeline_id == pipeline.pipeline_id
    client.upload_pipeline(str(package_path), "other")

    listed = client.list_pipeline_versions(pipeline.pipeline_id, filter=name_filter("v2"))
    assert [v.display_name for v in listed.pipeline_versions] == ["v2"]
    newest_first = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc")
    assert [v.display_name for v in newest_first.pipeline_versions] == ["v3", "v2", "tiny"]
    first_page = client.list_pipeline_versions(pipeline.pipeline_id, page_size=2)
    assert first_page.total_size == 3 and first_page.next_page_token
    second_page = client.list_pipeline_versions(
        pipeline.pipeline_id, page_size=2, page_token=first_page.next_page_token
    )
    assert [v.display_name for v in second_page.pipeline_versions] == ["v3"]
    assert not second_page.next_page_token
    substring = client.list_pipelines(filter=name_filter("oth", "IS_SUBSTRING", "string_value"))
    assert [p.display_name for p in substring.pipelines] == ["other"]
    in_filter = json.dumps(
        {
            "predicates": [
                {"operation": "IN", "key": "name", "string_values": {"values": ["tiny", "other"]}}
            ]
        }
    )
    assert client.list_pipelines(filter=in_filter, sort_by="name").total_size == 2
    with pytest.raises(ApiException) as bad_key:
        client.list_pipelines(
            filter=json.dumps(
                {"predicates": [{"operation": 1, "key": "colour", "stringValue": "x"}]}
            )
        )
    assert bad_key.value.status == 400


def test_duplicate_names_conflict(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    pipeline = client.upload_pipeline(str(package_path), "tiny")
    client.upload_pipeline_version(str(package_path), "v2", pipeline_id=pipeline.pipeline_id)

    with pytest.raises(ApiException) as duplicate_pipeline:
        client.upload_pipeline(str(package_path), "tiny")
    with pytest.raises(ApiException) as duplicate_version:
        client.upload_pipeline_version(str(package_path), "v2", pipeline_id=pipeline.pipeline_id)

    assert duplicate_pipeline.value.status == 409
    assert duplicate_version.value.status == 409
    assert len(server.state.pipelines) == 1
    assert len(server.state.pipeline_versions) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pipelineInfo: {name: x\nroot: [", "failed to parse pipeline spec YAML"),
        (
            "schemaVersion: 2.1.0\npipelineInfo: {name: x}\nroot: {}\ncolour: blue\n",
            'has no field named "colour"',
        ),
        (
            "schemaVersion: 2.0.0\npipelineInfo: {name: x}\nroot: {}\n",
            "only supports schema version 2.1.0",
        ),
        ("schemaVersion: 2.1.0\npipelineInfo: {name: x}\n", "root component is empty"),
        (
            "schemaVersion: 2.1.0\npipelineInfo: {name: x}\nroot: {}\n---\nplatforms: {kubernetes: {bogus: 1}}\n",
            "platform spec is invalid",
        ),
    ],
    ids=["invalid-yaml", "unknown-field", "schema-version", "no-root", "bad-platform-spec"],
)
def test_bad_package_is_rejected_with_400(
    server: KfpTestServer, client: kfp.Client, tmp_path: Path, text: str, expected: str
) -> None:
    path = write_package(tmp_path, "bad.yaml", text)

    with pytest.raises(ApiException) as error:
        client.upload_pipeline(str(path), "bad")  # a given name skips the client's local parse

    assert error.value.status == 400
    assert expected in json.loads(error.value.body)["error_message"]
    assert not server.state.pipelines


def test_bad_version_package_is_rejected(
    client: kfp.Client, package_path: Path, tmp_path: Path
) -> None:
    pipeline = client.upload_pipeline(str(package_path), "tiny")
    path = write_package(
        tmp_path, "bad.yaml", "schemaVersion: 2.1.0\npipelineInfo: {name: x}\nroot: {}\nextra: 1\n"
    )

    with pytest.raises(ApiException) as error:
        client.upload_pipeline_version(str(path), "v2", pipeline_id=pipeline.pipeline_id)

    assert error.value.status == 400
    assert client.list_pipeline_versions(pipeline.pipeline_id).total_size == 1


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_archived_package_is_accepted(
    client: kfp.Client, package_path: Path, tmp_path: Path, suffix: str
) -> None:
    archive = tmp_path / f"tiny{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.write(package_path, "pipeline.yaml")
    else:
        with tarfile.open(archive, "w:gz") as bundle:
            bundle.add(package_path, "pipeline.yaml")

    pipeline = client.upload_pipeline(str(archive), "archived")

    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    assert version.pipeline_spec["pipelineInfo"]["name"] == PIPELINE_NAME


# ------------------------------------------------------------------ experiments / runs


def test_run_from_version_completes(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    pipeline = client.upload_pipeline(str(package_path), "tiny")
    version = client.upload_pipeline_version(
        str(package_path), "v2", pipeline_id=pipeline.pipeline_id
    )
    experiment = client.create_experiment("skit", description="demo")
    assert client.create_experiment("skit").experiment_id == experiment.experiment_id
    assert len(server.state.requests_to("/experiments$", method="POST")) == 1
    assert client.get_experiment(experiment_name="skit").experiment_id == experiment.experiment_id

    run = client.run_pipeline(
        experiment.experiment_id,
        "train-1",
        params={"rows": 5},
        pipeline_id=pipeline.pipeline_id,
        version_id=version.pipeline_version_id,
    )
    assert run.state == "PENDING"
    finished = client.wait_for_run_completion(run.run_id, timeout=5, sleep_duration=0)

    assert finished.state == "SUCCEEDED"
    assert finished.runtime_config.parameters == {"rows": 5}
    assert finished.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    assert pipeline_tasks(finished.run_details.task_details) == {
        "prepare": "SUCCEEDED",
        "train": "SUCCEEDED",
    }
    listed = client.list_runs(experiment_id=experiment.experiment_id)
    assert [r.run_id for r in listed.runs] == [run.run_id]
    body = server.state.requests_to("/runs$", method="POST")[0].json()
    assert body["pipeline_version_reference"] == {
        "pipeline_id": pipeline.pipeline_id,
        "pipeline_version_id": version.pipeline_version_id,
    }


def test_run_progresses_over_polls(package_path: Path) -> None:
    with running_kfp_server(run_polls=3) as server:
        client = kfp.Client(host=server.url)
        run = client.create_run_from_pipeline_package(str(package_path), run_name="slow").run_info

        states = [run.state]
        progress = []
        for _ in range(4):
            polled = client.get_run(run.run_id)
            states.append(polled.state)
            progress.append(pipeline_tasks(polled.run_details.task_details))

    assert states == ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED", "SUCCEEDED"]
    assert progress[0] == {"prepare": "RUNNING"}
    assert progress[1] == {"prepare": "SUCCEEDED", "train": "RUNNING"}
    assert progress[2] == {"prepare": "SUCCEEDED", "train": "SUCCEEDED"}


def test_scripted_failure_names_failing_task(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    script = server.state.script_runs("nightly", failing_task="train", message="OOMKilled")

    failed = client.create_run_from_pipeline_package(str(package_path), run_name="nightly-42")
    succeeded = client.create_run_from_pipeline_package(str(package_path), run_name="adhoc")
    failed_run = failed.wait_for_run_completion(timeout=5)

    assert failed_run.state == "FAILED"
    assert "train" in failed_run.error.message
    details = {t.display_name: t for t in failed_run.run_details.task_details}
    assert details["prepare"].state == "SUCCEEDED"
    assert details["train"].state == "FAILED"
    assert details["train"].error.message == "OOMKilled"
    assert succeeded.wait_for_run_completion(timeout=5).state == "SUCCEEDED"
    assert script.used == 1


def test_run_from_package_with_platform_spec(
    server: KfpTestServer, client: kfp.Client, k8s_package_path: Path
) -> None:
    result = client.create_run_from_pipeline_package(
        str(k8s_package_path), arguments={"rows": 3}, run_name="k8s", experiment_name="gpu"
    )

    assert result.wait_for_run_completion(timeout=5).state == "SUCCEEDED"
    body = server.state.requests_to("/runs$", method="POST")[0].json()
    assert set(body["pipeline_spec"]) == {"pipeline_spec", "platform_spec"}
    assert body["runtime_config"]["parameters"] == {"rows": 3}
    assert client.get_experiment(experiment_name="gpu").experiment_id == body["experiment_id"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"bogus": 1}, "not required by pipeline: bogus"),
        ({"rows": "many"}, "rows requires type double or integer"),
    ],
)
def test_run_parameters_are_validated(
    server: KfpTestServer, client: kfp.Client, package_path: Path, params: dict, expected: str
) -> None:
    with pytest.raises(ApiException) as error:
        client.run_pipeline(
            "", "bad-params", pipeline_package_path=str(package_path), params=params
        )

    assert error.value.status == 400
    assert expected in json.loads(error.value.body)["message"]
    assert not server.state.runs


# ------------------------------------------------------------------- recurring runs


def test_recurring_run_lifecycle(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    pipeline = client.upload_pipeline(str(package_path), "tiny")
    version_id = (
        client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0].pipeline_version_id
    )
    experiment = client.create_experiment("scheduled")
    other = client.create_experiment("other")

    nightly = client.create_recurring_run(
        experiment.experiment_id,
        "nightly",
        cron_expression="0 0 2 * * *",
        params={"epochs": 3},
        pipeline_id=pipeline.pipeline_id,
        version_id=version_id,
    )
    hourly = client.create_recurring_run(
        experiment.experiment_id,
        "hourly",
        interval_second=3600,
        pipeline_package_path=str(package_path),
        enabled=False,
    )

    assert nightly.status == "ENABLED" and nightly.trigger.cron_schedule.cron == "0 0 2 * * *"
    assert nightly.max_concurrency == "1"
    assert (
        hourly.status == "DISABLED" and hourly.trigger.periodic_schedule.interval_second == "3600"
    )
    listed = client.list_recurring_runs(experiment_id=experiment.experiment_id)
    assert {job.display_name for job in listed.recurring_runs} == {"nightly", "hourly"}
    assert client.list_recurring_runs(experiment_id=other.experiment_id).total_size is None
    by_name = client.list_recurring_runs(filter=name_filter("hourly"))
    assert [job.recurring_run_id for job in by_name.recurring_runs] == [hourly.recurring_run_id]

    client.disable_recurring_run(nightly.recurring_run_id)
    assert client.get_recurring_run(nightly.recurring_run_id).status == "DISABLED"
    client.enable_recurring_run(nightly.recurring_run_id)
    assert client.get_recurring_run(nightly.recurring_run_id).mode == "ENABLE"

    fired = server.state.trigger_recurring_run(nightly.recurring_run_id)
    assert client.get_run(fired["run_id"]).recurring_run_id == nightly.recurring_run_id

    client.delete_recurring_run(hourly.recurring_run_id)
    remaining = client.list_recurring_runs(experiment_id=experiment.experiment_id).recurring_runs
    assert [job.display_name for job in remaining] == ["nightly"]
    with pytest.raises(ApiException) as missing:
        client.get_recurring_run(hourly.recurring_run_id)
    assert missing.value.status == 404


def test_recurring_run_validation(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    experiment = client.create_experiment("scheduled")

    with pytest.raises(ApiException) as bad_cron:
        client.create_recurring_run(
            experiment.experiment_id,
            "bad",
            cron_expression="every day",
            pipeline_package_path=str(package_path),
        )
    with pytest.raises(ApiException) as bad_concurrency:
        client.create_recurring_run(
            experiment.experiment_id,
            "bad",
            interval_second=60,
            max_concurrency=11,
            pipeline_package_path=str(package_path),
        )

    assert bad_cron.value.status == bad_concurrency.value.status == 400
    assert not server.state.recurring_runs


# -------------------------------------------------------------------------- faults


def test_503_burst_is_observable_and_creates_nothing(
    server: KfpTestServer, client: kfp.Client, package_path: Path
) -> None:
    fault = server.faults.add(r"/pipelines/upload$", status=503, times=3)

    failures = []
    for _ in range(5):
        try:
            pipeline = client.upload_pipeline(str(package_path), "tiny")
            break
        except ApiException as error:
            failures.append(error.status)

    assert failures == [503, 503, 503]
    assert fault.hits == 3 and not server.faults.pending
    assert [r.status for r in server.state.requests_to("/pipelines/upload$")] == [
        503,
        503,
        503,
        200,
    ]
    assert list(server.state.pipelines) == [pipeline.pipeline_id]
    assert len(server.state.pipeline_versions) == 1


def test_healthz_503_burst_is_retried_by_client(
    server: KfpTestServer, no_client_sleep: None
) -> None:
    server.faults.add(r"/healthz$", status=503, times=2)

    kfp.Client(host=server.url)

    assert [r.status for r in server.state.requests_to("/healthz$")] == [503, 503, 200]


@pytest.mark.parametrize("path", ["/runs$", "/recurringruns$", "/experiments$", "/upload_version$"])
def test_faulted_posts_never_create_state(
    server: KfpTestServer, client: kfp.Client, package_path: Path, path: str
) -> None:
    pipeline = client.upload_pipeline(str(package_path), "tiny")
    experiment = client.create_experiment("exp")
    before = (
        len(server.state.runs),
        len(server.state.recurring_runs),
        len(server.state.experiments),
    )
    server.faults.add(path, status=500, method="POST")

    with pytest.raises(ApiException):
        if path == "/runs$":
            client.run_pipeline(
                experiment.experiment_id, "r", pipeline_package_path=str(package_path)
            )
        elif path == "/recurringruns$":
            client.create_recurring_run(
                experiment.experiment_id,
                "j",
                interval_second=60,
                pipeline_package_path=str(package_path),
            )
        elif path == "/experiments$":
            client.create_experiment("another")
        else:
            client.upload_pipeline_version(
                str(package_path), "v2", pipeline_id=pipeline.pipeline_id
            )

    after = (
        len(server.state.runs),
        len(server.state.recurring_runs),
        len(server.state.experiments),
    )
    assert after == before
    assert len(server.state.pipeline_versions) == 1


def test_dropped_connection(server: KfpTestServer, client: kfp.Client, package_path: Path) -> None:
    server.faults.add(r"/pipelines/upload$", drop=True)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        client.upload_pipeline(str(package_path), "tiny")
    assert not server.state.pipelines

    pipeline = client.upload_pipeline(str(package_path), "tiny")
    server.faults.add(rf"/pipelines/{pipeline.pipeline_id}$", drop=True, method="GET")
    assert (
        client.get_pipeline(pipeline.pipeline_id).display_name == "tiny"
    )  # urllib3 retries idempotent GETs
    assert [r.status for r in server.state.requests_to(rf"/pipelines/{pipeline.pipeline_id}$")] == [
        None,
        200,
    ]


def test_slow_response(server: KfpTestServer, client: kfp.Client) -> None:
    fault = server.faults.add(r"/experiments$", status=None, delay=0.3, method="GET")

    started = time.monotonic()
    experiments = client.list_experiments()

    assert time.monotonic() - started >= 0.3
    assert [e.display_name for e in experiments.experiments] == ["Default"]
    assert fault.hits == 1


# ---------------------------------------------------------------------- standalone


def test_module_runs_standalone() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kfp_server", "--port", "0", "--quiet"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        assert raw_request(f"{url}/apis/v2beta1/healthz") == (
            200,
            {"commit_sha": "0123456789abcdef", "tag_name": "2.14.3", "multi_user": False,
             "pipeline_store": "database"},
        )
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_server_refuses_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        KfpTestServer(host="0.0.0.0")


def test_unknown_route_is_404(server: KfpTestServer) -> None:
    assert raw_request(f"{server.url}/apis/v2beta1/nothing-here")[0] == 404
    assert raw_request(f"{server.url}/apis/v2beta1/healthz", method="DELETE")[0] == 405


def test_upload_body_round_trips_binary(server: KfpTestServer, package_path: Path) -> None:
    """The multipart parser must not alter archive bytes (CR/LF inside gzip data)."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as bundle:
        bundle.add(package_path, "pipeline.yaml")
    data = payload.getvalue()
    boundary = "XyZ"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="uploadfile"; filename="p.tar.gz"\r\n'
            "Content-Type: application/gzip\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{server.url}/apis/v2beta1/pipelines/upload?name=raw",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with opener.open(request, timeout=5) as response:
        assert json.loads(response.read())["name"] == "raw"


# -- strict request bodies ------------------------------------------------------------------------


def post_json(url: str, body: str) -> tuple[int, dict]:
    """POST a JSON text as written (so positions in it are under test), bypassing proxies."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/runs", '{"x": 1}', 'proto: (line 1:2): unknown field "x"'),
        ("/runs", '{"display_name": "r", "runtime_config": {"parameters": {"any": 1}, "extra": 2}}',
         'proto: (line 1:68): unknown field "extra"'),
        ("/runs", '{\n  "displayName": "r",\n  "pipeline_version_reference": {"pipeline_id": "p",\n'
                  '    "version": "v"}}', 'proto: (line 4:5): unknown field "version"'),
        ("/experiments", '{"display_name": "e", "owner": "me"}',
         'proto: (line 1:23): unknown field "owner"'),
        ("/recurringruns", '{"display_name": "j", "trigger": {"cron": "0 * * * *"}}',
         'proto: (line 1:35): unknown field "cron"'),
        ("/pipelines", '{"display_name": "p", "owner": ["a"]}',
         'proto: (line 1:23): unknown field "owner"'),
    ],
)
def test_an_unknown_request_field_is_refused_like_grpc_gateway(
    server: KfpTestServer, path: str, body: str, message: str
) -> None:
    status, answer = post_json(f"{server.url}/apis/v2beta1{path}", body)
    assert status == 400
    assert answer["code"] == 3 and answer["message"] == message  # codes.InvalidArgument


def test_known_fields_in_either_spelling_and_free_form_structs_are_accepted(
    server: KfpTestServer, package_path: Path
) -> None:
    import yaml

    spec = yaml.safe_load(package_path.read_text())
    body = json.dumps({"displayName": "free", "pipeline_spec": spec,
                       "runtimeConfig": {"parameters": {"rows": 3}, "pipelineRoot": "minio://b/r"},
                       "service_account": "pipeline-runner"})
    status, answer = post_json(f"{server.url}/apis/v2beta1/runs", body)
    assert status == 200, answer
    assert answer["display_name"] == "free"


# -- run progress as the persistence agent reports it ---------------------------------------------


@dsl.pipeline(name="skit-branches")
def branch_pipeline(rows: int = 10) -> None:
    prepared = prepare(rows=rows)
    with dsl.If(prepared.output > 5):
        train(rows=prepared.output, epochs=1)
    with dsl.Else():
        train(rows=prepared.output, epochs=2)


@pytest.fixture(scope="module")
def branch_package_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """prepare, then an if/else: `condition-branches-1` holding `condition-2` and `condition-3`."""
    path = tmp_path_factory.mktemp("packages") / "branches.yaml"
    compiler.Compiler().compile(branch_pipeline, str(path))
    return path


def by_name(details: list) -> dict[str, list]:
    found: dict[str, list] = {}
    for detail in details:
        found.setdefault(detail.display_name, []).append(detail)
    return found


def test_task_details_hold_the_workflow_nodes_drivers_and_executors(
    client: kfp.Client, package_path: Path
) -> None:
    run = client.create_run_from_pipeline_package(str(package_path), run_name="nodes")
    done = run.wait_for_run_completion(timeout=5)
    nodes = by_name(done.run_details.task_details)

    (entry,) = [d for name, ds in nodes.items() if name.startswith(f"{PIPELINE_NAME}-") for d in ds]
    (root_driver,), (root,) = nodes["root-driver"], nodes["root"]
    assert not entry.parent_task_id and root_driver.parent_task_id == entry.task_id
    assert root.parent_task_id == entry.task_id
    assert [c.pod_name for c in root_driver.child_tasks] == [root.pod_name]
    assert "system-dag-driver" in root_driver.pod_name
    executors = {d.parent_task_id: d for d in nodes["executor"]}
    for task in ("prepare", "train"):
        (driver,), (executor_node,) = nodes[f"{task}-driver"], nodes[task]
        assert driver.parent_task_id == root.task_id == executor_node.parent_task_id
        assert "system-container-driver" in driver.pod_name
        assert [c.pod_name for c in driver.child_tasks] == [executor_node.pod_name]
        pod = executors[executor_node.task_id]
        assert "system-container-impl" in pod.pod_name
        assert [c.pod_name for c in executor_node.child_tasks] == [pod.pod_name]
    assert len(done.run_details.task_details) == 9  # entry, root-driver, root, 2 x 3 per task
    assert {d.state for d in done.run_details.task_details} == {"SUCCEEDED"}
    assert all(d.run_id == done.run_id and d.end_time for d in done.run_details.task_details)


def test_tasks_in_condition_dags_are_nested_and_the_other_branch_is_skipped(
    client: kfp.Client, branch_package_path: Path
) -> None:
    run = client.create_run_from_pipeline_package(str(branch_package_path), run_name="branches")
    nodes = by_name(run.wait_for_run_completion(timeout=5).run_details.task_details)

    (root,), (group,) = nodes["root"], nodes["condition-branches-1"]
    (taken,), (other,), (train_node,) = nodes["condition-2"], nodes["condition-3"], nodes["train"]
    assert group.parent_task_id == root.task_id and group.state == "SUCCEEDED"
    assert taken.parent_task_id == group.task_id == other.parent_task_id
    assert train_node.parent_task_id == taken.task_id and train_node.state == "SUCCEEDED"
    assert other.state == "SKIPPED" and nodes["condition-3-driver"][0].state == "SUCCEEDED"
    assert "train-2" not in nodes and "train-2-driver" not in nodes  # never started
    assert [c.pod_name for c in group.child_tasks] == [
        nodes["condition-2-driver"][0].pod_name, nodes["condition-3-driver"][0].pod_name]


def test_a_failure_inside_a_condition_fails_every_dag_around_it(
    server: KfpTestServer, client: kfp.Client, branch_package_path: Path
) -> None:
    server.state.script_runs("doomed", failing_task="train", message="OOMKilled")
    run = client.create_run_from_pipeline_package(str(branch_package_path), run_name="doomed")
    failed = run.wait_for_run_completion(timeout=5)
    nodes = by_name(failed.run_details.task_details)

    assert failed.state == "FAILED" and "train" in failed.error.message
    assert nodes["train"][0].state == "FAILED" and nodes["train"][0].error.message == "OOMKilled"
    for dag in ("condition-2", "condition-branches-1", "root"):
        assert nodes[dag][0].state == "FAILED", dag
    assert nodes["prepare"][0].state == "SUCCEEDED"


def test_condition_dags_run_while_their_tasks_run(branch_package_path: Path) -> None:
    with running_kfp_server(run_polls=3) as server:
        client = kfp.Client(host=server.url)
        run = client.create_run_from_pipeline_package(str(branch_package_path), run_name="slow")
        polls = [by_name(client.get_run(run.run_id).run_details.task_details) for _ in range(2)]
    first, second = ({name: ds[0].state for name, ds in poll.items()} for poll in polls)
    assert first["root"] == first["prepare"] == "RUNNING" and "condition-branches-1" not in first
    assert second["root"] == "RUNNING" and second["prepare"] == "SUCCEEDED"
    assert second["condition-branches-1"] == second["condition-2"] == second["train"] == "RUNNING"
    assert second["condition-3"] == "SKIPPED"
