"""The recipe, as pydantic models.

The recipe is the user's layer: what the data is, what happens to it and where it goes. It knows
nothing of KFP. Step items are mappings with exactly one step name plus wiring options beside it:

    - drop_duplicates: {subset: [id]}   # the step and its settings
      isolate: true                     # options: how the step is placed in the pipeline

Step *settings* are validated later against the registry (each step owns its model); here every
item is kept as a plain mapping and only the options are typed.
"""

from __future__ import annotations

import keyword
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from skitflow.recipe.templating import ParamRef

#: A value that may be `{{ params.NAME }}`, resolved at run time.
ParamOr = Annotated[ParamRef, WithJsonSchema({"type": "string", "pattern": r"\{\{.*\}\}"})]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
PARAM_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}
ARTIFACT_ROLES = ("dataset", "train", "test", "model", "metrics", "report", "predictions")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DURATION_RE = re.compile(r"^(\d+)\s*(s|m|h|d)?$")


def parse_duration(value: int | str) -> int:
    """Seconds from `90`, `"90s"`, `"15m"`, `"2h"` or `"1d"`."""
    if isinstance(value, int):
        return value
    match = _DURATION_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"`{value}` is not a duration; write it like 90, 90s, 15m, 2h or 1d")
    number, unit = int(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


class Parameter(_Strict):
    """A pipeline parameter: overridable at run and submit time without recompiling."""

    type: Literal["str", "int", "float", "bool", "list", "dict"] = Field(
        description="Value type; the KFP parameter gets the same type."
    )
    default: Any = Field(None, description="Value when none is given at run time.")
    description: str = Field("", description="Shown in `skitflow run --help` and the KFP UI.")


class Gpu(_Strict):
    count: int = Field(1, ge=1, description="Number of accelerators.")
    type: str = Field("nvidia.com/gpu", description="Kubernetes accelerator resource name.")


class Resources(_Strict):
    """Requests and limits of the task's pod."""

    cpu: str | float | None = Field(None, description="CPU request, e.g. 500m or 2.")
    memory: str | None = Field(None, description="Memory request, e.g. 2Gi.")
    cpu_limit: str | float | None = Field(None, description="CPU limit.")
    memory_limit: str | None = Field(None, description="Memory limit.")
    gpu: Gpu | None = Field(None, description="Accelerators for the task.")

    @field_validator("cpu", "cpu_limit")
    @classmethod
    def _cpu(cls, value: str | float | None) -> str | float | None:
        if value is not None and (isinstance(value, bool) or not _CPU_RE.fullmatch(str(value))):
            raise ValueError(f"`{value}` is not a CPU amount; write cores like 2 or 0.5, "
                             "or millicores like 500m")
        return value

    @field_validator("memory", "memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY_RE.fullmatch(value):
            raise ValueError(f"`{value}` is not a memory amount; write bytes with a unit like "
                             "512Mi or 2Gi (units: K, M, G, T, P, E and Ki, Mi, Gi, Ti, Pi, Ei)")
        return value


#: Kubernetes quantities as kfp accepts them (kfp.dsl.PipelineTask validates with these).
_CPU_RE = re.compile(r"([0-9]*[.])?[0-9]+m?")
_MEMORY_RE = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")


class Retries(_Strict):
    count: int = Field(ge=0, le=20, description="How many times a failed task is retried.")
    backoff: int | str = Field("30s", description="Wait before the first retry (doubles).")

    @field_validator("backoff")
    @classmethod
    def _duration(cls, value: int | str) -> int | str:
        parse_duration(value)
        return value


class Toleration(_Strict):
    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class SecretEnv(_Strict):
    """Expose keys of a Kubernetes secret as environment variables; only the name is compiled."""

    secret: str = Field(description="Name of the Kubernetes secret.")
    env: dict[str, str] = Field(description="Environment variable -> key in the secret.")


class Volume(_Strict):
    """A PersistentVolumeClaim mounted into the task's pod (kfp-kubernetes `mount_pvc`).

    Local paths under `mount` are fine on Kubeflow: the pod sees the volume there. `skitflow
    run` reads and writes the same path on this machine.
    """

    pvc: str = Field(description="Name of an existing PersistentVolumeClaim in the run's namespace.")
    mount: str = Field(pattern=r"^/", description="Absolute path where the volume appears, e.g. /data.")


class TaskOptions(_Strict):
    """How a step's task runs on Kubernetes; set per recipe under `defaults:` or per step."""

    image: str | None = Field(None, description="Container image for the task.")
    resources: Resources | None = None
    retries: Retries | None = None
    caching: bool | None = Field(None, description="Reuse results of identical earlier runs.")
    timeout: int | str | None = Field(None, description="Task timeout, e.g. 30m.")
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    secrets: list[SecretEnv] | None = None
    volumes: list[Volume] | None = Field(None, description="PersistentVolumeClaims to mount.")

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_duration(value)
        return value


class Gate(_Strict):
    """Publish the model only when a metric is good enough (and better than the published one).

    `min` bounds a score (higher is better: f1_macro, accuracy, r2), `max` an error (lower is
    better: rmse, log_loss). With `beat`, the published bundle at that path or s3:// URI is
    scored on the same test set and the new model passes only when it is better by at least
    `by`; while nothing is published there, the bounds alone decide.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    metric: str = Field(description="Evaluator metric, e.g. f1_macro or rmse.")
    min: float | ParamOr | None = Field(None, description="Pass when metric >= min (scores).")
    max: float | ParamOr | None = Field(None, description="Pass when metric <= max (errors).")
    beat: str | ParamOr | None = Field(
        None,
        description="The published model bundle (path or s3:// URI) the new model must beat.")
    by: float | ParamOr = Field(
        0.0, description="With `beat`: how much better the new model's metric must be.")


class Predict(_Strict):
    """Batch scoring: add a model's predictions to the rows the source and steps produce."""

    model: str = Field(
        min_length=1,
        description="A model bundle: a local path, an s3:// URI, or `trained` for the model "
        "this recipe trains.",
    )
    output: str = Field("prediction", min_length=1, description="Name of the prediction column; "
                        "`<output>_score` holds the predicted class's probability.")
    scores: bool = Field(True, description="Add one probability column per class.")
    score_prefix: str = Field("score_", description="Prefix of the per-class probability columns.")
    name: str | None = Field(None, pattern=NAME_PATTERN, description="Task name in Kubeflow.")


class Schedule(_Strict):
    """A recurring run created by `skitflow submit`."""

    cron: str = Field(description="Cron expression with seconds, as Kubeflow expects.")
    max_concurrency: int = Field(1, ge=1)
    start: datetime | None = None
    end: datetime | None = None
    enabled: bool = True


#: Options a step item may carry beside its step name, per place in the recipe.
COMMON_OPTIONS = ("name", *TaskOptions.model_fields)
SLOT_OPTIONS: dict[str, tuple[str, ...]] = {
    "source": COMMON_OPTIONS,
    "steps": (*COMMON_OPTIONS, "isolate"),
    "sinks": (*COMMON_OPTIONS, "input"),
    "split": (*COMMON_OPTIONS, "when", "otherwise"),
    "trainer": COMMON_OPTIONS,
    "evaluator": (*COMMON_OPTIONS, "gate"),
}


class ItemOptions(TaskOptions):
    """Wiring options beside a step name (which are allowed depends on the slot)."""

    name: str | None = Field(None, pattern=NAME_PATTERN, description="Task name in Kubeflow.")
    isolate: bool = Field(False, description="Run this transform in its own task.")
    input: Literal["dataset", "train", "test", "model", "metrics", "report", "predictions"] = Field(
        "dataset", description="Which artifact a sink writes."
    )
    when: str | None = Field(None, description="Condition: `params.NAME == value` or a data expression.")
    otherwise: dict[str, Any] | None = Field(None, description="Split used when `when` is false.")
    gate: Gate | None = None


class Recipe(_Strict):
    """A skitflow recipe (apiVersion skitflow/v1)."""

    api_version: Literal["skitflow/v1"] = Field(alias="apiVersion")
    name: str = Field(pattern=NAME_PATTERN, description="Pipeline name: lowercase, digits, dashes.")
    description: str = ""
    version: str | None = Field(None, description="Your own version label, added to uploads.")
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    image: str | None = Field(None, description="Default container image of every task.")
    plugins: list[str] = Field(
        default_factory=list,
        description="Plugin packages (distributions) the image contains; a step from a plugin not "
        "listed here cannot run on Kubeflow. Build such an image with `make image PLUGINS=...`.",
    )
    dataset_format: Literal["parquet", "csv"] = Field(
        "parquet", description="File format of datasets passed between tasks."
    )
    defaults: TaskOptions = Field(default_factory=TaskOptions)
    source: dict[str, Any]
    steps: list[dict[str, Any]] = Field(default_factory=list)
    sinks: list[dict[str, Any]] = Field(default_factory=list)
    split: dict[str, Any] | None = None
    trainer: dict[str, Any] | None = None
    evaluator: dict[str, Any] | None = None
    predict: Predict | None = Field(
        None, description="Score the rows with a model bundle; sinks take them with "
        "`input: predictions`.")
    schedule: Schedule | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for name, spec in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or keyword.iskeyword(name):
                raise ValueError(f"parameter name `{name}` must be a Python identifier and not a "
                                 "keyword (KFP passes parameters as Python arguments)")
            if spec.default is not None and not _matches_type(spec.default, spec.type):
                raise ValueError(f"default of `{name}` is not a {spec.type}: {spec.default!r}")
        return value


def _matches_type(value: Any, type_name: str) -> bool:
    expected = PARAM_TYPES[type_name]
    if type_name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def coerce_parameter(name: str, spec: Parameter, value: Any) -> Any:
    """Convert a user-given value (often a string from the command line) to the declared type.

    Raises ValueError with a message fit for the user.
    """
    import json

    import yaml

    kind = spec.type
    if isinstance(value, str) and kind != "str":
        if kind in ("list", "dict"):
            try:
                value = json.loads(value)
            except ValueError:
                try:
                    value = yaml.safe_load(value)
                except yaml.YAMLError:
                    raise ValueError(f"`{name}` expects {_a(kind)} as JSON or YAML") from None
        elif kind == "bool":
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"`{name}` expects true or false, got `{value}`")
            value = lowered in ("true", "1", "yes")
        else:
            try:
                value = PARAM_TYPES[kind](value)
            except ValueError:
                whole = _integral(value) if kind == "int" else None
                if whole is None:
                    raise ValueError(f"`{name}` expects {_a(kind)}, got `{value}`") from None
                value = whole
    if kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)  # KFP passes numbers through protobuf, where 240 may become 240.0
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not _matches_type(value, kind):
        raise ValueError(f"`{name}` expects {_a(kind)}, got {type(value).__name__} `{value}`")
    return value


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "int" else f"a {kind}"


def _integral(text: str) -> int | None:
    """`240.0` -> 240; anything else -> None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None
