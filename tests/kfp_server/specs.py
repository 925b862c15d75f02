"""Pipeline package parsing and validation, mirroring the KFP API server.

The real backend (``backend/src/apiserver/template``) decodes every YAML
document of a package, unmarshals the pipeline document strictly into the
``PipelineSpec`` protobuf, checks schema version, name and root component, and
checks run parameters against the root input definitions.  Doing the same here
means a package the test server accepts is one a real cluster would accept.
"""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from dataclasses import dataclass
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

SCHEMA_VERSION = "2.1.0"

# The backend matches this pattern without anchors (regexp.MatchString), so
# it only requires the name to contain one lower-case alphanumeric character.
_PIPELINE_NAME_PATTERN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_WRAPPER_KEYS = {"pipeline_spec", "platform_spec", "pipelineSpec", "platformSpec"}
_ParameterType = pipeline_spec_pb2.ParameterType


class SpecError(ValueError):
    """A package or run configuration the real backend would refuse (HTTP 400)."""


@dataclass(frozen=True)
class ParsedPackage:
    """A pipeline package as the backend stores it: spec plus optional platform spec."""

    pipeline_spec: pipeline_spec_pb2.PipelineSpec
    platform_spec: pipeline_spec_pb2.PlatformSpec | None = None

    @property
    def name(self) -> str:
        """The ``pipelineInfo.name`` of the spec."""
        return self.pipeline_spec.pipeline_info.name

    def to_api_object(self) -> dict[str, Any]:
        """The ``pipeline_spec`` object the API returns: plain, or wrapped with a platform spec."""
        spec = json_format.MessageToDict(self.pipeline_spec)
        if self.platform_spec is None:
            return spec
        return {
            "pipeline_spec": spec,
            "platform_spec": json_format.MessageToDict(self.platform_spec),
        }


def read_package_file(filename: str, data: bytes) -> bytes:
    """Extract the pipeline YAML from an uploaded file (.yaml/.yml/.json, .tar.gz/.tgz, .zip)."""
    lowered = filename.lower()
    if lowered.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                members = {m.name: m for m in archive.getmembers() if m.isfile()}
                chosen = _choose_archive_member(list(members))
                extracted = archive.extractfile(members[chosen])
                assert extracted is not None
                return extracted.read()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise SpecError(
                f"Failed to read a pipeline spec file: not a valid tarball: {error}"
            ) from error
    if lowered.endswith(".zip"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = [info.filename for info in archive.infolist() if not info.is_dir()]
                return archive.read(_choose_archive_member(names))
        except zipfile.BadZipFile as error:
            raise SpecError(
                f"Failed to read a pipeline spec file: not a valid zip file: {error}"
            ) from error
    if lowered.endswith((".yaml", ".yml", ".json")):
        return data
    raise SpecError(
        f"Failed to read a pipeline spec file: unexpected pipeline file format {filename!r}. "
        "Support .zip, .tar.gz, .json or YAML."
    )


def _choose_archive_member(names: list[str]) -> str:
    """Pick the single pipeline file inside an archive, like the backend."""
    if len(names) == 1:
        return names[0]
    if "pipeline.yaml" in names:
        return "pipeline.yaml"
    raise SpecError(
        f"Failed to read a pipeline spec file: expected exactly one file in the archive, got {names}"
    )


def parse_package(text: bytes) -> ParsedPackage:
    """Parse an uploaded package's YAML documents strictly into PipelineSpec / PlatformSpec."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise SpecError(
            f"pipeline spec is invalid: failed to parse pipeline spec YAML: {error}"
        ) from error
    pipeline_doc: dict[str, Any] | None = None
    platform_docs: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict):
            raise SpecError(
                f"pipeline spec is invalid: unable to decode yaml document of type {type(document).__name__}"
            )
        if pipeline_doc is None and "platforms" not in document:
            pipeline_doc = document
        elif "platforms" in document:
            platform_docs.append(document)
        else:
            raise SpecError("pipeline spec is invalid: multiple pipeline specs provided")
    if pipeline_doc is None:
        raise SpecError("pipeline spec is invalid: no pipeline spec is provided")
    if len(platform_docs) > 1:
        raise SpecError("platform spec is invalid: multiple platform specs provided")
    platform_doc = platform_docs[0] if platform_docs else None
    return ParsedPackage(parse_pipeline_spec(pipeline_doc), _parse_platform_spec(platform_doc))


def parse_inline_spec(value: Any) -> ParsedPackage:
    """Parse the ``pipeline_spec`` object of a run body: a PipelineSpec or a {pipeline_spec, platform_spec} pair."""
    if not isinstance(value, dict):
        raise SpecError("pipeline spec is invalid: pipeline_spec must be a JSON object")
    if (
        value
        and set(value) <= _WRAPPER_KEYS
        and ("pipeline_spec" in value or "pipelineSpec" in value)
    ):
        spec = value.get("pipeline_spec", value.get("pipelineSpec"))
        platform = value.get("platform_spec", value.get("platformSpec"))
        return ParsedPackage(parse_pipeline_spec(spec), _parse_platform_spec(platform or None))
    return ParsedPackage(parse_pipeline_spec(value))


def parse_pipeline_spec(document: Any) -> pipeline_spec_pb2.PipelineSpec:
    """Strictly unmarshal and validate one PipelineSpec document (unknown fields are errors)."""
    if not isinstance(document, dict):
        raise SpecError("pipeline spec is invalid: the pipeline spec document must be a mapping")
    spec = pipeline_spec_pb2.PipelineSpec()
    try:
        json_format.ParseDict(document, spec, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise SpecError(f"pipeline spec is invalid: invalid v2 pipeline spec: {error}") from error
    if spec.schema_version != SCHEMA_VERSION:
        raise SpecError(
            f"pipeline spec is invalid: KFP only supports schema version {SCHEMA_VERSION}, "
            f"but the pipeline spec has version {spec.schema_version!r}"
        )
    if not spec.pipeline_info.name:
        raise SpecError("pipeline spec is invalid: invalid v2 pipeline spec: name is empty")
    if not _PIPELINE_NAME_PATTERN.search(spec.pipeline_info.name):
        raise SpecError(
            "pipeline spec is invalid: invalid v2 pipeline spec: name should consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    if not spec.HasField("root"):
        raise SpecError(
            "pipeline spec is invalid: invalid v2 pipeline spec: root component is empty"
        )
    return spec


def _parse_platform_spec(document: Any) -> pipeline_spec_pb2.PlatformSpec | None:
    """Strictly unmarshal a PlatformSpec document.

    The real backend silently ignores a platform document it cannot parse,
    which drops the Kubernetes configuration; refusing it here makes that loss
    visible in tests.
    """
    if document is None:
        return None
    if not isinstance(document, dict):
        raise SpecError("platform spec is invalid: the platform spec document must be a mapping")
    platform = pipeline_spec_pb2.PlatformSpec()
    try:
        json_format.ParseDict(document, platform, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise SpecError(
            f"platform spec is invalid: cannot unmarshal platform specific configs: {error}"
        ) from error
    return platform


def validate_run_parameters(
    spec: pipeline_spec_pb2.PipelineSpec, parameters: dict[str, Any] | None
) -> None:
    """Check run parameters against the root inputs, as the backend's validatePipelineJobInputs does."""
    parameters = parameters or {}
    declared = spec.root.input_definitions.parameters
    for name, declaration in declared.items():
        if name not in parameters:
            if not declaration.is_optional and not declaration.HasField("default_value"):
                raise SpecError(
                    f"invalid pipeline job inputs: parameter {name} is not optional, "
                    "yet has neither default value nor user provided value"
                )
            continue
        _check_parameter_type(name, declaration.parameter_type, parameters[name])
    extra = sorted(set(parameters) - set(declared))
    if extra:
        raise SpecError(
            f"invalid pipeline job inputs: parameter(s) provided are not required by pipeline: {', '.join(extra)}"
        )


def _check_parameter_type(name: str, parameter_type: int, value: Any) -> None:
    """Refuse a value whose JSON kind does not match the declared parameter type."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    expectations: dict[int, tuple[bool, str]] = {
        _ParameterType.NUMBER_DOUBLE: (is_number, "double or integer"),
        _ParameterType.NUMBER_INTEGER: (is_number, "double or integer"),
        _ParameterType.STRING: (isinstance(value, str), "string"),
        _ParameterType.BOOLEAN: (isinstance(value, bool), "bool"),
        _ParameterType.LIST: (isinstance(value, list), "list"),
        _ParameterType.STRUCT: (isinstance(value, dict), "struct"),
    }
    if parameter_type not in expectations:
        type_name = _ParameterType.ParameterTypeEnum.Name(parameter_type)
        raise SpecError(
            f"invalid pipeline job inputs: input parameter {name} has unsupported type {type_name}"
        )
    matches, expected = expectations[parameter_type]
    if not matches:
        raise SpecError(
            f"invalid pipeline job inputs: input parameter {name} requires type {expected}"
        )


@dataclass(frozen=True)
class TaskNode:
    """A task of a DAG in the package: a container task, or a sub-DAG (a condition, a group)."""

    key: str
    children: tuple[TaskNode, ...] = ()
    dag: bool = False

    def leaves(self) -> list[TaskNode]:
        """The container tasks under this node, in the order they run."""
        return [self] if not self.dag else [leaf for c in self.children for leaf in c.leaves()]


def task_tree(spec: pipeline_spec_pb2.PipelineSpec) -> tuple[TaskNode, ...]:
    """The root DAG's tasks, dependencies first (ties by key), with sub-DAGs expanded.

    The KFP v2 compiler turns each `dsl.If`/`Elif`/`Else` into a sub-DAG component
    (`condition-1`, and `condition-branches-1` around the branches of one if/else chain).
    """

    def walk(dag: Any, depth: int) -> tuple[TaskNode, ...]:
        tasks = dag.tasks
        remaining = {key: set(task.dependent_tasks) & set(tasks) for key, task in tasks.items()}
        ordered: list[TaskNode] = []
        while remaining:
            key = (sorted(k for k, deps in remaining.items() if not deps) or sorted(remaining))[0]
            component = spec.components.get(tasks[key].component_ref.name)
            if component is not None and component.WhichOneof("implementation") == "dag" and depth < 32:
                ordered.append(TaskNode(key, walk(component.dag, depth + 1), dag=True))
            else:
                ordered.append(TaskNode(key))
            del remaining[key]
            for deps in remaining.values():
                deps.discard(key)
        return tuple(ordered)

    return walk(spec.root.dag, 0)
