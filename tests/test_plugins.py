"""Plugins register steps through the `skitflow.steps` entry point, exactly like the built-ins.

The plugin packages under tests/plugins are really installed (pip, into a temporary folder put on
PYTHONPATH) and used from the real command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "tests" / "plugins"


def _install(package: str, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PLUGINS / package)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def demo_plugin(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    _install("skitflow-demo-plugin", target)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def skitflow(*args: object, env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skitflow", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_an_installed_plugin_step_is_listed_with_its_package(demo_plugin) -> None:
    result = skitflow("steps", env=demo_plugin)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("title_case"))
    assert "transform" in line and "skitflow-demo-plugin" in line


def test_a_plugin_step_is_in_the_schema(demo_plugin) -> None:
    result = skitflow("schema", env=demo_plugin)
    assert '"transform__title_case"' in result.stdout


RECIPE = """\
apiVersion: skitflow/v1
name: plugin-recipe
source:
  csv: {path: data.csv, columns: [id, subject]}
steps:
  - title_case: {columns: [subject]}
sinks:
  - file: {path: out.csv, format: csv}
"""


def test_a_recipe_uses_a_plugin_step_end_to_end(demo_plugin, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id,subject\n1,refund please\n2,login broken\n")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    result = skitflow("run", "recipe.yaml", "--out", "run", "--no-cache", env=demo_plugin, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "out.csv").read_text().splitlines() == ["id,subject", "1,Refund Please", "2,Login Broken"]


def test_without_the_plugin_the_step_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("title_case", "title_cas"))
    result = skitflow("validate", "recipe.yaml", env=dict(os.environ), cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown transform step `title_cas`" in result.stderr


def test_two_steps_with_one_name_is_an_error_naming_both_packages(tmp_path: Path) -> None:
    target = tmp_path / "site"
    _install("skitflow-clash-plugin", target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = skitflow("steps", env=env)
    assert result.returncode == 1
    assert "two transform steps are named `dropna`" in result.stderr
    assert "`skitflow`" in result.stderr and "`skitflow-clash-plugin`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_compiled_plugin_step_names_its_package_not_its_module(demo_plugin, tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    result = skitflow("compile", "recipe.yaml", "-o", "package.yaml", env=demo_plugin, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "package.yaml").read_text()
    assert '"kind":"transform"' in text and '"package":"skitflow-demo-plugin"' in text
    assert "skitflow_demo_plugin" not in text and "impl" not in text


def test_the_task_runtime_names_the_package_of_a_step_that_is_not_installed() -> None:
    from skitflow.run.runtime import _load_step

    with pytest.raises(LookupError, match="transform step `title_case` is not installed where this task "
                                          "runs; install package `skitflow-demo-plugin`"):
        _load_step({"kind": "transform", "step": "title_case", "package": "skitflow-demo-plugin"})
    with pytest.raises(LookupError, match="comes from package `skitflow` where this task runs, but the "
                                          "pipeline was compiled with it from `other-steps`"):
        _load_step({"kind": "transform", "step": "dropna", "package": "other-steps"})
    assert _load_step({"kind": "transform", "step": "dropna", "package": "skitflow"}).name == "dropna"
