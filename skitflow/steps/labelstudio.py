"""Label Studio steps: send rows to annotators, and read their annotations back.

The `labelstudio` sink turns dataset rows into Label Studio tasks, with optional model predictions
as pre-annotations. It is idempotent: each task carries a stable key in its data (`skitflow_key`:
a key column's value, or a hash of the task data), the keys already in the project are fetched
first, and only new rows are imported, so running a recipe again never duplicates tasks.

The `labelstudio` source exports a project and flattens each annotated task into one row:
the chosen task-data fields plus one column per labeling control, from the latest annotation that
was not cancelled.

The server and token come from LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or LABEL_STUDIO_TOKEN)
at run time, never from the recipe (see skitflow.connectors.labelstudio).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from skitflow.errors import StepFailed, did_you_mean
from skitflow.steps.base import (
    ArtifactFile,
    Columns,
    RunContext,
    SinkStep,
    SourceStep,
    StepSettings,
)
from skitflow.steps.columns import ColumnList

if TYPE_CHECKING:
    import pandas as pd

    from skitflow.connectors.labelstudio import LabelStudioClient

__all__ = ["KEY_FIELD", "LABELSTUDIO_STEPS", "LabelStudioExport", "LabelStudioSink"]

#: The task-data field holding each task's stable key (what makes the sink idempotent).
KEY_FIELD = "skitflow_key"
#: Name of the choices control in the built-in labeling config.
CHOICES_NAME = "label"
_DATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Columns of a JSON_MIN export item that describe the annotation, not the task data.
_JSON_MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"}
ProjectRef = int | str


def _project_ref(value: ProjectRef) -> ProjectRef:
    if isinstance(value, int) and value < 1:
        raise ValueError("a project id is a positive number")
    if isinstance(value, str) and not value.strip():
        raise ValueError("give a project id or a title")
    return value


def quoteattr(value: str) -> str:
    """An XML attribute value, quoted (xml.sax.saxutils would import urllib and ssl: slow)."""
    import html

    return '"' + html.escape(value, quote=True) + '"'


def builtin_label_config(text_column: str, labels: Sequence[str]) -> str:
    """A text-classification config: the text, and one choice per label."""
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    name = CHOICES_NAME if text_column != CHOICES_NAME else f"{CHOICES_NAME}_choice"
    return (
        "<View>\n"
        f"  <Text name={quoteattr(text_column)} value={quoteattr('$' + text_column)}/>\n"
        f"  <Choices name={quoteattr(name)} toName={quoteattr(text_column)} "
        'choice="single-radio" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def _choices_control(label_config: str) -> tuple[str, str] | None:
    """(name, toName) of the config's first <Choices> control, for scalar predictions."""
    import xml.etree.ElementTree as ET

    for element in ET.fromstring(label_config).iter("Choices"):
        if element.get("name") and element.get("toName"):
            return element.get("name", ""), element.get("toName", "").split(",")[0]
    return None


# --------------------------------------------------------------------------- the sink


class LabelStudioSink(SinkStep):
    """Send dataset rows to a Label Studio project as tasks, without duplicating any.

    Each row becomes a task whose data are the `data_columns` (all columns by default), with an
    optional model prediction from `prediction_column` shown to annotators as a pre-annotation.
    `project` is an id, or a title: a project with that title is reused, or created with
    `label_config` (by default a text-classification config built from `text_column` and
    `labels`). Every task stores a stable key (`key_column`, or a hash of its data) in
    `skitflow_key`; rows whose key is already in the project are skipped, so a re-run only adds
    new rows. Needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY at run time.
    """

    name = "labelstudio"
    #: Its effect is on a server: a cached result must not stand in for running it.
    cacheable: ClassVar[bool] = False
    example: ClassVar[Mapping[str, Any]] = {
        "project": "ticket triage",
        "text_column": "subject",
        "labels": ["billing", "technical", "account"],
        "prediction_column": "predicted_team",
        "key_column": "ticket_id",
    }

    class Settings(StepSettings):
        """Which project, what goes into each task, and how tasks are keyed."""

        project: ProjectRef = Field(
            description="A project id (a number), or a title: the project with that title, "
            "created when there is none."
        )
        label_config: str | None = Field(
            None,
            description="Labeling config (XML) for a project this step creates; default: the "
            "text in `text_column` with one choice per entry of `labels`.",
        )
        text_column: str = Field("text", description="The column annotators read.")
        labels: list[str] | None = Field(
            None, min_length=1, description="Choices of the built-in labeling config."
        )
        data_columns: ColumnList | None = Field(
            None,
            min_length=1,
            description="Columns stored in each task's data; default all but the prediction "
            "columns.",
        )
        prediction_column: str | None = Field(
            None,
            description="A column of model predictions shown as pre-annotations: a label, or a "
            "Label Studio result list as JSON.",
        )
        score_column: str | None = Field(None, description="The predictions' scores (0-1).")
        model_version: str | None = Field(
            None, description="Model version recorded on predictions; default the recipe name."
        )
        key_column: str | None = Field(
            None,
            description="A column whose value identifies a row across runs; default a hash of "
            "the task data.",
        )
        batch_size: int = Field(500, ge=1, le=10_000, description="Tasks sent per request.")

        check_project = field_validator("project")(_project_ref)

        @field_validator("label_config")
        @classmethod
        def _xml(cls, value: str | None) -> str | None:
            if value is None:
                return value
            import xml.etree.ElementTree as ET

            try:
                root = ET.fromstring(value)
            except ET.ParseError as error:
                raise ValueError(f"`label_config` is not valid XML: {error}") from None
            if root.tag != "View":
                raise ValueError(f"`label_config` must start with <View>, not <{root.tag}>")
            return value

        @field_validator("labels")
        @classmethod
        def _distinct(cls, value: list[str] | None) -> list[str] | None:
            if value is not None:
                seen = [v for i, v in enumerate(value) if v in value[:i]]
                if seen:
                    raise ValueError(f"label `{seen[0]}` is listed twice")
            return value

        @model_validator(mode="after")
        def _config_source(self) -> LabelStudioSink.Settings:
            if self.label_config is None:
                if not self.labels:
                    raise ValueError(
                        "give `labels` (the choices of the built-in text-classification config) "
                        "or your own `label_config`"
                    )
                if not _DATA_NAME.fullmatch(self.text_column):
                    raise ValueError(
                        f"`text_column` `{self.text_column}` cannot be used in a labeling config; "
                        "rename it to letters, digits and underscores"
                    )
            if self.score_column and not self.prediction_column:
                raise ValueError("`score_column` needs a `prediction_column`")
            if self.data_columns is not None:
                stray = {self.prediction_column, self.score_column} & set(self.data_columns)
                if stray - {None}:
                    raise ValueError(f"`{(stray - {None}).pop()}` is a prediction column; it "
                                     "cannot also be task data")
            return self

        def config(self) -> str:
            return self.label_config or builtin_label_config(self.text_column, self.labels or [])

    def needs(self, settings: Settings) -> Sequence[str]:
        wanted = list(settings.data_columns or [])
        if settings.label_config is None and settings.text_column not in wanted:
            wanted.insert(0, settings.text_column)
        for column in (settings.prediction_column, settings.score_column, settings.key_column):
            if column and column not in wanted:
                wanted.append(column)
        return wanted

    def run(self, artifact: ArtifactFile, settings: Settings, ctx: RunContext) -> str:
        from skitflow.connectors.labelstudio import LabelStudioClient
        from skitflow.util.datasets import read_dataset

        if artifact.format not in ("", "parquet", "csv"):
            raise StepFailed(f"labelstudio: sends datasets as tasks; a {artifact.role} "
                             f"({artifact.format}) cannot be sent",
                             hint="write it with `input: dataset` (the default)")
        frame = read_dataset(artifact.path)
        missing = [c for c in self.needs(settings) if c not in frame.columns]
        if missing:
            hint = did_you_mean(missing[0], [str(c) for c in frame.columns])
            raise StepFailed(f"labelstudio: the dataset has no column `{missing[0]}`"
                             + (f"; {hint}" if hint else ""),
                             hint=f"its columns: {', '.join(map(str, frame.columns))}")
        config = settings.config()
        tasks = build_tasks(frame, settings, model_version=settings.model_version or ctx.recipe_name)
        unique = _first_per_key(tasks)
        if len(unique) < len(tasks):
            ctx.log(f"labelstudio: {len(tasks) - len(unique)} rows repeat the key of an earlier "
                    "row and are sent once")

        with LabelStudioClient.from_env(ctx.environ or None) as client:
            project, created = _sink_project(client, settings, config, ctx)
            project_id = int(project["id"])
            existing = set() if created else {
                str(task["data"][KEY_FIELD]) for task in client.iter_tasks(project_id)
                if isinstance(task.get("data"), dict) and KEY_FIELD in task["data"]
            }
            new = [task for key, task in unique.items() if key not in existing]
            sent = 0
            for start in range(0, len(new), settings.batch_size):
                batch = new[start:start + settings.batch_size]
                client.import_tasks(project_id, batch)
                sent += len(batch)
                ctx.log(f"labelstudio: imported {sent}/{len(new)} new tasks into project "
                        f"{project_id}")
        kept = len(unique) - len(new)
        ctx.log(f"labelstudio: project {project_id} `{project.get('title', '')}`: {len(new)} new "
                f"tasks, {kept} already there ({client.url})")
        return f"labelstudio://project/{project_id} (+{len(new)} new, {kept} existing)"


def _sink_project(client: LabelStudioClient, settings: LabelStudioSink.Settings, config: str,
                  ctx: RunContext) -> tuple[dict[str, Any], bool]:
    ref = settings.project
    if isinstance(ref, int) or ref.isdigit():
        return client.get_project(int(ref)), False
    project, created = client.ensure_project(
        ref, config, description=f"Tasks sent by skitflow recipe `{ctx.recipe_name}`.")
    if created:
        ctx.log(f"labelstudio: created project {project['id']} `{ref}`")
    elif settings.label_config and project.get("label_config", "").strip() != config.strip():
        ctx.log(f"labelstudio: project {project['id']} `{ref}` exists with another labeling "
                "config; it is kept as it is")
    return project, created


def build_tasks(frame: pd.DataFrame, settings: LabelStudioSink.Settings,
                model_version: str) -> list[dict[str, Any]]:
    """One Label Studio task per row: data (with its key) and optional predictions."""
    prediction_columns = {settings.prediction_column, settings.score_column} - {None}
    data_columns = list(settings.data_columns or
                        [str(c) for c in frame.columns if c not in prediction_columns])
    if settings.label_config is None and settings.text_column not in data_columns:
        data_columns.insert(0, settings.text_column)
    if KEY_FIELD in data_columns:
        data_columns.remove(KEY_FIELD)  # a dataset exported from Label Studio carries it already
    control = None
    if settings.prediction_column:
        control = (CHOICES_NAME if settings.text_column != CHOICES_NAME else
                   f"{CHOICES_NAME}_choice", settings.text_column)
        if settings.label_config is not None:
            control = _choices_control(settings.label_config)
    records = frame.to_dict("records")
    tasks = []
    for row_number, row in enumerate(records):
        data = {column: _jsonable(row[column]) for column in data_columns}
        if settings.key_column:
            key = _jsonable(row[settings.key_column])
            if key is None:
                raise StepFailed(f"labelstudio: row {row_number} has no value in key column "
                                 f"`{settings.key_column}`")
            if isinstance(key, float) and key.is_integer():
                key = int(key)  # 7.0 (an int column that gained a null) is still row 7
            key = str(key)
        elif KEY_FIELD in row and _jsonable(row[KEY_FIELD]) is not None:
            key = str(row[KEY_FIELD])
        else:
            key = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()
                                 ).hexdigest()[:32]
        data[KEY_FIELD] = key
        task: dict[str, Any] = {"data": data}
        if settings.prediction_column:
            result = _prediction_result(row[settings.prediction_column], control, settings,
                                        row_number)
            if result is not None:
                prediction: dict[str, Any] = {"result": result, "model_version": model_version}
                if settings.score_column:
                    score = _jsonable(row[settings.score_column])
                    if score is not None:
                        prediction["score"] = float(score)
                task["predictions"] = [prediction]
        tasks.append(task)
    return tasks


def _prediction_result(value: Any, control: tuple[str, str] | None,
                       settings: LabelStudioSink.Settings, row_number: int) -> list[dict] | None:
    value = _jsonable(value)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise StepFailed(f"labelstudio: row {row_number}: `{settings.prediction_column}` "
                             "looks like JSON but is not valid JSON") from None
    if isinstance(value, list):
        return value  # a ready Label Studio result list
    if control is None:
        raise StepFailed(
            f"labelstudio: `{settings.prediction_column}` holds plain labels, but the "
            "label_config has no <Choices> control to put them in",
            hint="add a <Choices> control, or give each prediction as a Label Studio result list "
            "in JSON",
        )
    label = str(value)
    if settings.label_config is None and settings.labels and label not in settings.labels:
        hint = did_you_mean(label, settings.labels)
        raise StepFailed(
            f"labelstudio: row {row_number}: prediction `{label}` is not one of the labels"
            + (f"; {hint}" if hint else ""),
            hint=f"labels: {', '.join(settings.labels)}",
        )
    name, to_name = control
    return [{"from_name": name, "to_name": to_name, "type": "choices",
             "value": {"choices": [label]}}]


def _first_per_key(tasks: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    unique: dict[str, dict[str, Any]] = {}
    for task in tasks:
        unique.setdefault(task["data"][KEY_FIELD], task)
    return unique


def _jsonable(value: Any) -> Any:
    """A cell as a JSON value: numpy scalars unboxed, NaN/NaT as null, timestamps as ISO text."""
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()  # numpy scalars and arrays
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool):
        return value
    try:
        import pandas as pd

        if value is pd.NaT or (not isinstance(value, list | dict) and pd.isna(value)):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------- the source


class LabelStudioExport(SourceStep):
    """Read the annotations of a Label Studio project: one row per annotated task.

    The project (an id or a title) is exported as `JSON` or `JSON_MIN`; each task becomes one
    row with its id (`task_id`), the task-data `fields` (all by default) and one column per
    labeling control in `label_fields` (control name -> column; all controls by default), taken
    from the latest annotation that was not cancelled. Choices become the chosen label (several
    joined by `separator`); ratings and numbers their value; regions (spans, boxes) a JSON list.
    With `annotated_only: false` tasks without annotations come too, their labels empty.
    """

    name = "labelstudio"
    #: Annotations change between runs: a cached export would be stale.
    cacheable: ClassVar[bool] = False
    example: ClassVar[Mapping[str, Any]] = {
        "project": "ticket triage",
        "fields": ["ticket_id", "subject"],
        "label_fields": {"label": "team"},
    }

    class Settings(StepSettings):
        """Which project, which export, and which columns come out."""

        project: ProjectRef = Field(description="A project id (a number) or its exact title.")
        export_type: Literal["JSON", "JSON_MIN"] = Field(
            "JSON", description="Label Studio's export format to read."
        )
        annotated_only: bool = Field(True, description="Only tasks with an annotation.")
        fields: ColumnList | None = Field(
            None, description="Task-data fields to keep as columns; default all of them."
        )
        label_fields: dict[str, str] | None = Field(
            None,
            description="Control name (`from_name`, e.g. `sentiment`) -> output column; "
            "default every control of the labeling config, under its own name.",
        )
        separator: str = Field(",", description="Joins several chosen labels.")
        columns: ColumnList | None = Field(
            None, min_length=1,
            description="The columns to return, in this order; the column contract of the recipe.",
        )

        check_project = field_validator("project")(_project_ref)

        @model_validator(mode="after")
        def _distinct_outputs(self) -> LabelStudioExport.Settings:
            outputs = ["task_id", *(self.fields or []), *(self.label_fields or {}).values()]
            twice = [c for i, c in enumerate(outputs) if c in outputs[:i]]
            if twice:
                raise ValueError(f"column `{twice[0]}` would be made twice; rename it in "
                                 "`label_fields`")
            return self

    def columns_after(self, settings: Settings, columns: Columns) -> Columns:
        if settings.columns:
            return list(settings.columns)
        if settings.fields is not None and settings.label_fields is not None:
            return ["task_id", *settings.fields, *settings.label_fields.values()]
        return None

    def run(self, settings: Settings, ctx: RunContext) -> pd.DataFrame:
        import pandas as pd

        from skitflow.connectors.labelstudio import LabelStudioClient

        with LabelStudioClient.from_env(ctx.environ or None) as client:
            project = client.find_project(settings.project)
            project_id = int(project["id"])
            items = client.export(project_id, settings.export_type,
                                  download_all_tasks=not settings.annotated_only)
        controls = list((project.get("parsed_label_config") or {}).keys())
        label_fields = dict(settings.label_fields) if settings.label_fields is not None else {
            name: name for name in controls}
        unknown = [name for name in label_fields if controls and name not in controls]
        if unknown:
            hint = did_you_mean(unknown[0], controls)
            raise StepFailed(
                f"labelstudio: project {project_id} has no control `{unknown[0]}`"
                + (f"; {hint}" if hint else ""),
                hint=f"its controls: {', '.join(controls)}",
            )
        if settings.export_type == "JSON":
            rows = flatten_json(items, label_fields, settings.separator, settings.annotated_only)
        else:
            rows = flatten_json_min(items, label_fields, set(controls), settings.separator,
                                    settings.annotated_only)
        fields = list(settings.fields) if settings.fields is not None else _data_fields(rows)
        missing = [f for f in fields if rows and not any(f in row["data"] for row in rows)]
        if missing:
            seen = _data_fields(rows)
            hint = did_you_mean(missing[0], seen)
            raise StepFailed(
                f"labelstudio: no task of project {project_id} has data field "
                f"`{missing[0]}`" + (f"; {hint}" if hint else ""),
                hint=f"task data fields: {', '.join(seen)}",
            )
        clash = [c for c in label_fields.values() if c in fields or c == "task_id"]
        if clash:
            raise StepFailed(f"labelstudio: label column `{clash[0]}` is also a task-data "
                             "field", hint="map the control to another name in `label_fields`")
        names = ["task_id", *fields, *label_fields.values()]
        frame = pd.DataFrame(
            [[row["task_id"], *(row["data"].get(f) for f in fields),
              *(row["labels"].get(c) for c in label_fields.values())] for row in rows],
            columns=names,
        )
        if settings.columns:
            absent = [c for c in settings.columns if c not in frame.columns]
            if absent:
                hint = did_you_mean(absent[0], names)
                raise StepFailed(f"labelstudio: no column `{absent[0]}` comes out of "
                                 f"project {project_id}" + (f"; {hint}" if hint else ""),
                                 hint=f"columns: {', '.join(names)}")
            frame = frame[list(settings.columns)]
        ctx.log(f"labelstudio: {len(frame)} annotated tasks from project {project_id} "
                f"`{project.get('title', '')}`")
        return frame


def _data_fields(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row["data"]))
    return list(seen)


def _latest(annotations: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    kept = [a for a in annotations if isinstance(a, Mapping) and not a.get("was_cancelled")]
    if not kept:
        return None
    return max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""),
                                    _as_int(a.get("id"))))


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def flatten_json(items: Sequence[Mapping[str, Any]], label_fields: Mapping[str, str],
                 separator: str, annotated_only: bool) -> list[dict[str, Any]]:
    """JSON export items -> rows of {task_id, data, labels}, from each latest annotation."""
    rows = []
    for task in items:
        annotation = _latest(task.get("annotations") or [])
        if annotation is None and annotated_only:
            continue
        by_control: dict[str, list[Mapping[str, Any]]] = {}
        for item in (annotation or {}).get("result") or []:
            if isinstance(item, Mapping) and item.get("from_name") in label_fields:
                by_control.setdefault(item["from_name"], []).append(item)
        labels = {column: _result_value(by_control.get(name, []), separator)
                  for name, column in label_fields.items()}
        rows.append({"task_id": task["id"], "data": dict(task.get("data") or {}), "labels": labels})
    return rows


def _result_value(items: Sequence[Mapping[str, Any]], separator: str) -> Any:
    """One control's results as one cell."""
    if not items:
        return None
    kinds = {str(item.get("type", "")) for item in items}
    values = [item.get("value") or {} for item in items]
    if kinds <= {"choices", "taxonomy", "textarea"}:
        parts: list[str] = []
        for kind, value in zip((str(i.get("type")) for i in items), values, strict=True):
            if kind == "choices":
                parts += [str(v) for v in value.get("choices", [])]
            elif kind == "taxonomy":
                parts += ["/".join(map(str, path)) for path in value.get("taxonomy", [])]
            else:
                parts += [str(v) for v in value.get("text", [])]
        return separator.join(parts) if parts else None
    if len(items) == 1 and len(kinds) == 1:
        kind = kinds.pop()
        if kind in values[0] and not isinstance(values[0][kind], list | dict):
            return values[0][kind]  # rating, number, datetime ...
    return json.dumps(values, sort_keys=True)  # regions: spans, boxes, keypoints ...


def flatten_json_min(items: Sequence[Mapping[str, Any]], label_fields: Mapping[str, str],
                     controls: set[str], separator: str,
                     annotated_only: bool) -> list[dict[str, Any]]:
    """JSON_MIN items (one per annotation) -> one row per task, from its latest annotation."""
    latest: dict[Any, Mapping[str, Any]] = {}
    for item in items:
        if annotated_only and item.get("annotation_id") is None:
            continue
        task_id = item["id"]
        current = latest.get(task_id)
        rank = (str(item.get("updated_at") or item.get("created_at") or ""),
                _as_int(item.get("annotation_id")))
        if current is None or rank > (str(current.get("updated_at") or current.get("created_at")
                                          or ""), _as_int(current.get("annotation_id"))):
            latest[task_id] = item
    rows = []
    skip = _JSON_MIN_META | controls | set(label_fields)
    for task_id, item in latest.items():
        data = {k: v for k, v in item.items() if k not in skip}
        labels = {column: _min_value(item.get(name), separator)
                  for name, column in label_fields.items()}
        rows.append({"task_id": task_id, "data": data, "labels": labels})
    return rows


def _min_value(value: Any, separator: str) -> Any:
    """A JSON_MIN control value as one cell: a label, joined labels, a number or JSON."""
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))  # {"choices": [...]} with several chosen
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return separator.join(value) if value else None
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


LABELSTUDIO_STEPS: list[type[SinkStep] | type[SourceStep]] = [LabelStudioSink, LabelStudioExport]
