"""What a step is.

A step is a small class: a ``name``, a ``kind``, a pydantic ``Settings`` model (its docstring and
field descriptions are the step's documentation), a column contract (which columns it needs,
which it produces, what the columns are after it ran) and a ``run`` method that does the work. The column contract is pure
and cheap, so a re-ordered recipe is checked before anything runs; ``run`` imports heavy libraries
(pandas, xgboost) inside itself so that `skitflow validate` never pays for them.

Built-in steps and third-party plugins register the same way: an entry point in the
``skitflow.steps`` group pointing at a Step class, a list of them, or a module holding them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas as pd


class Kind(enum.StrEnum):
    SOURCE = "source"
    TRANSFORM = "transform"
    SINK = "sink"
    SPLIT = "split"
    TRAINER = "trainer"
    EVALUATOR = "evaluator"


class StepSettings(BaseModel):
    """Base of every step's settings: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Columns = list[str] | None  # None: not known before run time


@dataclass
class RunContext:
    """What a running step may know about the run it is part of."""

    recipe_name: str
    run_id: str
    run_date: str
    workdir: str  # a scratch folder that belongs to this task
    environ: Mapping[str, str] = field(default_factory=dict)
    log: Any = print  # callable(str): progress lines a step wants the user to see


class Step:
    """Base class of every step. Subclasses set name, kind, Settings and implement `run`."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    Settings: ClassVar[type[StepSettings]] = StepSettings
    #: A settings example shown by `skitflow steps show` and used by the docs test.
    example: ClassVar[Mapping[str, Any]] = {}
    #: False for steps whose result depends on the outside world (a database, an annotation
    #: service) or that have side effects: their task is not cached unless the recipe says so.
    cacheable: ClassVar[bool] = True
    #: True for steps that check data (`expect`): their task gets a KFP Metrics output for the
    #: results, and the runtime records each check instead of only running the step.
    reports_checks: ClassVar[bool] = False

    # -- column contract (pure) -------------------------------------------------------------
    def needs(self, settings: Any) -> Sequence[str]:
        """Columns that must exist before this step runs."""
        return ()

    def columns_after(self, settings: Any, columns: Columns) -> Columns:
        """Columns after this step ran, given those before it (None: unknown).

        Override it when a step removes, renames or selects columns. A step that only adds
        columns declares them in `produces` instead and leaves this alone.
        """
        return columns

    def produces(self, settings: Any) -> Sequence[str]:
        """Columns this step adds (their names may depend on the settings).

        Later steps may need them: the plan adds them to `columns_after`, and the task runtime
        checks after `run` that the step really made them.
        """
        return ()

    def columns_out(self, settings: Any, columns: Columns) -> Columns:
        """The contract the plan applies: `columns_after`, then each produced column not in it."""
        after = self.columns_after(settings, columns)
        if after is None:
            return None
        return [*after, *(c for c in self.produces(settings) if c not in after)]

    def is_cacheable(self, settings: Any) -> bool:
        """Whether a task holding this step may be cached by default (see `cacheable`)."""
        return self.cacheable

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring: what the step does, in one line."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


class SourceStep(Step):
    """Reads a dataset from somewhere."""

    kind = Kind.SOURCE

    def run(self, settings: Any, ctx: RunContext) -> pd.DataFrame:
        raise NotImplementedError

    def columns_after(self, settings: Any, columns: Columns) -> Columns:
        declared = getattr(settings, "columns", None)
        return list(declared) if declared else None


class TransformStep(Step):
    """Turns one DataFrame into another."""

    kind = Kind.TRANSFORM

    def run(self, frame: pd.DataFrame, settings: Any) -> pd.DataFrame:
        raise NotImplementedError


class SinkStep(Step):
    """Writes an artifact (dataset, model, metrics) somewhere; returns where it went."""

    kind = Kind.SINK
    cacheable = False  # a cached sink would not write again after its target was removed

    def run(self, artifact: ArtifactFile, settings: Any, ctx: RunContext) -> str:
        raise NotImplementedError


class SplitStep(Step):
    """Splits a dataset into train and test."""

    kind = Kind.SPLIT

    def run(self, frame: pd.DataFrame, settings: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
        raise NotImplementedError


class TrainerStep(Step):
    """Trains a model on the train set and saves it as one file at `model_path`.

    Returns the model's metadata (features, classes, parameters, library versions), which the
    runtime records on the KFP Model artifact beside the file.
    """

    kind = Kind.TRAINER

    def run(self, train: pd.DataFrame, settings: Any, model_path: str, ctx: RunContext) -> dict:
        raise NotImplementedError

    def accelerator(self, settings: Any) -> tuple[str, int] | None:
        """(accelerator type, count) this trainer needs on Kubernetes, or None."""
        return None


class EvaluatorStep(Step):
    """Scores a model on the test set; returns an :class:`Evaluation`."""

    kind = Kind.EVALUATOR

    def run(self, model_path: str, test: pd.DataFrame, settings: Any, ctx: RunContext) -> Evaluation:
        raise NotImplementedError


@dataclass
class ArtifactFile:
    """An artifact handed to a sink: its file, what it is and its format."""

    path: str
    role: str  # dataset | train | test | model | metrics | report
    format: str  # parquet | csv | xgboost-json | json | html | dir
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Metrics of one model on one test set.

    `scalars` are shown as KFP Metrics; `confusion_matrix` (labels + rows of counts) as KFP
    ClassificationMetrics; `report_html` is a standalone HTML page; `details` goes to metrics.json.
    """

    scalars: dict[str, float]
    confusion_matrix: tuple[list[str], list[list[int]]] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    report_html: str = ""
