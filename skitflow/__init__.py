"""skitflow: declarative ML pipeline recipes, compiled to Kubeflow Pipelines v2.

The public API is imported lazily so that `import skitflow` (and `skitflow validate`) stays fast.
"""

from typing import Any

__version__ = "0.1.0"

_API = ("compile_recipe", "load_model", "load_recipe", "load_recipe_text", "plan_recipe")


def __getattr__(name: str) -> Any:
    if name in _API:
        from skitflow import api

        return getattr(api, name)
    if name == "runtime":  # what every compiled component imports: a stable name, not a path
        from skitflow.run import runtime

        return runtime
    raise AttributeError(name)


__all__ = ["__version__", *_API]
