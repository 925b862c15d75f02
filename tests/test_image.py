"""The runtime image: what `make image` builds and tags is what compiled packages name."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import yaml

from skitflow.api import compile_recipe

REPO = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_default_image_tag_is_what_make_image_tags(tmp_path: Path) -> None:
    # run as its own make, not as a sub-make of `make test` (which would add "make[1]:" lines)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "image"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    command = shlex.split(dry.stdout.strip().splitlines()[-1])
    assert command[:2] == ["docker", "build"]
    tag = command[command.index("-t") + 1]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("apiVersion: skitflow/v1\nname: img\nsource:\n  csv: {path: s3://b/k.csv}\n")
    spec = next(yaml.safe_load_all(compile_recipe(recipe).text))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {tag}
    assert f"VERSION={tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['version']}" in command


def test_one_requirements_list_for_the_image_and_the_harness() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY requirements-runtime.txt" in dockerfile
    assert "pip install -r requirements-runtime.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile  # nothing but the list, then skitflow itself
    harness = (REPO / "tests" / "launcher" / "runtime_env.py").read_text()
    assert 'REPO / "requirements-runtime.txt"' in harness
    pinned = [line for line in (REPO / "requirements-runtime.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(map(_name, pinned)) == sorted(map(_name, declared))
    assert all("==" in line for line in pinned), "pin exact versions: the image must be reproducible"


def test_plugins_build_arg_reaches_pip() -> None:
    dry = subprocess.run(["make", "-n", "image", "PLUGINS=skitflow-demo-plugin==0.1",
                          "IMAGE=registry.example.com/sf-plugins:1"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert '--build-arg PLUGINS="skitflow-demo-plugin==0.1"' in dry.stdout
    assert "-t registry.example.com/sf-plugins:1" in dry.stdout
    assert 'pip install ${PLUGINS}' in (REPO / "Dockerfile").read_text()
