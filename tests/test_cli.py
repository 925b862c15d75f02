"""The command line: exit codes, messages, steps, schema; through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skitflow.steps.registry import default_registry

REPO = Path(__file__).resolve().parent.parent


def test_validate_ok(cli, repo_root) -> None:
    result = cli("validate", "recipes")
    assert result.exit_code == 0, result.output
    assert "ok recipes/seed-workflow.yaml (7 tasks)" in result.output


def test_validate_reports_problems_of_every_file_with_exit_2(cli, repo_root) -> None:
    result = cli("validate", "tests/recipes/invalid/unknown-step.yaml",
                 "tests/recipes/invalid/duplicate-key.yaml")
    assert result.exit_code == 2
    assert "unknown-step.yaml:6:5" in result.stderr
    assert "duplicate-key.yaml:7:1" in result.stderr
    assert "Traceback" not in result.output


def test_validate_a_folder_skips_compiled_packages_and_other_yaml(cli, repo_root, tmp_path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "ci.yaml").write_text("jobs: {test: {runs-on: ubuntu}}\n")
    (tmp_path / "recipe.yaml").write_text((REPO / "recipes/prepare-tickets.yaml").read_text())
    result = cli("validate", "tests/recipes/valid", tmp_path)
    assert result.exit_code == 0, result.output
    goldens = [p for p in (REPO / "tests/recipes/valid").glob("*.yaml") if not p.name.endswith(".package.yaml")]
    assert result.stdout.count("ok ") == len(goldens) + 1
    assert f"skipped {len(goldens) + 1} YAML file(s) that are not skitflow recipes" in result.stderr
    assert "data-prep.package.yaml" in result.stderr and "ci.yaml" in result.stderr


def test_a_file_named_explicitly_is_validated_even_if_it_is_not_a_recipe(cli, repo_root) -> None:
    result = cli("validate", "tests/recipes/valid/data-prep.package.yaml")
    assert result.exit_code == 2
    assert "missing required key `apiVersion`" in result.stderr


def test_validate_warns_when_a_local_source_path_does_not_exist(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("apiVersion: skitflow/v1\nname: r\nsource:\n  csv: {path: data/in.csv}\n")
    result = cli("validate", "r.yaml")
    assert result.exit_code == 0, result.output
    assert "warning: r.yaml:4:15: local source path `data/in.csv` does not exist" in result.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("a\n1\n")
    result = cli("validate", "r.yaml")
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_missing_file_is_invalid_input(cli, tmp_path) -> None:
    result = cli("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_compile_a_folder_writes_one_package_per_recipe(cli, repo_root, tmp_path) -> None:
    result = cli("compile", "recipes", "-o", tmp_path / "out", "--target", "local")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "prepare-tickets.yaml", "seed-workflow.yaml"]


def test_compile_writes_nothing_when_any_recipe_is_invalid(cli, repo_root, tmp_path) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "good.yaml").write_text((REPO / "recipes/prepare-tickets.yaml").read_text())
    (folder / "bad.yaml").write_text((REPO / "tests/recipes/invalid/unknown-step.yaml").read_text())
    out = tmp_path / "build"
    result = cli("compile", folder, "-o", out, "--target", "local")
    assert result.exit_code == 2
    assert not out.exists() or not any(out.iterdir())


def test_steps_lists_every_registered_step(cli) -> None:
    result = cli("steps")
    assert result.exit_code == 0
    for entry in default_registry():
        assert entry.name in result.stdout


def test_steps_show_prints_settings_contract_and_example(cli) -> None:
    result = cli("steps", "show", "rename_columns")
    assert result.exit_code == 0, result.output
    assert "mapping" in result.stdout
    assert "needs columns:" in result.stdout
    assert "example:" in result.stdout


def test_steps_show_unknown_step_suggests(cli) -> None:
    result = cli("steps", "show", "lowercse")
    assert result.exit_code == 2
    assert "did you mean `lowercase`?" in result.stderr


def test_checked_in_schema_is_current(cli) -> None:
    result = cli("schema")
    assert result.exit_code == 0
    checked_in = (REPO / "schemas" / "recipe.schema.json").read_text()
    assert result.stdout == checked_in, "schemas/recipe.schema.json is stale: run `make schema`"


def test_schema_accepts_valid_recipes_and_refuses_invalid_ones() -> None:
    import jsonschema
    import yaml

    schema = json.loads((REPO / "schemas" / "recipe.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for recipe in [*REPO.glob("recipes/*.yaml"), *REPO.glob("examples/*.yaml")]:
        assert not list(validator.iter_errors(yaml.safe_load(recipe.read_text()))), recipe
    bad = yaml.safe_load((REPO / "tests/recipes/invalid/unknown-step.yaml").read_text())
    assert list(validator.iter_errors(bad))


@pytest.mark.parametrize("entry", list(default_registry()), ids=lambda e: f"{e.kind.value}-{e.name}")
def test_every_registered_step_is_documented(entry) -> None:
    step = entry.step
    assert step.summary(), f"{entry.name}: no one-line summary (class docstring)"
    for name, field in step.Settings.model_fields.items():
        assert field.description, f"{entry.name}.{name} has no description"
    step.Settings.model_validate(dict(step.example))


def test_version(cli) -> None:
    from skitflow import __version__

    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_predict_scores_a_file_and_refuses_bad_input_with_exit_2(cli, tmp_path) -> None:
    import pandas as pd

    from tests.test_bundle import _bundle_bytes, utterances

    (tmp_path / "model.zip").write_bytes(_bundle_bytes(tmp_path))
    utterances(30).drop(columns=["intent"]).to_csv(tmp_path / "rows.csv", index=False)
    result = cli("predict", tmp_path / "model.zip", tmp_path / "rows.csv", "-o", tmp_path / "out.parquet")
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert len(scored) == 30 and {"prediction", "prediction_score", "score_billing"} <= set(scored.columns)

    (tmp_path / "partial.csv").write_text("call_id\n1\n")
    missing = cli("predict", tmp_path / "model.zip", tmp_path / "partial.csv", "-o", tmp_path / "x.csv")
    assert missing.exit_code == 2 and "`utterance`, `duration`" in missing.stderr
    notabundle = cli("predict", tmp_path / "rows.csv", tmp_path / "rows.csv", "-o", tmp_path / "x.csv")
    assert notabundle.exit_code == 2 and "not a skitflow model bundle" in notabundle.stderr
    assert "Traceback" not in missing.output + notabundle.output
    assert not (tmp_path / "x.csv").exists()  # nothing partial written
