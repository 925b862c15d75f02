"""The daily loop's commands: graph, params, init (issue 13)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skitflow.plan.graph import plan_graph, to_dot, to_mermaid
from skitflow.plan.planner import build_plan
from skitflow.recipe.loader import load_recipe_file
from skitflow.steps.registry import default_registry

REPO = Path(__file__).resolve().parent.parent
VALID = REPO / "tests" / "recipes" / "valid"


def _graph(recipe: Path):
    return plan_graph(build_plan(load_recipe_file(recipe, partial=True), default_registry()))


def test_graph_has_one_node_per_compiled_task_with_its_fused_steps() -> None:
    from skitflow.api import compile_recipe

    recipe = REPO / "examples" / "tickets.yaml"
    drawn = _graph(recipe)
    package = compile_recipe(recipe)
    import yaml

    ir = next(yaml.safe_load_all(package.text))
    compiled = {name for component in [ir["root"], *ir["components"].values()] if "dag" in component
                for name in component["dag"]["tasks"] if not name.startswith("condition-")}
    assert {n.id for n in drawn.nodes if n.component != "parameter"} == compiled
    prepare = next(n for n in drawn.nodes if n.id == "csv-to-drop-columns")
    assert prepare.lines[:3] == ("source: csv", "transform: drop_duplicates", "transform: dropna")
    train = next(n for n in drawn.nodes if n.id == "train-xgboost")
    # one_hot is fitted on the train rows, inside the train task; the bundle replays the rest
    assert train.lines == ("(replays 6 prepare steps)", "fit: one_hot", "trainer: xgboost")


def test_graph_labels_conditions_when_otherwise_and_gate() -> None:
    edges = {(e.source, e.target): e for e in _graph(VALID / "conditional-split.yaml").edges}
    assert edges[("csv-dropna", "split-train-test")].label == "out → data [when 'split' not in columns]"
    assert edges[("csv-dropna", "split-by-column")].label == "out → data [otherwise]"
    assert edges[("evaluate-classification", "file-model")].label == "gate accuracy passed"
    assert edges[("evaluate-classification", "file-model")].conditional
    assert not edges[("split-train-test", "train-xgboost")].conditional


def test_graph_draws_parameters_and_parameter_conditions() -> None:
    drawn = _graph(VALID / "parameter-condition.yaml")
    params = {n.title: n.lines for n in drawn.nodes if n.component == "parameter"}
    assert set(params) >= {"params.holdout", "params.test_size", "params.columns"}
    labels = {(e.source, e.target): e.label for e in drawn.edges}
    assert labels[("param:holdout", "split-train-test")] == "when params.holdout == true"


def test_mermaid_and_dot_text_are_well_formed() -> None:
    drawn = _graph(VALID / "conditional-split.yaml")
    mermaid = to_mermaid(drawn)
    assert mermaid.startswith("flowchart TD\n")
    assert mermaid.count("-->") + mermaid.count("-.->") == len(drawn.edges)
    dot = to_dot(drawn)
    assert dot.startswith('digraph "conditional-split" {') and dot.rstrip().endswith("}")
    assert dot.count(" -> ") == len(drawn.edges)


@pytest.mark.skipif(shutil.which("dot") is None and not __import__("os").environ.get("CI"),
                    reason="Graphviz is installed by .ci/run (apt-get install graphviz)")
@pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_graph_svg_and_png_through_graphviz(cli, repo_root, tmp_path, fmt, magic) -> None:
    out = tmp_path / f"dag.{fmt}"
    result = cli("graph", "examples/tickets.yaml", "--format", fmt, "-o", out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert magic in data[:400]
    if fmt == "svg":
        assert b"trainer: xgboost" in data and b"gate f1_macro passed" in data


def test_graph_without_graphviz_says_how_to_install_it(repo_root, tmp_path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    done = subprocess.run([sys.executable, "-m", "skitflow", "graph", "examples/tickets.yaml",
                           "--format", "svg"], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(empty_bin), "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    assert "apt-get install graphviz" in done.stderr and "--format mermaid" in done.stderr
    assert "Traceback" not in done.stderr


def test_graph_of_a_bad_recipe_is_exit_2(cli, repo_root) -> None:
    result = cli("graph", "tests/recipes/invalid/unknown-step.yaml")
    assert result.exit_code == 2
    assert "unknown-step.yaml:6:5" in result.stderr


def test_params_lists_types_defaults_descriptions(cli, repo_root) -> None:
    result = cli("params", "examples/tickets.yaml", "--json")
    assert result.exit_code == 0, result.output
    declared = json.loads(result.stdout)
    assert declared["test_size"] == {"type": "float", "default": 0.2,
                                     "description": "Fraction of rows held out for evaluation."}
    table = cli("params", "examples/tickets.yaml")
    assert "min_f1" in table.stdout and "float" in table.stdout and "0.7" in table.stdout


def test_init_refuses_to_overwrite_and_writes_nothing(cli, tmp_path) -> None:
    (tmp_path / "README.md").write_text("mine\n")
    result = cli("init", tmp_path)
    assert result.exit_code == 2
    assert "README.md" in result.stderr and "nothing was written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert (tmp_path / "README.md").read_text() == "mine\n"


def test_init_rejects_a_name_kubeflow_cannot_take(cli, tmp_path) -> None:
    result = cli("init", tmp_path / "p", "--name", "Bad_Name")
    assert result.exit_code == 2 and "not a valid recipe name" in result.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_init_makes_a_project_that_validates_and_runs_at_once(tmp_path) -> None:
    project = tmp_path / "Call Outcomes"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO)}

    def skitflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "skitflow", *args], cwd=project,
                              capture_output=True, text=True, timeout=300, env=env)

    project.mkdir()
    made = skitflow("init")
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in project.iterdir()) == [
        ".gitignore", "README.md", "data", "recipe.schema.json", "recipe.yaml", "skitflow.toml"]
    recipe = (project / "recipe.yaml").read_text()
    assert recipe.startswith("# yaml-language-server: $schema=recipe.schema.json\n")
    assert "name: call-outcomes\n" in recipe
    assert "runs/" in (project / ".gitignore").read_text()
    assert json.loads((project / "recipe.schema.json").read_text())["title"]
    assert skitflow("validate", "recipe.yaml").returncode == 0
    ran = skitflow("run", "recipe.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "gate passed" in ran.stdout
    assert (project / "published" / "call-outcomes" / "model.json").is_file()


def _fake_run(base: Path, name: str, **summary) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"recipe": "r", "succeeded": True, **summary}))
    return folder


def test_runs_lists_newest_first_and_skips_unreadable_folders(cli, tmp_path) -> None:
    _fake_run(tmp_path, "r-1", started="2026-01-01T10:00:00Z", seconds=3.0,
              metrics={"f1_macro": 0.8, "log_loss": 0.3}, gate={"passed": False})
    _fake_run(tmp_path, "r-2", started="2026-01-02T10:00:00Z", succeeded=False)
    (tmp_path / "r-3").mkdir()  # killed before it wrote a summary
    result = cli("runs", "--runs-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [r["id"] for r in listed] == ["r-2", "r-1"]
    assert listed[0]["status"] == "failed"
    assert listed[1] == {"id": "r-1", "recipe": "r", "started": "2026-01-01T10:00:00Z",
                         "status": "succeeded", "seconds": 3.0, "metrics": {"f1_macro": 0.8},
                         "gate": "failed"}


def test_runs_show_and_compare_name_unknown_or_ambiguous_runs(cli, tmp_path) -> None:
    _fake_run(tmp_path, "tickets-1")
    _fake_run(tmp_path, "tickets-2")
    ambiguous = cli("runs", "show", "tickets", "--runs-dir", tmp_path)
    assert ambiguous.exit_code == 2 and "matches 2 runs" in ambiguous.stderr
    unknown = cli("runs", "compare", "tickets-1", "tickets-9", "--runs-dir", tmp_path)
    assert unknown.exit_code == 2 and "no run `tickets-9`" in unknown.stderr
    assert "did you mean" in unknown.stderr
    one = cli("runs", "compare", "tickets-1", "--runs-dir", tmp_path)
    assert one.exit_code == 2 and "at least two runs" in one.stderr


def test_compare_reports_parameters_hashes_sources_and_metric_deltas(cli, tmp_path) -> None:
    _fake_run(tmp_path, "a", parameters={"test_size": 0.2, "grid": {"depth": 4}}, recipe_hash="h1",
              sources={"csv": {"rows": 100, "sha256": "aa"}}, metrics={"f1_macro": 0.80})
    _fake_run(tmp_path, "b", parameters={"test_size": 0.3, "grid": {"depth": 4}}, recipe_hash="h1",
              sources={"csv": {"rows": 120, "sha256": "bb"}}, metrics={"f1_macro": 0.85})
    result = cli("runs", "compare", "a", "b", "--runs-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["field"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["params.test_size"]["values"] == [0.2, 0.3] and rows["params.test_size"]["differs"]
    assert not rows["params.grid.depth"]["differs"] and not rows["recipe_hash"]["differs"]
    assert rows["source.csv.rows"]["values"] == [100, 120]
    assert rows["source.csv.sha256"]["differs"]
    assert rows["metric.f1_macro"]["deltas"][1] == pytest.approx(0.05)
    table = cli("runs", "compare", "a", "b", "--runs-dir", tmp_path)
    assert "params.test_size" in table.stdout and "+0.0500" in table.stdout
    assert "params.grid.depth" not in table.stdout  # equal rows only with --all


@pytest.mark.slow
def test_two_real_runs_record_their_parameters_and_compare(tmp_path) -> None:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO)}

    def skitflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "skitflow", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, env=env)

    assert skitflow("init", "--name", "calls").returncode == 0
    for size in ("0.2", "0.3"):
        done = skitflow("run", "recipe.yaml", "-p", f"test_size={size}")
        assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(skitflow("runs", "--json").stdout)
    assert len(listed) == 2 and {r["recipe"] for r in listed} == {"calls"}
    compared = json.loads(skitflow("runs", "compare", listed[1]["id"], listed[0]["id"], "--json").stdout)
    rows = {row["field"]: row for row in compared["rows"]}
    assert rows["params.test_size"]["values"] == [0.2, 0.3]
    assert rows["params.min_f1"]["values"] == [0.6, 0.6]
    assert rows["recipe_hash"]["values"][0] and not rows["recipe_hash"]["differs"]


def _commands():
    import typer

    from skitflow.cli.app import app

    root = typer.main.get_command(app)

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in sorted(subcommands.items()):
                yield from walk(sub, [*path, name])
        if path:
            yield path

    return list(walk(root, []))


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p))
def test_every_command_help_shows_real_examples_and_defaults(cli, repo_root, path) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.stdout
    examples = [line.strip() for line in result.stdout.split("Examples:")[1].splitlines()
                if line.strip().startswith("skitflow ")]
    assert examples, result.stdout
    assert all(line.split()[1] == path[0] for line in examples), examples
    import typer

    from skitflow.cli.app import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    shown = [p for p in command.params if getattr(p, "show_default", False) is not False
             and p.default not in (None, False, (), []) and not p.hidden]
    assert result.stdout.count("[default:") >= len(shown), result.stdout
