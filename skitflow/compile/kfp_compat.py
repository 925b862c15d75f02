"""Import kfp for compiling and running without the parts skitflow does not use there.

`import kfp` also imports `kfp.client`, which pulls in the Kubernetes API client (~0.3 s), and
`kfp.kubernetes` imports the Kubernetes client again for one function skitflow never calls. Both
cost every `skitflow compile` and `skitflow run`. kfp has its own switch for the first
(`_KFP_RUNTIME=true` while `kfp/__init__` runs, which its executor uses in every task); for the
second, the Kubernetes client is stood in for while `kfp.kubernetes` is imported and loaded only if
something really uses it. Nothing global is left behind: `kfp.Client` still works (loaded on first
use), and a later `import kubernetes` gets the real package.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any


def import_kfp() -> types.ModuleType:
    """`kfp`, without importing `kfp.client` until someone asks for it."""
    if "kfp" not in sys.modules:
        previous = os.environ.get("_KFP_RUNTIME")
        os.environ["_KFP_RUNTIME"] = "true"  # kfp/__init__.py then skips `from kfp.client import Client`
        try:
            import kfp  # noqa: F401
        finally:
            if previous is None:
                del os.environ["_KFP_RUNTIME"]
            else:
                os.environ["_KFP_RUNTIME"] = previous
        sys.modules["kfp"].__getattr__ = _kfp_attribute  # type: ignore[attr-defined,method-assign]
    return sys.modules["kfp"]


def _kfp_attribute(name: str) -> Any:
    """What a plain `import kfp` would have set, loaded on first use."""
    if name == "Client":
        from kfp.client import Client

        return Client
    if name in ("client", "compiler", "components", "dsl", "local", "kubernetes"):
        return importlib.import_module(f"kfp.{name}")
    raise AttributeError(f"module 'kfp' has no attribute {name!r}")


class _Deferred(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then imports the real one."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(self.__name__), name)


def import_kfp_kubernetes() -> types.ModuleType:
    """`kfp.kubernetes`, with the Kubernetes API client imported only if it is really used."""
    import_kfp()
    if "kfp.kubernetes" in sys.modules or "kubernetes" in sys.modules:
        return importlib.import_module("kfp.kubernetes")
    package, client = _Deferred("kubernetes"), _Deferred("kubernetes.client")
    package.client = client  # type: ignore[attr-defined]
    sys.modules.update({"kubernetes": package, "kubernetes.client": client})
    try:
        return importlib.import_module("kfp.kubernetes")
    finally:  # the stand-ins stay only where kfp.kubernetes bound them
        for name, stand_in in (("kubernetes.client", client), ("kubernetes", package)):
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
