"""Golden files: valid recipes beside their compiled packages, invalid ones beside their errors.

Set SKITFLOW_UPDATE_GOLDENS=1 to regenerate (`make goldens`), then review the diff. CI never does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.package_check import check_package

HERE = Path(__file__).parent / "recipes"
UPDATE = os.environ.get("SKITFLOW_UPDATE_GOLDENS") == "1" and os.environ.get("CI") != "true"
VALID = sorted((HERE / "valid").glob("*.yaml"), key=lambda p: p.name)
VALID = [p for p in VALID if not p.name.endswith(".package.yaml")]
INVALID = sorted((HERE / "invalid").glob("*.yaml"))


def _compare(actual: str, golden: Path) -> None:
    if UPDATE:
        golden.write_text(actual)
    assert golden.exists(), f"{golden} is missing: run `make goldens`"
    assert actual == golden.read_text(), f"{golden.name} differs: run `make goldens` and review"


@pytest.mark.parametrize("recipe", VALID, ids=lambda p: p.stem)
def test_valid_recipe_compiles_to_its_golden_package(recipe: Path, repo_root, tmp_path, cli) -> None:
    relative = recipe.relative_to(repo_root)
    out = tmp_path / "package.yaml"
    # The fixtures read local files; the package is the same for both targets.
    result = cli("compile", relative, "-o", out, "--target", "local")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    check_package(text, tmp_path)
    _compare(text, recipe.with_suffix(".package.yaml"))


@pytest.mark.parametrize("recipe", INVALID, ids=lambda p: p.stem)
def test_invalid_recipe_fails_with_its_golden_error(recipe: Path, repo_root, tmp_path, cli) -> None:
    relative = recipe.relative_to(repo_root)
    out = tmp_path / "package.yaml"
    result = cli("compile", relative, "-o", out)
    assert result.exit_code == 2, result.output
    assert not out.exists(), "an invalid recipe must not leave a package behind"
    assert "Traceback" not in result.output
    _compare(result.stderr, recipe.with_suffix(".error.txt"))


# skitflow's own code locations: a module path (`skitflow.steps.sources`) or a source line
# (`runtime.py:42`, `planner.py", line 42`). A package that embeds them changes when code moves.
OWN_CODE = re.compile(r"\bskitflow\.[a-z_]+|\.py\W{0,3}(?:line\s+)?\d+")


def test_the_code_pattern_catches_module_paths_and_line_references() -> None:
    assert OWN_CODE.search('"impl":"skitflow.steps.sources:CsvSource"')
    assert OWN_CODE.search("raised at runtime.py:42") and OWN_CODE.search('planner.py", line 7')
    assert not OWN_CODE.search('image: ghcr.io/skitflow/skitflow:0.1.0 "$program_path/ephemeral_component.py"')


@pytest.mark.parametrize("recipe", VALID, ids=lambda p: p.stem)
def test_golden_packages_name_no_skitflow_module_or_source_line(recipe: Path) -> None:
    text = recipe.with_suffix(".package.yaml").read_text()
    found = sorted({m.group(0) for m in OWN_CODE.finditer(text)})
    assert not found, f"{recipe.stem}: the package embeds skitflow code locations {found}"
    assert '"package":"skitflow"' in text  # steps are named for the registry instead
