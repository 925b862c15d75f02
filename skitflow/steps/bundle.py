"""The model bundle: everything needed to score raw rows, in one safe file.

A bundle is a zip archive (written deterministically) holding:

- ``bundle.json``: the format and its version, the ordered transform steps with their settings
  and fitted states (plain JSON: means, categories, vocabularies), the model's design (which
  columns and sparse blocks it reads, in order) and metadata (task, target, classes,
  hyper-parameters, recipe name and hash, library versions, training rows, training-data hash);
- the model in its library's own format: ``model.ubj`` (xgboost) or ``model.json`` (linear
  coefficients).

Loading never runs code from the file: steps are looked up by name in the step registry, their
settings validated by their own models, and the model rebuilt by a fixed loader per library
(no pickle). The train task writes a bundle; the evaluator, `predict:` recipes, `skitflow
predict` and :func:`skitflow.load_model` all score through :class:`Bundle`, so they cannot drift.

Steps are recorded in two stages. ``prepare`` steps ran before the split on the whole dataset
(they are stateless); a bundle replays them only on raw rows, and skips the ones that drop rows
(training-data curation such as dropna). ``model`` steps start at the first fitted or sparse
step: fitted on the train rows in the train task, then applied with that state everywhere else.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from skitflow.errors import StepFailed
from skitflow.steps.base import FeatureTransform, Kind, RunContext, Step
from skitflow.steps.estimators import (
    MODEL_LOADERS,
    Design,
    FeatureBlock,
    Rows,
    class_probabilities,
    design_matrix,
    frame_hash,
)
from skitflow.util.atomic import atomic_path

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FORMAT = "skitflow-model-bundle"
#: Bumped when a reader of an older version could misread a newer bundle.
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
#: No member of a bundle may unpack to more than this (a zip bomb is refused, not unpacked).
MAX_MEMBER_BYTES = 4 * 1024**3
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same model gives the same bytes

__all__ = ["Bundle", "Chain", "ChainStep", "Rows", "load_bundle", "train_bundle"]


@dataclass
class ChainStep:
    """One transform of the bundle: its settings, its stage and (for fitted steps) its state."""

    step: Step
    settings: Any
    stage: str  # "prepare" | "model"
    location: str = ""
    state: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step.name, "stage": self.stage, "location": self.location,
                "settings": self.settings.model_dump(mode="json"), "state": self.state}


@dataclass
class Chain:
    """The ordered transforms a model's rows go through."""

    steps: list[ChainStep] = field(default_factory=list)

    def fit(self, rows: Rows, log: Any = None) -> Rows:
        """Fit every `model` step on these rows in order (each sees the previous one's output)."""
        for item in self.steps:
            if item.stage != "model":
                continue
            if item.step.is_fitted(item.settings):
                try:
                    item.state = item.step.fit(rows.frame, item.settings)  # type: ignore[attr-defined]
                except StepFailed:
                    raise
                except Exception as exc:
                    raise StepFailed(f"{item.step.name} ({item.location}): {exc}") from exc
                if log:
                    log(f"{item.step.name}: fitted on {len(rows):,} train rows")
            rows = _apply(item, rows, set())
        return rows

    def apply(self, rows: Rows, *, raw: bool, optional: Sequence[str] = ()) -> Rows:
        """Replay the steps with their fitted states. `raw`: the rows are as the source made them
        (replay `prepare` steps too, minus those that drop rows). `optional` columns (the target)
        may be missing: steps leave them out rather than fail."""
        absent = set(optional) - set(map(str, rows.frame.columns))
        for item in self.steps:
            if item.stage == "prepare" and (not raw or item.step.changes_rows):
                continue
            rows = _apply(item, rows, absent)
        return rows


def _apply(item: ChainStep, rows: Rows, absent: set[str]) -> Rows:
    """One step on the rows: stateless run, fitted apply, or a new sparse block."""
    settings = item.settings
    if absent and absent & set(item.step.needs(settings)):
        settings = _without_columns(item.step, settings, absent)
        if settings is None:
            return rows
    step, frame = item.step, rows.frame
    try:
        if isinstance(step, FeatureTransform):
            matrix, names = step.features(item.state or {}, frame, settings)
            name = f"{step.name}:{getattr(settings, 'prefix', None) or step.source_column(settings)}"
            if any(block.name == name for block in rows.blocks):
                raise StepFailed(f"{step.name}: a second sparse block named `{name}`",
                                 hint="give one of the steps its own `prefix`")
            kept = frame if getattr(settings, "keep", False) else frame.drop(columns=[step.source_column(settings)])
            return Rows(kept, [*rows.blocks, FeatureBlock(name, matrix, names)])
        if step.is_fitted(settings):
            out = step.apply(item.state or {}, frame, settings)  # type: ignore[attr-defined]
        else:
            out = step.run(frame, settings)  # type: ignore[attr-defined]
    except StepFailed as exc:
        where = f" ({item.location})" if item.location else ""
        raise StepFailed(f"{exc.problems[0].message}{where}", hint=exc.problems[0].hint) from None
    if rows.blocks and len(out) != len(frame):
        raise StepFailed(f"{step.name} changed the number of rows after sparse features were made",
                         hint="move it before the first fitted step of the recipe")
    return Rows(out, rows.blocks)


def _without_columns(step: Step, settings: Any, absent: set[str]) -> Any:
    """The step's settings without the absent columns (a target missing at scoring time), or
    None when nothing is left for the step to do."""
    data = settings.model_dump(mode="json")
    for key, value in list(data.items()):
        if key in ("column", "target") and value in absent:
            return None
        if isinstance(value, list) and key in ("columns", "subset"):
            data[key] = [v for v in value if v not in absent] or None
            if data[key] is None and key == "columns":
                return None
        elif isinstance(value, dict) and key in ("mapping", "values", "categories", "prefix"):
            data[key] = {k: v for k, v in value.items() if k not in absent} or None
            if data[key] is None and key in ("mapping", "values"):
                return None
    try:
        return step.Settings.model_validate(data)
    except ValidationError:
        return None


@dataclass
class Bundle:
    """A trained model with its preprocessing, ready to score raw rows."""

    chain: Chain
    model: Any  # XGBoostModel | LinearModel
    design: Design
    metadata: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.metadata["task"])

    @property
    def classes(self) -> list[Any] | None:
        return self.metadata.get("classes")

    def rows(self, frame: pd.DataFrame, *, raw: bool = True) -> Rows:
        """The rows as the model reads them: the bundle's steps replayed with their states."""
        self._check_columns(frame, raw)
        return self.chain.apply(Rows(frame), raw=raw, optional=[self.metadata["target"]])

    def scores(self, frame: pd.DataFrame, *, raw: bool = True) -> np.ndarray:
        """(rows, classes) probabilities for a classifier, (rows,) values for a regressor."""
        return self.scored(frame, raw=raw)[1]

    def scored(self, frame: pd.DataFrame, *, raw: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows as the model read them (a target transformed by the steps included) and
        their scores: what an evaluator compares."""
        rows = self.rows(frame, raw=raw)
        x = design_matrix(rows, self.design, categorical_ok=self.model.library == "xgboost")
        raw_scores = self.model.scores(x, self.design)
        if self.task == "classification":
            return rows.frame, class_probabilities(raw_scores)
        return rows.frame, raw_scores[:, 0] if raw_scores.ndim > 1 else raw_scores

    def feature_names(self) -> list[str]:
        """The name of every input column of the model, in order: dense columns, then each
        sparse block's features (a tfidf term as `prefix:term`, a hashed one as `block#j`)."""
        import pandas as pd

        names = [str(c) for c in self.design.features]
        known: dict[str, list[str]] = {}
        for item in self.chain.steps:
            if item.stage == "model" and isinstance(item.step, FeatureTransform):
                column = item.step.source_column(item.settings)
                block = f"{item.step.name}:{getattr(item.settings, 'prefix', None) or column}"
                one = pd.DataFrame({column: [""]})  # vectorizers refuse zero rows
                try:
                    known[block] = item.step.features(item.state or {}, one, item.settings)[1]
                except Exception:  # a plugin that cannot name its features: numbered below
                    known[block] = []
        for spec in self.design.blocks:
            width, terms = int(spec["width"]), known.get(spec["name"], [])
            names += terms if len(terms) == width else [f"{spec['name']}#{j}" for j in range(width)]
        return names

    def feature_importance(self, top: int = 25) -> list[tuple[str, float]]:
        """The `top` input columns the model relies on most, largest first (zeros left out)."""
        values = self.model.importance(self.design.width)
        ranked = sorted(zip(self.feature_names(), values, strict=True), key=lambda p: -p[1])
        return [(name, value) for name, value in ranked[:top] if value > 0]

    def predict(self, frame: pd.DataFrame, *, raw: bool = True) -> pd.Series:
        """The predicted class (as in the training labels) or value of each row."""
        import numpy as np
        import pandas as pd

        scores = self.scores(frame, raw=raw)
        if self.task != "classification":
            return pd.Series(scores, index=frame.index, name="prediction")
        labels = np.asarray(self.classes, dtype=object)[scores.argmax(axis=1)]
        return pd.Series(labels.tolist(), index=frame.index, name="prediction")

    def predict_proba(self, frame: pd.DataFrame, *, raw: bool = True) -> pd.DataFrame:
        """One column per class (named by the class) of probabilities."""
        import pandas as pd

        if self.task != "classification":
            raise StepFailed("a regression model has no class probabilities", hint="use predict")
        return pd.DataFrame(self.scores(frame, raw=raw), index=frame.index,
                            columns=[str(c) for c in self.classes or []])

    def predictions(self, frame: pd.DataFrame, *, output: str = "prediction", scores: bool = True,
                    score_prefix: str = "score_", raw: bool = True) -> pd.DataFrame:
        """`frame` plus the prediction column, `<output>_score` (the predicted class's
        probability) and, with `scores`, one `<score_prefix><class>` column per class."""
        import numpy as np

        values = self.scores(frame, raw=raw)
        added: dict[str, Any] = {}
        if self.task == "classification":
            labels = np.asarray(self.classes, dtype=object)
            added[output] = labels[values.argmax(axis=1)].tolist()
            added[f"{output}_score"] = values.max(axis=1)
            if scores:
                for i, label in enumerate(self.classes or []):
                    added[f"{score_prefix}{label}"] = values[:, i]
        else:
            added[output] = values
        clash = [c for c in added if c in frame.columns]
        if clash:
            raise StepFailed(f"predict: the data already has column(s) {', '.join(clash)}",
                             hint="choose another `output` or `score_prefix`")
        return frame.assign(**added)

    def _check_columns(self, frame: pd.DataFrame, raw: bool) -> None:
        """Name every column the rows lack that the bundle's steps or model read, before anything
        runs: the steps' column contracts are walked forward from the rows' columns."""
        target = self.metadata.get("target")
        current: list[str] | None = [str(c) for c in frame.columns]
        missing: list[str] = []
        for item in self.chain.steps:
            if item.stage == "prepare" and (not raw or item.step.changes_rows):
                continue
            if current is None:
                break
            missing += [c for c in item.step.needs(item.settings)
                        if c not in current and c != target and c not in missing]
            current = item.step.columns_after(item.settings, current + [c for c in missing])
        if current is not None:
            missing += [c for c in [*self.design.features, *self.design.categorical]
                        if c not in current and c not in missing]
        if missing:
            raise StepFailed(
                f"the rows lack {len(missing)} column(s) the model needs: "
                + ", ".join(f"`{c}`" for c in missing),
                hint="the data has: " + ", ".join(f"`{c}`" for c in map(str, frame.columns)),
            )

    # -- file format ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        import skitflow

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "written_by": f"skitflow {skitflow.__version__}",
            "metadata": self.metadata,
            "design": self.design.to_json(),
            "steps": [item.to_json() for item in self.chain.steps],
            "model": {"library": self.model.library},
        }

    def write(self, path: str) -> int:
        """Write the bundle atomically; returns its size in bytes."""
        manifest = json.dumps(self.to_json(), sort_keys=True, default=_jsonable).encode()
        members = {MANIFEST: manifest, **self.model.files()}
        with atomic_path(path) as temporary, zipfile.ZipFile(temporary, "w") as archive:
            for name in sorted(members):
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, members[name], compresslevel=6)
        return os.path.getsize(path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def load_bundle(path: str) -> Bundle:
    """Read a bundle file; a clear error for anything that is not one this skitflow can read."""
    import skitflow

    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise StepFailed(f"cannot read model {path}: {exc.strerror or exc}") from None
    if head[:1] == b"{":
        raise StepFailed(f"{path} is not a skitflow model bundle (it looks like a bare JSON model)",
                         hint="models written by skitflow before bundles existed must be retrained")
    if not zipfile.is_zipfile(path):
        raise StepFailed(f"{path} is not a skitflow model bundle",
                         hint="give the `model` artifact a trainer wrote (skitflow run / submit)")
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        if MANIFEST not in infos:
            raise StepFailed(f"{path} is a zip file but not a skitflow model bundle (no {MANIFEST})")
        too_big = [n for n, info in infos.items() if info.file_size > MAX_MEMBER_BYTES]
        if too_big:
            raise StepFailed(f"{path}: member {too_big[0]} unpacks to more than "
                             f"{MAX_MEMBER_BYTES // 1024**3} GiB; refusing to read it")
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except ValueError as exc:
            raise StepFailed(f"{path}: {MANIFEST} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StepFailed(f"{path} is not a skitflow model bundle (format "
                             f"{manifest.get('format') if isinstance(manifest, dict) else '?'!r})")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StepFailed(
                f"{path} was written by {manifest.get('written_by', 'an unknown skitflow')} "
                f"(bundle format {version}); this skitflow {skitflow.__version__} reads bundle "
                f"formats up to {FORMAT_VERSION}",
                hint="upgrade skitflow to load this model",
            )
        library = manifest.get("model", {}).get("library")
        loader = MODEL_LOADERS.get(library)
        if loader is None:
            raise StepFailed(f"{path}: unknown model library {library!r}",
                             hint=f"this skitflow loads: {', '.join(sorted(MODEL_LOADERS))}")
        files = {name: archive.read(name) for name in infos if name != MANIFEST}
    try:
        metadata = dict(manifest["metadata"])
        model = loader.load(files, metadata)
        return Bundle(_chain(manifest["steps"], path), model, Design.from_json(manifest["design"]), metadata)
    except (KeyError, TypeError) as exc:
        raise StepFailed(f"{path}: the bundle is incomplete ({exc})") from None


def _chain(items: Sequence[Mapping[str, Any]], path: str) -> Chain:
    from skitflow.steps.registry import default_registry

    registry = default_registry()
    steps = []
    for item in items:
        entry = registry.get(item["step"], Kind.TRANSFORM)
        if entry is None:
            raise StepFailed(f"{path}: the model uses transform step `{item['step']}`, which is not "
                             "installed here", hint="install the plugin that provides it")
        step = entry.step()
        try:
            settings = step.Settings.model_validate(item["settings"])
        except ValidationError as exc:
            raise StepFailed(f"{path}: settings of step `{item['step']}` do not validate: "
                             f"{exc.errors()[0]['msg']}") from None
        steps.append(ChainStep(step, settings, item["stage"], item.get("location", ""), item.get("state")))
    return Chain(steps)


def read_bundle_bytes(data: bytes) -> dict[str, Any]:
    """The manifest of a bundle held in memory (for tests and tools that inspect bundles)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return dict(json.loads(archive.read(MANIFEST)))


def train_bundle(
    frame: pd.DataFrame,
    chain: Chain,
    trainer: Step,
    settings: Any,
    path: str,
    ctx: RunContext,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit the chain on the train rows, train the model on what it makes, write the bundle.

    Returns the bundle's metadata (the caller records a bounded summary of it on the artifact).
    """
    log = ctx.log or (lambda _line: None)
    columns_in = [str(c) for c in frame.columns]
    train_data_sha256, rows = _digest_while_fitting(frame, chain, log)
    trained = trainer.fit(rows, settings, ctx)  # type: ignore[attr-defined]
    metadata = {
        **trained.metadata,
        "recipe": ctx.recipe_name,
        "run_id": ctx.run_id,
        "trainer": trainer.name,
        "columns_in": [c for c in columns_in if c in _needed_columns(chain, trained.design, columns_in)],
        "features_out": {"columns": trained.design.features,
                         "blocks": trained.design.blocks, "width": trained.design.width},
        "steps": [{"step": i.step.name, "stage": i.stage, "fitted": i.state is not None}
                  for i in chain.steps],
        "ignored_columns": ignored_columns(rows.frame, trained.design, settings),
        "train_rows": len(frame),
        "train_data_sha256": train_data_sha256,
        **dict(extra or {}),
    }
    bundle = Bundle(chain, trained.model, trained.design, json.loads(json.dumps(metadata, default=_jsonable)))
    size = bundle.write(path)
    log(f"model bundle written: {size:,} bytes ({trained.model.library}, "
        f"{len(chain.steps)} preprocessing step(s))")
    return {**bundle.metadata, "bundle_bytes": size}


def _digest_while_fitting(frame: pd.DataFrame, chain: Chain, log: Any) -> tuple[str, Rows]:
    """The train rows' digest (`frame_hash`, of the rows as given) and the fitted chain's rows.

    pyarrow and hashlib release the GIL, so the digest is made on a second core while the
    chain fits (0.4 s -> 0.2 s for both at 776,000 rows). That is safe only under pandas'
    copy-on-write (pandas 3, or the option set): the chain then works on a shallow copy, and a
    step that changes it in place changes its own copy, never the rows being hashed.
    """
    import pandas as pd

    if not (int(pd.__version__.split(".")[0]) >= 3 or pd.options.mode.copy_on_write is True):
        digest = frame_hash(frame)
        return digest, chain.fit(Rows(frame), log)
    from skitflow.util.overlap import side_by_side

    shallow = frame.copy(deep=False)
    return side_by_side(lambda: frame_hash(frame), lambda: chain.fit(Rows(shallow), log))


def ignored_columns(frame: pd.DataFrame, design: Design, settings: Any) -> dict[str, str]:
    """Columns of the train rows the model does not read, each with the reason (the report)."""
    import pandas as pd

    target = getattr(settings, "target", None)
    used = set(design.features) | set(design.categorical)
    listed = getattr(settings, "features", None) is not None
    reasons = {}
    for column in map(str, frame.columns):
        if column == target or column in used:
            continue
        dtype = frame[column].dtype
        if listed:
            reasons[column] = "not listed in the trainer's `features`"
        elif pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            reasons[column] = "not used by the trainer"
        else:
            reasons[column] = f"not numeric ({dtype}): turn text into features with `tfidf` or " \
                "`hashing`, or encode categories"
    return reasons


def _needed_columns(chain: Chain, design: Design, columns_in: list[str]) -> set[str]:
    """Columns of the prepared rows the model stage reads (their steps' needs and the model's
    dense features); the others may be missing when scoring."""
    needed = set(design.features) | set(design.categorical)
    for item in chain.steps:
        if item.stage == "model":
            needed |= set(item.step.needs(item.settings))
    return needed & set(columns_in) if needed else set(columns_in)
