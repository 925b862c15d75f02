"""`compile` (unless --target local) and `submit` refuse what cannot work in a pod, at its line."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from skitflow.api import compile_recipe
from skitflow.plan.cluster import cluster_problems
from skitflow.recipe.loader import load_recipe_text
from skitflow.steps.registry import Registered, Registry, default_registry

REPO = Path(__file__).resolve().parent.parent

BASE = """\
apiVersion: skitflow/v1
name: where
parameters:
  data: {type: str, default: data/in.csv}
source:
  csv: {path: "{{ params.data }}"}
steps:
  - dropna: {}
sinks:
"""


def problems(text: str, arguments: dict | None = None, registry: Registry | None = None) -> list:
    loaded = load_recipe_text(text, "recipe.yaml")
    return cluster_problems(loaded, registry or default_registry(), arguments)


def test_local_source_and_sink_paths_are_refused_at_their_lines() -> None:
    found = problems(BASE + '  - file: {path: "/tmp/out/{{ run.id }}.csv"}\n')
    assert [(p.location.line, p.message.split(" is ")[0]) for p in found] == [
        (6, "`data/in.csv`"), (10, "`/tmp/out/{{ run.id }}.csv`")]
    assert "the value of parameter `data`" in found[0].message
    assert "--param data=s3://" in found[0].hint
    assert "written inside the pod and lost" in found[1].message
    assert "--target local" in found[1].hint


def test_remote_paths_and_parameter_overrides_pass() -> None:
    text = BASE + '  - s3: {uri: "s3://bucket/{{ run.id }}/out.csv"}\n'
    assert [p.location.line for p in problems(text)] == [6]
    assert problems(text, {"data": "s3://bucket/in.csv"}) == []
    assert problems(text, {"data": "https://example.org/in.csv"}) == []


def test_localhost_endpoints_are_refused() -> None:
    for url in ("http://localhost:8080/in.csv", "http://127.0.0.1/in.csv", "https://[::1]/x.csv",
                "http://0.0.0.0:9000/x.csv"):
        found = problems(BASE + '  - s3: {uri: "s3://b/o.csv"}\n', {"data": url})
        assert len(found) == 1 and "inside a pod is the pod itself" in found[0].message, url
        assert found[0].location.line == 6


def test_local_paths_under_a_mounted_volume_pass_and_compile_to_mount_pvc(tmp_path: Path) -> None:
    text = BASE.replace("sinks:\n", "defaults:\n  volumes: [{pvc: shared-data, mount: /data}]\nsinks:\n") + \
        '  - file: {path: "/data/out/{{ run.id }}.csv"}\n'
    assert [p.location.line for p in problems(text)] == [6]  # the relative default still is not
    assert problems(text, {"data": "/data/in.csv"}) == []
    assert [p.location.line for p in problems(text, {"data": "/elsewhere/in.csv"})] == [6]
    package = compile_recipe(load_recipe_text(text, str(tmp_path / "r.yaml")))
    platform = list(yaml.safe_load_all(package.text))[1]["platforms"]["kubernetes"]["deploymentSpec"]
    mounts = [m for e in platform["executors"].values() for m in e.get("pvcMount", [])]
    assert mounts and all(m["mountPath"] == "/data" and m["constant"] == "shared-data" for m in mounts)


def test_plugin_steps_need_an_image_declared_to_contain_them() -> None:
    sys.path.insert(0, str(REPO / "tests" / "plugins" / "skitflow-demo-plugin"))
    try:
        from skitflow_demo_plugin import TitleCase
    finally:
        sys.path.pop(0)
    registry = Registry([*default_registry(), Registered(TitleCase, "skitflow-demo-plugin")])
    text = BASE.replace("  - dropna: {}\n", "  - title_case: {columns: [a]}\n") + \
        '  - s3: {uri: "s3://b/o.csv"}\n'
    args = {"data": "s3://b/in.csv"}
    found = problems(text, args, registry)
    assert len(found) == 1 and "plugin package `skitflow-demo-plugin`" in found[0].message
    assert "make image PLUGINS=skitflow-demo-plugin" in found[0].hint
    assert "plugins: [skitflow-demo-plugin]" in found[0].hint
    declared = text.replace("parameters:", "plugins: [skitflow-demo-plugin]\nparameters:")
    assert ["default" in p.message for p in problems(declared, args, registry)] == [True]
    with_image = declared.replace("plugins:", "image: registry.example.com/sf-plugins:1\nplugins:")
    assert problems(with_image, args, registry) == []


def test_compile_for_kubeflow_refuses_the_shipped_local_recipes(cli, repo_root, tmp_path) -> None:
    result = cli("compile", "recipes", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "recipes/seed-workflow.yaml:26:11" in result.stderr
    assert "recipes/prepare-tickets.yaml:" in result.stderr
    assert not (tmp_path / "out").exists()
    local = cli("compile", "recipes", "-o", tmp_path / "out", "--target", "local")
    assert local.exit_code == 0, local.output


def test_submit_refuses_before_any_request_and_accepts_an_s3_override(tmp_path: Path) -> None:
    from skitflow.errors import SkitflowError
    from skitflow.submit.reconcile import prepare

    seed = REPO / "recipes" / "seed-workflow.yaml"
    try:
        prepare(seed, experiment="e")
    except SkitflowError as exc:
        assert "examples/data/tickets.csv" in str(exc) and exc.exit_code == 2
    else:
        raise AssertionError("the seed workflow's local default was accepted")
    submission = prepare(seed, experiment="e", params=["data=s3://bucket/tickets.csv"])
    assert submission.arguments["data"] == "s3://bucket/tickets.csv"
