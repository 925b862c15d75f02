"""Golden files: valid recipes beside their compiled packages, invalid ones beside their errors.

Set SKITFLOW_UPDATE_GOLDENS=1 to regenerate (`make goldens`), then review the diff. CI never does.
"""

from __future__ import annotations

import os
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
