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

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from skitflow.recipe.coerce import PARAM_TYPES, coerce_value, matches_type  # noqa: F401 (PARAM_TYPES: re-exported)
from skitflow.recipe.templating import ParamRef
from skitflow.util.durations import parse_duration as parse_duration  # re-exported

#: A value that may be `{{ params.NAME }}`, resolved at run time.
ParamOr = Annotated[ParamRef, WithJsonSchema({"type": "string", "pattern": r"\{\{.*\}\}"})]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: The type a parameter has in the KFP package. Lists and dicts travel as JSON text: as KFP
#: LIST/STRUCT values they pass through protobuf's Struct, where every number is a double, so
#: `{max_depth: 4}` reached the task as 4.0 and xgboost refused it. The task decodes the text with
#: the declared type (`coerce_parameter`), which keeps ints ints.
KFP_PARAM_TYPES = {**PARAM_TYPES, "list": str, "dict": str}
ARTIFACT_ROLES = ("dataset", "train", "test", "model", "metrics", "report", "predictions")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    """A pipeline parameter: overridable at run and submit time without recompiling."""

    type: Literal["str", "int", "float", "bool", "list", "dict"] = Field(
        description="Value type; the KFP parameter gets the same type."
    )
    default: Any = Field(None, description="Value when none is given at run time.")
    description: str = Field("", description="Shown in `skitflow run --help` and the KFP UI.")


class LoopItems(Parameter):
    """A `type: list` parameter that a matrix loops over (`dsl.ParallelFor`): the package declares
    it a KFP list, so it is passed as a list, not as JSON text."""


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


class Select(_Strict):
    """Across matrix branches that differ only in trainer settings, keep the best model."""

    metric: str = Field(description="Evaluator metric to compare, e.g. f1_macro or rmse.")
    mode: Literal["max", "min"] = Field("max", description="Whether larger or smaller is better.")


class Schedule(_Strict):
    """A recurring run created by `skitflow submit`."""

    cron: str = Field(description="Cron expression with seconds, as Kubeflow expects.")
    max_concurrency: int = Field(1, ge=1)
    start: datetime | None = None
    end: datetime | None = None
    enabled: bool = True


NotifyEvent = Literal["failure", "gate_failed", "success"]
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _NotifyTarget(_Strict):
    on: list[NotifyEvent] = Field(
        default_factory=lambda: list[NotifyEvent](["failure", "gate_failed"]),
        description="When to send: failure, gate_failed (the run passed but the gate did not), success.")
    secret: str | None = Field(
        None, description="Kubernetes secret holding the URL; on Kubeflow its key `secret_key` "
        "becomes the environment variable of the notify task.")
    secret_key: str | None = Field(None, description="Key in `secret` (default: the variable's name).")

    @field_validator("on")
    @classmethod
    def _some_event(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("`on` is empty: name at least one of failure, gate_failed, success")
        return list(dict.fromkeys(value))

    def env_name(self) -> str:
        raise NotImplementedError


def _env_name(value: str) -> str:
    if "://" in value or not re.fullmatch(_ENV_NAME, value):
        raise ValueError(f"`{value}` is not an environment variable name; URLs never go into a "
                         "recipe: put the URL in an environment variable (or a Kubernetes secret, "
                         "`secret:`) and name the variable here")
    return value


class SlackNotify(_NotifyTarget):
    """A Slack message through an incoming webhook whose URL is in an environment variable."""

    webhook_env: str = Field("SLACK_WEBHOOK_URL", description="Variable holding the webhook URL.")
    channel: str | None = Field(None, description="Channel to post to, e.g. #ml-alerts.")
    mention: list[str] = Field(default_factory=list, description="Users or groups to mention, e.g. "
                               "@here or <@U123>; on failure and gate_failed only.")

    _check_env = field_validator("webhook_env")(_env_name)

    def env_name(self) -> str:
        return self.webhook_env


class WebhookNotify(_NotifyTarget):
    """A JSON POST of the run's outcome to a URL held in an environment variable."""

    url_env: str = Field(description="Variable holding the URL.")

    _check_env = field_validator("url_env")(_env_name)

    def env_name(self) -> str:
        return self.url_env


class Notify(_Strict):
    """One notification target: exactly one of `slack` or `webhook`."""

    slack: SlackNotify | None = None
    webhook: WebhookNotify | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Notify:
        if (self.slack is None) == (self.webhook is None):
            raise ValueError("a notify entry names exactly one of `slack` or `webhook`")
        return self

    @property
    def target(self) -> SlackNotify | WebhookNotify:
        return self.slack or self.webhook  # type: ignore[return-value]

    @property
    def kind(self) -> str:
        return "slack" if self.slack is not None else "webhook"

    def to_target(self) -> dict[str, Any]:
        """Plain values for `util.notify.Target` (and the exit task's spec): no URL, only the
        variable that holds it."""
        target = self.target
        return {"kind": self.kind, "env": target.env_name(), "on": list(target.on),
                **({"channel": self.slack.channel, "mention": list(self.slack.mention)}
                   if self.slack is not None else {})}


#: Options a step item may carry beside its step name, per place in the recipe.
COMMON_OPTIONS = ("name", *TaskOptions.model_fields)
SLOT_OPTIONS: dict[str, tuple[str, ...]] = {
    "source": (*COMMON_OPTIONS, "on_empty"),
    "steps": (*COMMON_OPTIONS, "isolate"),
    "sinks": (*COMMON_OPTIONS, "input"),
    "split": (*COMMON_OPTIONS, "when", "otherwise", "expect"),
    "trainer": COMMON_OPTIONS,
    "evaluator": (*COMMON_OPTIONS, "gate", "select"),
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
    select: Select | None = None
    expect: dict[str, Any] | None = Field(
        None, description="`expect` checks on the split's outputs: one mapping of checks for both, "
        "or `{train: {...}, test: {...}}`.")
    on_empty: Literal["skip", "fail"] = Field(
        "fail", description="A source that returns no rows: `fail` stops the run with an error; "
        "`skip` ends it successfully after the source (\"no rows: nothing to train\").")


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
    matrix: dict[str, Any] | None = Field(
        None, description="Names mapped to lists of values; the branches are their cross product, "
        "less `exclude:` (a list of mappings). `{{ matrix.NAME }}` reads a branch's value.")
    notify: list[Notify] = Field(
        default_factory=list, description="Who hears when a run ends: Slack or a JSON webhook. "
        "An exit handler on Kubeflow, the end of `skitflow run` locally.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for name, spec in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or keyword.iskeyword(name):
                raise ValueError(f"parameter name `{name}` must be a Python identifier and not a "
                                 "keyword (KFP passes parameters as Python arguments)")
            if spec.default is not None and not matches_type(spec.default, spec.type):
                raise ValueError(f"default of `{name}` is not a {spec.type}: {spec.default!r}")
        return value


def kfp_parameter_value(type_name: str, value: Any) -> Any:
    """A parameter value as the KFP package declares it (see KFP_PARAM_TYPES): JSON text for a
    list or dict, the value itself otherwise. Used for defaults, `skitflow run` and submit alike."""
    import json

    if type_name in ("list", "dict") and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def kfp_arguments(declared: dict[str, Parameter], values: dict[str, Any]) -> dict[str, Any]:
    """Run arguments as the package takes them (lists and dicts as JSON text)."""
    return {name: value if isinstance(declared.get(name), LoopItems) and not isinstance(value, str)
            else kfp_parameter_value(declared[name].type, value) if name in declared else value
            for name, value in values.items()}


def coerce_parameter(name: str, spec: Parameter, value: Any) -> Any:
    """Convert a user-given value (often a string from the command line) to the declared type.

    Raises ValueError with a message fit for the user.
    """
    return coerce_value(name, spec.type, value)
