"""The runtime environment, built exactly as the Dockerfile builds the image.

A clean virtualenv (no system site-packages, no test extras) that gets what the Dockerfile
installs: `requirements-runtime.txt` (the one list both read), then skitflow's own wheel with
`--no-deps`, built from this checkout. Tasks run from an empty working directory with only the
venv's `bin` on PATH, so nothing of the source tree can leak in.

The venv is cached under `.venv-runtime/<hash of the requirements>/` (gitignored through
`.venv-*/`) and pip keeps its usual wheel cache, so only the first build downloads anything; the
skitflow wheel is reinstalled when the source changes (keyed by a hash of `skitflow/` and
pyproject.toml).

One addition the image does not have: `_skitflow_harness_mount.pth`, which, only when
SKITFLOW_HARNESS_MOUNT_ROOT is set, moves kfp's local mount prefixes (`/minio/`, `/s3/`, `/gcs/`)
under that folder. On a cluster the launcher downloads `minio://b/k` to `/minio/b/k`; here the
same mapping happens below a temporary folder instead of the machine's root.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements-runtime.txt"
#: Where built venvs are kept; SKITFLOW_RUNTIME_VENV_CACHE moves it out of the clone (e.g. so a CI
#: machine that clones afresh for every run keeps one venv per requirements hash).
CACHE_ROOT = Path(os.environ.get("SKITFLOW_RUNTIME_VENV_CACHE") or REPO / ".venv-runtime")
MOUNT_ROOT_ENV = "SKITFLOW_HARNESS_MOUNT_ROOT"

_MOUNT_HOOK = '''"""Harness only: kfp's local mount prefixes below $SKITFLOW_HARNESS_MOUNT_ROOT."""
import os

root = os.environ.get("SKITFLOW_HARNESS_MOUNT_ROOT")
if root:
    from kfp.dsl.types import artifact_types

    for name in ("_MINIO_LOCAL_MOUNT_PREFIX", "_S3_LOCAL_MOUNT_PREFIX", "_GCS_LOCAL_MOUNT_PREFIX"):
        artifact_types.__dict__[name] = root.rstrip("/") + getattr(artifact_types, name)
'''


@dataclass(frozen=True)
class RuntimeEnv:
    """A built runtime venv and how long getting it took."""

    root: Path
    seconds: float
    built: bool  # False: an existing venv was reused

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"


def requirements_hash() -> str:
    payload = REQUIREMENTS.read_bytes() + f"python{sys.version_info[:2]}".encode()
    return hashlib.sha256(payload).hexdigest()[:12]


def source_hash() -> str:
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes())
    for path in sorted((REPO / "skitflow").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def _run(*cmd: object, log: Path) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        done = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                              timeout=1800, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"building the runtime venv failed; see {log}")


def ensure_runtime_env() -> RuntimeEnv:
    """The cached runtime venv for the current requirements, with this checkout's skitflow."""
    started = time.monotonic()
    root = CACHE_ROOT / requirements_hash()
    log = CACHE_ROOT / "build.log"
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    built = False
    if not (root / ".requirements-installed").exists():
        built = True
        _run(sys.executable, "-m", "venv", "--clear", root, log=log)
        _run(root / "bin" / "python", "-m", "pip", "install", "-r", REQUIREMENTS, log=log)
        site = next((root / "lib").glob("python3*/site-packages"))
        (site / "_skitflow_harness_mount.py").write_text(_MOUNT_HOOK)
        (site / "_skitflow_harness_mount.pth").write_text("import _skitflow_harness_mount\n")
        (root / ".requirements-installed").touch()
    marker = root / ".skitflow-source"
    wanted = source_hash()
    if not marker.exists() or marker.read_text() != wanted:
        built = True
        wheels = root / "wheels"
        for old in wheels.glob("*.whl"):
            old.unlink()
        # The wheel is built by the developer's Python (setuptools is a test extra there); the
        # runtime venv gets only the wheel, like the image gets only `pip install .`.
        _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
             wheels, REPO, log=log)
        wheel = next(wheels.glob("skitflow-*.whl"))
        _run(root / "bin" / "python", "-m", "pip", "install", "--no-deps", "--force-reinstall",
             wheel, log=log)
        _run(root / "bin" / "python", "-m", "pip", "check", log=log)
        marker.write_text(wanted)
    return RuntimeEnv(root, time.monotonic() - started, built)


if __name__ == "__main__":
    env = ensure_runtime_env()
    print(f"{env.root} ({'built' if env.built else 'reused'} in {env.seconds:.1f}s)")
