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


def run_recipe(recipe: str, data: str, env: dict, tmp_path: Path) -> list[str]:
    """`skitflow run` a recipe on `data` (data.csv); the lines of the out.csv it writes."""
    (tmp_path / "data.csv").write_text(data)
    (tmp_path / "recipe.yaml").write_text(recipe)
    result = skitflow("run", "recipe.yaml", "--out", "run", "--no-cache", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return (tmp_path / "out.csv").read_text().splitlines()


def test_a_recipe_uses_a_plugin_step_end_to_end(demo_plugin, tmp_path: Path) -> None:
    lines = run_recipe(RECIPE, "id,subject\n1,refund please\n2,login broken\n", demo_plugin, tmp_path)
    assert lines == ["id,subject", "1,Refund Please", "2,Login Broken"]


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


def test_a_plugin_whose_settings_cannot_be_built_is_refused_naming_its_package(tmp_path: Path) -> None:
    target = tmp_path / "site"
    _install("skitflow-broken-plugin", target)
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("title_case", "dropna"))
    env = {**os.environ, "PYTHONPATH": str(target)}
    for command in (["steps"], ["validate", "recipe.yaml"]):
        result = skitflow(*command, env=env, cwd=tmp_path)
        assert result.returncode in (1, 2), result.stderr  # validate reports every problem: 2
        assert "could not load steps from package `skitflow-broken-plugin`" in result.stderr
        assert "skitflow_broken_plugin.Opaque" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_compiled_plugin_step_names_its_package_not_its_module(demo_plugin, tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    result = skitflow("compile", "recipe.yaml", "--target", "local", "-o", "package.yaml",
                      env=demo_plugin, cwd=tmp_path)
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


LENGTH_RECIPE = """\
apiVersion: skitflow/v1
name: plugin-columns
source:
  csv: {path: data.csv, columns: [id, subject]}
steps:
  - text_length: {column: subject, into: n_chars}
  - filter_rows: {expr: "n_chars > 12"}
  - dropna: {columns: [n_chars]}
sinks:
  - file: {path: out.csv, format: csv}
"""


def test_a_column_a_plugin_step_produces_is_known_to_later_steps(demo_plugin, tmp_path: Path) -> None:
    lines = run_recipe(LENGTH_RECIPE, "id,subject\n1,refund please\n2,login\n", demo_plugin, tmp_path)
    assert lines == ["id,subject,n_chars", "1,refund please,13"]


def test_a_later_step_that_needs_a_column_the_plugin_did_not_produce_is_an_error(
        demo_plugin, tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(LENGTH_RECIPE.replace("dropna: {columns: [n_chars]}",
                                                                "dropna: {columns: [n_char]}"))
    result = skitflow("validate", "recipe.yaml", env=demo_plugin, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "`dropna` needs column `n_char`, which does not exist here" in result.stderr
    assert "did you mean `n_chars`?" in result.stderr
    default_name = LENGTH_RECIPE.replace(", into: n_chars", "").replace("n_chars", "subject_length")
    (tmp_path / "recipe.yaml").write_text(default_name)  # the produced name follows the settings
    assert skitflow("validate", "recipe.yaml", env=demo_plugin, cwd=tmp_path).returncode == 0


def test_steps_show_lists_the_columns_a_plugin_step_produces(demo_plugin) -> None:
    result = skitflow("steps", "show", "text_length", env=demo_plugin)
    assert result.returncode == 0, result.stderr
    assert "produces columns: subject_length" in result.stdout
    assert "columns after: subject, other, subject_length" in result.stdout


def test_the_task_runtime_fails_a_step_that_does_not_make_the_columns_it_declares(capsys) -> None:
    import pandas as pd

    from skitflow.run.runtime import _Call, _TaskRun
    from skitflow.steps.base import StepSettings, TransformStep

    class Forgetful(TransformStep):
        name = "forgetful"

        def produces(self, settings: StepSettings) -> list[str]:
            return ["made"]

        def run(self, frame: pd.DataFrame, settings: StepSettings) -> pd.DataFrame:
            return frame

    run = _TaskRun.__new__(_TaskRun)  # the spec parsing is not under test here
    run.name, run.calls = "prepare", [_Call(Forgetful(), StepSettings(), "recipe.yaml:7:5")]
    with pytest.raises(LookupError, match=r"`forgetful` declares that it produces column\(s\) `made` but"):
        run.steps(pd.DataFrame({"a": [1]}), [])
    assert '"location": "recipe.yaml:7:5"' in capsys.readouterr().err


def test_an_entry_point_naming_no_step_classes_is_refused_naming_it(monkeypatch) -> None:
    """Unit test of the registry's discovery: `json:dumps` is importable but is not a step."""
    from importlib import metadata

    from skitflow.errors import SkitflowError
    from skitflow.steps import registry

    point = metadata.EntryPoint("not-steps", "json:dumps", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [point] if group == point.group else [])
    with pytest.raises(SkitflowError) as caught:
        registry.discover()
    assert caught.value.exit_code == 1
    assert "could not load steps from package `json:dumps` (entry point `not-steps`)" in str(caught.value)
    assert "is not a Step class" in str(caught.value)
