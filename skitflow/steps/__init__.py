"""Built-in steps.

They register through the `skitflow.steps` entry point exactly as plugins do (see pyproject.toml):
the registry loads `BUILTIN_STEPS` from here like any plugin's list. One module per kind.
"""

from skitflow.steps.evaluators import EVALUATORS
from skitflow.steps.sinks import SINKS
from skitflow.steps.sources import SOURCES
from skitflow.steps.split import SPLITS
from skitflow.steps.trainers import TRAINERS
from skitflow.steps.transforms import TRANSFORMS

BUILTIN_STEPS = [*SOURCES, *TRANSFORMS, *SINKS, *SPLITS, *TRAINERS, *EVALUATORS]

__all__ = ["BUILTIN_STEPS"]
