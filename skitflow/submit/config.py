"""Where `skitflow submit` sends recipes: defaults from flags, the environment and project files.

A team sets its Kubeflow host once, in the project, and each person overrides it when needed:

    command-line flag > environment (KFP_HOST, KFP_NAMESPACE, KFP_EXPERIMENT)
      > ./skitflow.toml > [tool.skitflow] in ./pyproject.toml > built-in defaults

Only where to submit lives in files; credentials come from flags or the environment, never from a
file that might be committed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skitflow.errors import SkitflowError, did_you_mean

KEYS = ("host", "namespace", "experiment")
ENVIRONMENT = {"host": "KFP_HOST", "namespace": "KFP_NAMESPACE", "experiment": "KFP_EXPERIMENT"}
BUILT_IN: dict[str, str | None] = {"host": None, "namespace": None, "experiment": "Default"}
PROJECT_FILES = ("pyproject.toml", "skitflow.toml")  # later files win


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from (shown when a value is missing or wrong)."""

    value: str | None
    source: str  # "--host", "KFP_HOST", "skitflow.toml", "default"


def file_defaults(directory: Path | None = None) -> dict[str, Setting]:
    """`host`, `namespace`, `experiment` from ./pyproject.toml's [tool.skitflow] and ./skitflow.toml."""
    directory = directory or Path.cwd()
    found: dict[str, Setting] = {}
    for filename in PROJECT_FILES:
        path = directory / filename
        if not path.is_file():
            continue
        table = _skitflow_table(path)
        for key, value in table.items():
            if key not in KEYS:
                # Other skitflow commands may own other keys; only a near-miss is surely a typo.
                hint = did_you_mean(key, KEYS)
                if hint:
                    raise SkitflowError(f"{filename}: unknown skitflow setting `{key}`", hint=hint)
                continue
            if not isinstance(value, str):
                raise SkitflowError(f"{filename}: `{key}` must be a string, not {type(value).__name__}")
            if value.strip():
                found[key] = Setting(value.strip(), filename)
    return found


def _skitflow_table(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SkitflowError(f"cannot read {path.name}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SkitflowError(f"{path.name} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("skitflow")
    if table is None and path.name == "skitflow.toml":
        # skitflow.toml may hold the keys at the top level, or under [tool.skitflow] like pyproject.
        table = {k: v for k, v in data.items() if k != "tool"}
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise SkitflowError(f"{path.name}: [tool.skitflow] must be a table")
    return table


def resolve(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str] | None = None,
    directory: Path | None = None,
) -> dict[str, Setting]:
    """Every key in KEYS resolved by precedence: flag > environment > project files > built-in."""
    environ = os.environ if environ is None else environ
    files: dict[str, Setting] | None = None
    resolved: dict[str, Setting] = {}
    for key in KEYS:
        flag = flags.get(key)
        env = (environ.get(ENVIRONMENT[key]) or "").strip()
        if flag is not None and flag.strip():
            resolved[key] = Setting(flag.strip(), f"--{key}")
        elif env:
            resolved[key] = Setting(env, ENVIRONMENT[key])
        else:
            if files is None:
                files = file_defaults(directory)
            resolved[key] = files.get(key) or Setting(BUILT_IN[key], "default")
    return resolved


def require_host(settings: Mapping[str, Setting]) -> str:
    """The host, normalised (scheme added, no trailing slash); an input error when none is set."""
    host = settings["host"].value
    if not host:
        raise SkitflowError(
            "no Kubeflow Pipelines host given",
            hint="pass --host URL, set KFP_HOST, or add `host = \"https://...\"` under "
            "[tool.skitflow] in pyproject.toml",
        )
    return normalise_host(host)


def normalise_host(host: str) -> str:
    """`kfp.example.com/` -> `https://kfp.example.com` (what kfp.Client would assume, said aloud)."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    scheme = host.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise SkitflowError(f"host `{host}` must start with http:// or https://")
    return host
