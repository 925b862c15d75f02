"""What cannot work when a recipe runs on Kubeflow, found before anything is uploaded.

A pod runs in the image, on some node: it cannot read this machine's files, cannot reach this
machine's `localhost`, and has only the packages the image was built with. `skitflow run` runs on
this machine, so it accepts all of these; `skitflow submit` and `skitflow compile` (unless
`--target local`) refuse them here, each at its line in the recipe:

- a local or relative path (or file:// URL) in a step's path settings (`Step.paths`: a csv
  source's `path`, a `file` sink's `path`, ...), unless it lies under a volume mounted with
  `volumes:`;
- a URL whose host is localhost, 127.0.0.0/8, ::1 or 0.0.0.0, anywhere in a step's settings;
- a step from a plugin package the recipe does not declare its image to contain (`plugins:`).

Parameter values count as the run will see them: the values given to submit, else the defaults.
Pure: no files, no network.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from skitflow.errors import Problem
from skitflow.plan.planner import DEFAULT_IMAGE, SLOT_KIND
from skitflow.recipe.loader import LoadedRecipe
from skitflow.recipe.models import ItemOptions, Volume
from skitflow.recipe.sourcemap import Path
from skitflow.recipe.templating import RUNTIME_TEMPLATE_RE, ParamRef
from skitflow.steps.registry import Registry

_REMOTE_SCHEMES = ("s3", "gs", "http", "https", "minio")
_LOCAL_HOSTS = ("localhost", "localhost.localdomain", "ip6-localhost", "host.docker.internal")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def cluster_problems(loaded: LoadedRecipe, registry: Registry,
                     arguments: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every reason the recipe cannot run on Kubeflow as it stands (empty: none found)."""
    recipe = loaded.recipe
    values = {name: spec.default for name, spec in recipe.parameters.items()}
    values.update(arguments or {})
    problems: list[Problem] = []
    image = recipe.image or recipe.defaults.image or DEFAULT_IMAGE
    for slot, item, path in _items(recipe):
        name = next((k for k in item if k not in ItemOptions.model_fields), "")
        entry = registry.get(name, SLOT_KIND[slot]) if name else None
        if entry is None or not isinstance(item.get(name), dict | None):
            continue  # the planner reports it
        settings = item.get(name) or {}
        volumes = _volumes(item, recipe.defaults.volumes)
        for setting in entry.step.paths:
            if setting in settings:
                problems.extend(_path_problem(loaded, (*path, name, setting), settings[setting],
                                              values, volumes, slot))
        for where, text, origin in _strings(settings, (*path, name), values):
            host = _local_host(text)
            if host:
                problems.append(loaded.source_map.problem(
                    where, f"`{text}`{origin} points at {host}, which inside a pod is the pod itself",
                    "use the service's cluster address (e.g. http://NAME.NAMESPACE.svc:PORT) or a "
                    "public one; `skitflow run` and `skitflow compile --target local` accept it"))
        if entry.package != "skitflow" and entry.package not in recipe.plugins:
            problems.append(loaded.source_map.problem(
                (*path, name), f"step `{name}` comes from plugin package `{entry.package}`, which "
                f"image `{image}` is not declared to contain",
                f"build an image with it (`make image PLUGINS={entry.package} "
                f"IMAGE=REGISTRY/skitflow-plugins:TAG`), push it, set `image:` to it and add "
                f"`plugins: [{entry.package}]` to the recipe", key=True))
    if recipe.plugins and image == DEFAULT_IMAGE:
        problems.append(loaded.source_map.problem(
            ("plugins",), f"`plugins:` names {', '.join(recipe.plugins)}, but the image is the "
            f"default `{DEFAULT_IMAGE}`, which contains no plugins",
            "set `image:` to an image built with `make image PLUGINS=...`", key=True))
    return problems


def _items(recipe: Any) -> Iterator[tuple[str, dict[str, Any], Path]]:
    yield "source", recipe.source, ("source",)
    for index, item in enumerate(recipe.steps):
        yield "steps", item, ("steps", index)
    for index, item in enumerate(recipe.sinks):
        yield "sinks", item, ("sinks", index)
    if recipe.split is not None:
        yield "split", recipe.split, ("split",)
        if isinstance(recipe.split.get("otherwise"), dict):
            yield "split", recipe.split["otherwise"], ("split", "otherwise")
    for slot in ("trainer", "evaluator"):
        if getattr(recipe, slot) is not None:
            yield slot, getattr(recipe, slot), (slot,)


def _volumes(item: Mapping[str, Any], defaults: list[Volume] | None) -> list[Volume]:
    own = item.get("volumes")
    if isinstance(own, list):
        return [Volume.model_validate(v) for v in own if isinstance(v, dict)]
    return list(defaults or [])


def _resolve(value: Any, values: Mapping[str, Any]) -> tuple[Any, str]:
    """The value the run will see, and where it came from (for the message)."""
    if isinstance(value, ParamRef):
        return values.get(value.name), f" (the value of parameter `{value.name}`)"
    if isinstance(value, str) and "{{" in value:
        used = [m.group(2) for m in RUNTIME_TEMPLATE_RE.finditer(value) if m.group(1) == "params"]

        def fill(match: re.Match[str]) -> str:
            if match.group(1) == "params":
                return str(values.get(match.group(2), match.group(0)))
            return match.group(0)  # run.* stays: it cannot change where the path points

        origin = f" (with parameter {', '.join(f'`{u}`' for u in used)})" if used else ""
        return RUNTIME_TEMPLATE_RE.sub(fill, value), origin
    return value, ""


def _strings(value: Any, path: Path, values: Mapping[str, Any]) -> Iterator[tuple[Path, str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key), values)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index), values)
    else:
        resolved, origin = _resolve(value, values)
        if isinstance(resolved, str):
            yield path, resolved, origin


def _path_problem(loaded: LoadedRecipe, where: Path, raw: Any, values: Mapping[str, Any],
                  volumes: list[Volume], slot: str) -> list[Problem]:
    text, origin = _resolve(raw, values)
    if not isinstance(text, str) or not text:
        return []
    parts = urlsplit(text)
    scheme = parts.scheme.lower() if _URL.match(text) else ""
    if scheme in _REMOTE_SCHEMES:
        return []
    local = parts.path if scheme == "file" else text
    if posixpath.isabs(local) and any(_under(local, v.mount) for v in volumes):
        return []
    kind = "relative path" if not posixpath.isabs(local) else "local path"
    mounted = ", ".join(v.mount for v in volumes)
    if slot == "sinks":
        what = f"a {kind}{origin}: on Kubeflow it would be written inside the pod and lost"
        fix = "write to object storage (e.g. the `s3` sink with an s3:// URI)"
    else:
        what = f"a {kind}{origin}: a pod on Kubeflow cannot read this machine's files, and the image does not contain them"
        fix = "read it from object storage (s3://...) or http(s)"
    for name in origin.split("`")[1::2]:  # the parameters the value came from
        fix += f", or pass `--param {name}=s3://...` to submit"
    volume_hint = (f"or use a path under a mounted volume ({mounted})" if mounted else
                   "or mount a PersistentVolumeClaim with `volumes: [{pvc: NAME, mount: /data}]` "
                   "and use a path under it")
    return [loaded.source_map.problem(
        where, f"`{text}` is {what}",
        f"{fix}, {volume_hint}; `skitflow run` and `skitflow compile --target local` accept local paths")]


def _under(path: str, mount: str) -> bool:
    path, mount = posixpath.normpath(path), posixpath.normpath(mount)
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def _local_host(text: str) -> str | None:
    """`localhost` / a loopback or unspecified address when `text` is a URL pointing there."""
    if not _URL.match(text):
        return None
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    if not host:
        return None
    if host.lower() in _LOCAL_HOSTS:
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return host if address.is_loopback or address.is_unspecified else None


def require_cluster_ready(loaded: LoadedRecipe, registry: Registry,
                          arguments: Mapping[str, Any] | None = None) -> None:
    """Raise a RecipeError listing every problem :func:`cluster_problems` finds."""
    from skitflow.errors import RecipeError

    problems = cluster_problems(loaded, registry, arguments)
    if problems:
        raise RecipeError(problems=problems)
