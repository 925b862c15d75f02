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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from skitflow.util.datasets import NotStreamable as NotStreamable  # steps raise it in `batches`

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
    """Base of every step's settings: unknown keys are errors, not silently ignored.

    Validators are built when a step's settings are first validated (`defer_build`), so a
    command pays only for the steps its recipe uses, not for every step in the same module.
    pydantic builds them under a lock from 2.14 on (before, two threads validating a step's
    settings for the first time at once could see a half-built model), hence the requirement.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


Columns = list[str] | None  # None: not known before run time


@dataclass
class RunContext:
    """What a running step may know about the run it is part of."""

    recipe_name: str
    run_id: str  # kfp's run id; "" in tasks whose steps use no `run.*` (they do not receive it)
    run_date: str  # the day the run was created (UTC), or ""
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
    #: Settings holding a path or URL the step reads or writes. Compiling for Kubeflow refuses
    #: local paths there (a pod cannot see this machine's files) unless under a mounted volume.
    paths: ClassVar[tuple[str, ...]] = ()
    #: True for steps that learn from data (`fit(rows) -> state`, `apply(state, rows)`): the plan
    #: fits them on the train rows after the split and the model bundle carries their state.
    fitted: ClassVar[bool] = False
    #: True for steps that turn columns into sparse features (tfidf, hashing): they run after the
    #: split, inside the train/evaluate/predict tasks, since a dataset file cannot hold them.
    sparse: ClassVar[bool] = False
    #: True for steps that drop or add rows (dropna, filter_rows, ...): they curate training data
    #: and are not replayed when a model scores new rows.
    changes_rows: ClassVar[bool] = False
    #: True for steps that check data (`expect`): their task gets a KFP Metrics output for the
    #: results, and the runtime records each check instead of only running the step.
    reports_checks: ClassVar[bool] = False
    #: The run's identity (`id`, `date`, `name`) the step needs whatever its settings say, e.g. a
    #: sink that tags rows with the run id. The task then gets kfp's run placeholders (and, as
    #: any task whose inputs include the run id, is never reused from a cache).
    run_identity: ClassVar[tuple[str, ...]] = ()
    #: True for transforms whose result on a frame is the concatenation of their results on its
    #: pieces, in order (dropna, filter_rows, lowercase, ...): the data-prep task may then run
    #: them on the source's rows chunk by chunk, in bounded memory (see `streamer`). A plugin
    #: step without it always gets the whole frame.
    streamable: ClassVar[bool] = False

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

    def reads(self, settings: Any) -> Sequence[str] | None:
        """The columns whose values decide what this step does (None: possibly all of them)."""
        return list(self.needs(settings)) or None

    def is_fitted(self, settings: Any) -> bool:
        """Whether this step, with these settings, learns from data (see `fitted`)."""
        return self.fitted

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

    def batches(self, settings: Any, ctx: RunContext, rows: int) -> Iterator[pd.DataFrame] | None:
        """The rows `run` returns, as frames of about `rows` rows each whose concatenation is
        exactly `run`'s frame (same values and dtypes), or None when the source cannot say so."""
        return None

    def columns_after(self, settings: Any, columns: Columns) -> Columns:
        declared = getattr(settings, "columns", None)
        return list(declared) if declared else None


class TransformStep(Step):
    """Turns one DataFrame into another."""

    kind = Kind.TRANSFORM

    def run(self, frame: pd.DataFrame, settings: Any) -> pd.DataFrame:
        raise NotImplementedError

    def streamer(self, settings: Any) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
        """A function applied to each chunk of rows in order, or None when this step needs all
        rows at once. Stateful steps (drop_duplicates) override it to carry what they saw."""
        if not self.streamable or self.is_fitted(settings):
            return None
        return lambda frame: self.run(frame, settings)


class FittedTransform(TransformStep):
    """A transform that learns from data: `fit(frame) -> state`, then `apply(state, frame)`.

    The state is plain JSON data (means, categories, a vocabulary), so a model bundle can carry
    it and loading a bundle never runs code. `run` fits and applies on the same rows, which is
    what a recipe without a split does.
    """

    fitted = True

    def fit(self, frame: pd.DataFrame, settings: Any) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Any) -> pd.DataFrame:
        raise NotImplementedError

    def run(self, frame: pd.DataFrame, settings: Any) -> pd.DataFrame:
        return self.apply(self.fit(frame, settings), frame, settings)


class FeatureTransform(TransformStep):
    """Turns a text column into a sparse feature block (scipy CSR) beside the frame.

    `fit` returns the JSON state (empty for stateless hashing); `features(state, frame)` returns
    the block's matrix and feature names. The column it reads is gone afterwards.
    """

    sparse = True

    def fit(self, frame: pd.DataFrame, settings: Any) -> dict[str, Any]:
        return {}

    def features(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Any) -> tuple[Any, list[str]]:
        raise NotImplementedError

    def source_column(self, settings: Any) -> str:
        return str(settings.column)

    def columns_after(self, settings: Any, columns: Columns) -> Columns:
        if columns is None or getattr(settings, "keep", False):
            return columns
        return [c for c in columns if c != self.source_column(settings)]

    def run(self, frame: pd.DataFrame, settings: Any) -> pd.DataFrame:
        raise NotImplementedError("sparse features exist only inside the train/evaluate tasks")


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
    """Trains a model on the rows the preprocessing made from the train set.

    `fit` returns a :class:`Trained`; the train task writes it, with the fitted preprocessing,
    as one model bundle. `run` trains on a plain DataFrame and writes a bundle without
    preprocessing (for tests and scripts); it returns the bundle's metadata.
    """

    kind = Kind.TRAINER

    def fit(self, rows: Any, settings: Any, ctx: RunContext) -> Trained:
        raise NotImplementedError

    def run(self, train: pd.DataFrame, settings: Any, model_path: str, ctx: RunContext) -> dict:
        from skitflow.steps.bundle import Chain, train_bundle

        return train_bundle(train, Chain(), self, settings, model_path, ctx)

    def accelerator(self, settings: Any) -> tuple[str, int] | None:
        """(accelerator type, count) this trainer needs on Kubernetes, or None."""
        return None


@dataclass
class Trained:
    """What a trainer made: the model (files in its own format + a scorer), the design it
    reads and its metadata."""

    model: Any
    design: Any
    metadata: dict[str, Any]


#: Which way a metric improves: "higher" (f1, accuracy, r2) or "lower" (rmse, log_loss).
Direction = Literal["higher", "lower"]


class EvaluatorStep(Step):
    """Scores a model on the test set; returns an :class:`Evaluation`.

    `metrics` declares every metric the evaluator can compute and its direction, so a gate's
    metric name and bound are checked at `skitflow validate`; a plugin that declares none gets
    its gate metric checked only when it runs.
    """

    kind = Kind.EVALUATOR
    metrics: ClassVar[Mapping[str, Direction]] = {}

    def run(self, model_path: str, test: pd.DataFrame, settings: Any, ctx: RunContext) -> Evaluation:
        raise NotImplementedError


@dataclass
class ArtifactFile:
    """An artifact handed to a sink: its file, what it is and its format."""

    path: str
    role: str  # dataset | train | test | model | metrics | report
    format: str  # parquet | csv | skitflow-bundle | json | html | dir
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Metrics of one model on one test set.

    `scalars` are shown as KFP Metrics; `confusion_matrix` (labels + rows of counts) as KFP
    ClassificationMetrics; `report_html` is a standalone HTML page; `details` goes to metrics.json.
    `report` (built-in evaluators) is the page still to be drawn: the runtime renders it with
    the gate's verdict, so a page is drawn only for the model the run trained.
    """

    scalars: dict[str, float]
    confusion_matrix: tuple[list[str], list[list[int]]] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    report_html: str = ""
    report: Any = None  # skitflow.steps.report.Report | None
