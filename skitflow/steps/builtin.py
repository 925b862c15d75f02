"""The list of built-in steps.

They register through the `skitflow.steps` entry point exactly as plugins do (see pyproject.toml):
the registry loads `BUILTIN_STEPS` from here like any plugin's list.
"""

from skitflow.steps.evaluators import EVALUATORS
from skitflow.steps.expect import EXPECT_STEPS
from skitflow.steps.labelstudio import LABELSTUDIO_STEPS
from skitflow.steps.s3 import S3_STEPS
from skitflow.steps.sinks import SINKS
from skitflow.steps.sources import SOURCES
from skitflow.steps.split import SPLITS
from skitflow.steps.sql import SQL_STEPS
from skitflow.steps.sql_sink import SQL_SINKS
from skitflow.steps.text import TEXT_STEPS
from skitflow.steps.trainers import TRAINERS
from skitflow.steps.transforms import TRANSFORMS

BUILTIN_STEPS = [
    *SOURCES, *SQL_STEPS, *S3_STEPS, *LABELSTUDIO_STEPS, *TRANSFORMS, *TEXT_STEPS, *EXPECT_STEPS,
    *SINKS, *SQL_SINKS, *SPLITS, *TRAINERS,
    *EVALUATORS,
]

__all__ = ["BUILTIN_STEPS"]
