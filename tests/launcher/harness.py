"""Execute a compiled package the way Kubeflow Pipelines' v2 driver and launcher do.

kfp.local is a convenience, not evidence. This harness reads nothing but the package (the IR):

- it walks `root.dag` and the sub-DAGs of `components`, honouring `dependentTasks`, trigger
  policies (`condition`, CEL as the compiler writes it; `strategy: ALL_UPSTREAM_TASKS_COMPLETED`
  for exit handlers) and DAG outputs (`artifactSelectors`, first producer that ran, as for
  dsl.OneOf);
- as the driver does (kubeflow/pipelines backend/src/v2/driver), it builds each container task's
  ExecutorInput: `inputs.parameterValues` from pipeline arguments (else the root's defaults),
  constants (run placeholders substituted only when the whole value is one, as the driver's
  resolver does), upstream output parameters and final statuses; `inputs.artifacts` with the
  producer's URI and metadata; output artifact URIs
  `minio://mlpipeline/v2/artifacts/<pipeline>/<run-id>/<task>/<salt>/<output>`;
  `outputs.parameters[*].outputFile` and `outputs.outputFile`;
- as the launcher does (backend/src/v2/component), it downloads input artifacts from the object
  store to the local path kfp's executor maps their URI to (`minio://b/k` -> `/minio/b/k`, below
  a per-task mount root), replaces the placeholders of the task's own `command` and `args`, runs
  them in the runtime venv (tests/launcher/runtime_env.py) from an empty folder, reads
  executor_output.json (parameters, artifact metadata), falls back to the parameter output files,
  and uploads output artifacts back to the store (a missing output file is allowed, as there);
- Kubernetes secrets named in the platform spec become the task's environment variables, from a
  dict of fake secrets (a missing secret fails the task, as a pod that cannot start).

It is a test tool: strict, small, and loud about anything in a package it does not understand.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.launcher.runtime_env import MOUNT_ROOT_ENV, RuntimeEnv

PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
_LOCAL_PREFIXES = {"minio://": "minio/", "s3://": "s3/", "gs://": "gcs/"}
_RUN_PLACEHOLDERS = ("{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}",
                     "{{$.pipeline_job_resource_name}}", "{{$.pipeline_job_create_time_utc}}",
                     "{{$.pipeline_job_schedule_time_utc}}", "{{$.pipeline_task_name}}",
                     "{{$.pipeline_task_uuid}}")


class HarnessError(Exception):
    """The package uses something this harness (and so, possibly, the backend) does not run."""


@dataclass
class Artifact:
    uri: str
    type: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskResult:
    """One task of the run: a container task, or a sub-DAG (condition, exit handler group)."""

    name: str
    status: str  # succeeded | failed | skipped | not run
    parameters: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    executor_input: dict[str, Any] | None = None
    log: str = ""
    seconds: float = 0.0
    error: str = ""


@dataclass
class HarnessRun:
    pipeline: str
    run_id: str
    tasks: dict[str, TaskResult]  # container tasks by name, sub-DAGs as "<name>/" (names are unique)
    status: str
    seconds: float

    def task(self, name: str) -> TaskResult:
        return self.tasks[name]

    def ran(self) -> list[str]:
        return sorted(n for n, t in self.tasks.items() if t.status == "succeeded" and "/" not in n)


class ObjectStore:
    """The launcher's side of the bucket: download before, upload after (boto3, path style)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        for prefix in _LOCAL_PREFIXES:
            if uri.startswith(prefix):
                bucket, _, key = uri[len(prefix):].partition("/")
                return bucket, key
        raise HarnessError(f"artifact URI {uri} has no object-store scheme")

    def download(self, uri: str, local: Path) -> None:
        bucket, key = self.split(uri)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        found = [o["Key"] for page in pages for o in page.get("Contents", [])]
        if key in found:  # one object: a file
            local.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, key, str(local))
            return
        inside = [k for k in found if k.startswith(key.rstrip("/") + "/")]
        if not inside:
            raise HarnessError(f"input artifact {uri} is not in the object store")
        for name in inside:  # a folder artifact
            target = local / name[len(key.rstrip("/")) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(bucket, name, str(target))

    def upload(self, local: Path, uri: str) -> bool:
        """False when the component wrote nothing there (allowed, as by the launcher)."""
        bucket, key = self.split(uri)
        if local.is_file():
            self.client.upload_file(str(local), bucket, key)
            return True
        if local.is_dir():
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                self.client.upload_file(str(path), bucket, f"{key}/{path.relative_to(local).as_posix()}")
            return True
        return False


class Launcher:
    """Runs one package (its IR text) as a Kubeflow run would."""

    def __init__(self, package_text: str, runtime: RuntimeEnv, store: ObjectStore, workdir: Path,
                 *, secrets: Mapping[str, Mapping[str, str]] | None = None,
                 env: Mapping[str, str] | None = None, run_name: str | None = None,
                 created: str | None = None, timeout: float = 300.0) -> None:
        documents = list(yaml.safe_load_all(package_text))
        self.spec = documents[0]
        self.platform = (documents[1] if len(documents) > 1 else {}).get("platforms", {}).get(
            "kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
        self.runtime = runtime
        self.store = store
        self.workdir = workdir
        self.secrets = dict(secrets or {})
        self.extra_env = dict(env or {})
        self.timeout = timeout
        self.pipeline = self.spec["pipelineInfo"]["name"]
        self.run_id = str(uuid.uuid4())
        self.run_name = run_name or f"{self.pipeline}-run"
        self.created = created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.results: dict[str, TaskResult] = {}

    # -- the run ---------------------------------------------------------------------------------
    def run(self, arguments: Mapping[str, Any] | None = None) -> HarnessRun:
        started = time.monotonic()
        root = self.spec["root"]
        params: dict[str, Any] = {}
        for name, definition in root.get("inputDefinitions", {}).get("parameters", {}).items():
            if arguments and name in arguments:
                params[name] = arguments[name]
            elif "defaultValue" in definition:
                params[name] = definition["defaultValue"]
            elif not definition.get("isOptional"):
                raise HarnessError(f"pipeline parameter `{name}` has no value and no default")
        unknown = set(arguments or {}) - set(params)
        if unknown:
            raise HarnessError(f"unknown pipeline arguments: {sorted(unknown)}")
        status, _ = self._dag(root, params, {})
        return HarnessRun(self.pipeline, self.run_id, self.results, status,
                          time.monotonic() - started)

    def _dag(self, component: Mapping[str, Any], params: Mapping[str, Any],
             artifacts: Mapping[str, Artifact]) -> tuple[str, dict[str, Any]]:
        tasks: dict[str, Any] = component["dag"]["tasks"]
        done: dict[str, TaskResult] = {}
        for name in _topological(tasks):
            task = tasks[name]
            policy = task.get("triggerPolicy", {})
            upstream = [done[d] for d in task.get("dependentTasks", [])]
            finally_task = policy.get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED"
            if not finally_task and any(u.status in ("failed", "not run") for u in upstream):
                done[name] = self._record(name, TaskResult(name, "not run"))
                continue
            try:
                task_params = self._parameters(task, params, done)
                task_artifacts = self._artifacts(task, artifacts, done)
            except _Unavailable as missing:  # an input from a task that did not run
                done[name] = self._record(name, TaskResult(name, "skipped", error=str(missing)))
                continue
            if "condition" in policy and not evaluate_condition(policy["condition"], task_params):
                done[name] = self._record(name, TaskResult(name, "skipped"))
                continue
            child = self.spec["components"][task["componentRef"]["name"]]
            if "dag" in child:
                status, outputs = self._dag(child, task_params, task_artifacts)
                result = TaskResult(name, status, outputs.get("parameters", {}),
                                    outputs.get("artifacts", {}))
                done[name] = self._record(name + "/", result)
            else:
                done[name] = self._record(
                    name, self._container(name, task, child, task_params, task_artifacts))
        failed = any(r.status == "failed" for r in done.values())
        return ("failed" if failed else "succeeded"), self._dag_outputs(component, done)

    def _record(self, key: str, result: TaskResult) -> TaskResult:
        self.results[key] = result
        return result

    # -- inputs, as the driver resolves them ----------------------------------------------------
    def _parameters(self, task: Mapping[str, Any], params: Mapping[str, Any],
                    done: Mapping[str, TaskResult]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in spec:
                values[name] = _get(params, spec["componentInputParameter"])
            elif "taskOutputParameter" in spec:
                ref = spec["taskOutputParameter"]
                values[name] = _upstream(done, ref["producerTask"], "parameters", ref["outputParameterKey"])
            elif "runtimeValue" in spec:
                values[name] = self._constant(spec["runtimeValue"]["constant"], task)
            elif "taskFinalStatus" in spec:
                producer = done[spec["taskFinalStatus"]["producerTask"]]
                values[name] = {
                    "state": {"succeeded": "SUCCEEDED", "failed": "FAILED"}.get(producer.status, "SKIPPED"),
                    "pipelineJobResourceName": f"{self.pipeline}-{self.run_id}",
                    "pipelineTaskName": producer.name,
                    "error": {"message": producer.error} if producer.error else {},
                }
            else:
                raise HarnessError(f"parameter input kind {sorted(spec)} of `{name}` is not supported")
        return values

    def _constant(self, value: Any, task: Mapping[str, Any]) -> Any:
        """The driver substitutes a run placeholder only when it is the whole value."""
        if not isinstance(value, str):
            return value
        known = {
            "{{$.pipeline_job_uuid}}": self.run_id,
            "{{$.pipeline_job_name}}": self.run_name,
            "{{$.pipeline_job_resource_name}}": f"{self.pipeline}-{self.run_id}",
            "{{$.pipeline_job_create_time_utc}}": self.created,
            "{{$.pipeline_task_name}}": task.get("taskInfo", {}).get("name", ""),
            "{{$.pipeline_task_uuid}}": str(uuid.uuid4()),
        }
        return known.get(value, value)

    def _artifacts(self, task: Mapping[str, Any], artifacts: Mapping[str, Artifact],
                   done: Mapping[str, TaskResult]) -> dict[str, Artifact]:
        found: dict[str, Artifact] = {}
        for name, spec in task.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in spec:
                found[name] = _get(artifacts, spec["componentInputArtifact"])
            elif "taskOutputArtifact" in spec:
                ref = spec["taskOutputArtifact"]
                found[name] = _upstream(done, ref["producerTask"], "artifacts", ref["outputArtifactKey"])
            else:
                raise HarnessError(f"artifact input kind {sorted(spec)} of `{name}` is not supported")
        return found

    @staticmethod
    def _dag_outputs(component: Mapping[str, Any], done: Mapping[str, TaskResult]) -> dict[str, Any]:
        outputs: dict[str, Any] = {"artifacts": {}, "parameters": {}}
        spec = component["dag"].get("outputs", {})
        for key, selectors in spec.get("artifacts", {}).items():
            for selector in selectors.get("artifactSelectors", []):
                producer = done.get(selector["producerSubtask"])
                if producer and producer.status == "succeeded" and selector["outputArtifactKey"] in producer.artifacts:
                    outputs["artifacts"][key] = producer.artifacts[selector["outputArtifactKey"]]
                    break
        for key, value in spec.get("parameters", {}).items():
            selectors = value.get("valueFromOneof", {}).get("parameterSelectors") or (
                [value["valueFromParameter"]] if "valueFromParameter" in value else [])
            if not selectors:
                raise HarnessError(f"DAG output parameter `{key}` kind {sorted(value)} is not supported")
            for selector in selectors:
                producer = done.get(selector["producerSubtask"])
                if producer and producer.status == "succeeded" and selector["outputParameterKey"] in producer.parameters:
                    outputs["parameters"][key] = producer.parameters[selector["outputParameterKey"]]
                    break
        return outputs

    # -- one container task, as the launcher runs it --------------------------------------------
    def _container(self, name: str, task: Mapping[str, Any], component: Mapping[str, Any],
                   params: dict[str, Any], artifacts: dict[str, Artifact]) -> TaskResult:
        started = time.monotonic()
        label = component["executorLabel"]
        container = self.spec["deploymentSpec"]["executors"][label]["container"]
        pod = self.workdir / "pods" / name
        mount = pod / "mount"
        outputs_dir = pod / "tmp"
        cwd = pod / "work"  # the image's WORKDIR: empty
        for folder in (mount, outputs_dir, cwd):
            folder.mkdir(parents=True, exist_ok=True)
        inputs = component.get("inputDefinitions", {})
        for pname, definition in inputs.get("parameters", {}).items():
            if pname not in params and "defaultValue" in definition:
                params[pname] = definition["defaultValue"]
        salt = uuid.uuid4().hex[:10]
        out_artifacts = {
            oname: {"artifacts": [{"type": definition["artifactType"],
                                   "uri": f"{PIPELINE_ROOT}/{self.pipeline}/{self.run_id}/{name}/{salt}/{oname}"}]}
            for oname, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
        }
        out_params = {oname: {"outputFile": str(outputs_dir / "kfp" / "outputs" / oname)}
                      for oname in component.get("outputDefinitions", {}).get("parameters", {})}
        executor_input = {
            "inputs": {
                "parameterValues": {k: _protojson(v) for k, v in params.items()},
                "artifacts": {
                    aname: {"artifacts": [{"name": aname, "type": art.type, "uri": art.uri,
                                           "metadata": art.metadata}]}
                    for aname, art in artifacts.items()
                },
            },
            "outputs": {"artifacts": out_artifacts, "parameters": out_params,
                        "outputFile": str(outputs_dir / "kfp_outputs" / "output_metadata.json")},
        }
        result = TaskResult(name, "failed", executor_input=executor_input)
        try:
            for art in artifacts.values():
                self.store.download(art.uri, self._local(mount, art.uri))
            for holder in out_artifacts.values():
                self._local(mount, holder["artifacts"][0]["uri"]).parent.mkdir(parents=True, exist_ok=True)
            command = [_substitute(part, executor_input, mount)
                       for part in [*container.get("command", []), *container.get("args", [])]]
            env = self._environment(label, container, mount)
        except (HarnessError, _Unavailable) as exc:
            result.error = str(exc)
            result.seconds = time.monotonic() - started
            return result
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=self.timeout)
        result.log = done.stdout + done.stderr
        result.seconds = time.monotonic() - started
        if done.returncode != 0:
            result.error = f"exit code {done.returncode}"
            return result
        output_file = Path(executor_input["outputs"]["outputFile"])
        executor_output = json.loads(output_file.read_text()) if output_file.exists() else {}
        values = dict(executor_output.get("parameterValues", {}))
        for oname, holder in out_params.items():
            path = Path(holder["outputFile"])
            if oname not in values and path.exists():
                values[oname] = path.read_text()
        result.parameters = values
        for oname, holder in out_artifacts.items():
            produced = holder["artifacts"][0]
            written = executor_output.get("artifacts", {}).get(oname, {}).get("artifacts", [{}])[0]
            uri = written.get("uri") or produced["uri"]
            self.store.upload(self._local(mount, uri), uri)
            result.artifacts[oname] = Artifact(uri, produced["type"], dict(written.get("metadata") or {}))
        result.status = "succeeded"
        return result

    @staticmethod
    def _local(mount: Path, uri: str) -> Path:
        """What kfp's executor maps a URI to (`minio://b/k` -> `/minio/b/k`), below `mount`."""
        for prefix, folder in _LOCAL_PREFIXES.items():
            if uri.startswith(prefix):
                return mount / folder / uri[len(prefix):]
        raise HarnessError(f"artifact URI {uri} has no local mount mapping")

    def _environment(self, label: str, container: Mapping[str, Any], mount: Path) -> dict[str, str]:
        env = {
            "PATH": f"{self.runtime.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(mount.parent / "home"),
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",  # as the Dockerfile sets
            MOUNT_ROOT_ENV: str(mount),
        }
        for item in container.get("env", []):
            env[item["name"]] = str(item.get("value", ""))
        for item in self.platform.get(label, {}).get("secretAsEnv", []):
            secret = item.get("secretName") or item.get("secretNameParameter", {}).get(
                "runtimeValue", {}).get("constant")
            if secret not in self.secrets:
                raise HarnessError(f"secret `{secret}` does not exist: the pod would not start")
            for mapping in item.get("keyToEnv", []):
                if mapping["secretKey"] not in self.secrets[secret]:
                    raise HarnessError(f"secret `{secret}` has no key `{mapping['secretKey']}`")
                env[mapping["envVar"]] = self.secrets[secret][mapping["secretKey"]]
        env.update(self.extra_env)
        return env


class _Unavailable(Exception):
    """An input whose producer did not run (a skipped branch)."""


def _get(values: Mapping[str, Any], name: str) -> Any:
    """An input of the enclosing DAG."""
    if name not in values:
        raise _Unavailable(name)
    return values[name]


def _upstream(done: Mapping[str, TaskResult], producer: str, kind: str, key: str) -> Any:
    """An output (`parameters` or `artifacts`) of an upstream task that succeeded."""
    result = done[producer]
    outputs = getattr(result, kind)
    if result.status != "succeeded" or key not in outputs:
        raise _Unavailable(f"{producer}.{key}")
    return outputs[key]


def _topological(tasks: Mapping[str, Any]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in path:
            raise HarnessError(f"cycle through {name}")
        for dep in tasks[name].get("dependentTasks", []):
            visit(dep, (*path, name))
        seen.add(name)
        order.append(name)

    for name in sorted(tasks):
        visit(name, ())
    return order


def _protojson(value: Any) -> Any:
    """Numbers as the Go driver's protojson writes a google.protobuf.Value: integral floats lose
    their `.0`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_protojson(v) for v in value]
    if isinstance(value, dict):
        return {k: _protojson(v) for k, v in value.items()}
    return value


_PLACEHOLDER = re.compile(r"\{\{\$(?:\.[^}]*)?\}\}")
_INPUT_PARAM = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")
_ARTIFACT = re.compile(r"^\{\{\$\.(inputs|outputs)\.artifacts\['([^']+)'\]\.(path|uri)\}\}$")
_OUTPUT_PARAM = re.compile(r"^\{\{\$\.outputs\.parameters\['([^']+)'\]\.output_file\}\}$")


def _substitute(part: str, executor_input: Mapping[str, Any], mount: Path) -> str:
    """The launcher's placeholder replacement in command and args."""

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "{{$}}":
            return json.dumps(executor_input)
        if text == "{{$.outputs.output_file}}":
            return executor_input["outputs"]["outputFile"]
        if m := _INPUT_PARAM.match(text):
            value = executor_input["inputs"]["parameterValues"][m.group(1)]
            return value if isinstance(value, str) else json.dumps(value)
        if m := _ARTIFACT.match(text):
            side, name, what = m.groups()
            uri = executor_input[side]["artifacts"][name]["artifacts"][0]["uri"]
            return uri if what == "uri" else str(Launcher._local(mount, uri))
        if m := _OUTPUT_PARAM.match(text):
            return executor_input["outputs"]["parameters"][m.group(1)]["outputFile"]
        raise HarnessError(f"placeholder {text} in a command is not supported by the harness")

    return _PLACEHOLDER.sub(one, part)


# -- trigger conditions: the CEL subset kfp's compiler writes ------------------------------------

_CEL_REF = re.compile(r"inputs\.parameter_values\['([^']+)'\]")


def evaluate_condition(expression: str, values: Mapping[str, Any]) -> bool:
    """Evaluate a trigger condition such as
    `!(int(inputs.parameter_values['pipelinechannel--n']) >= 3) && ...` against `values`."""
    pieces = re.split(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", _CEL_REF.sub(
        lambda m: f"P[{json.dumps(m.group(1))}]", expression))
    python = []
    for index, piece in enumerate(pieces):
        if index % 2:  # a string literal
            python.append(piece)
            continue
        piece = piece.replace("&&", " and ").replace("||", " or ")
        piece = re.sub(r"!(?!=)", " not ", piece)
        piece = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", piece))
        piece = re.sub(r"\bdouble\(", "float(", piece)
        python.append(piece)
    tree = ast.parse("".join(python).strip(), mode="eval")
    return bool(_eval(tree.body, values))


def _eval(node: ast.AST, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        results = [_eval(v, values) for v in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval(node.operand, values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, values)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = _eval(node.left, values), _eval(node.comparators[0], values)
        ops = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
               ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
               ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}
        return ops[type(node.ops[0])](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("int", "float", "string"):
        value = _eval(node.args[0], values)
        return {"int": int, "float": float, "string": str}[node.func.id](value)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "P":
        key = _eval(node.slice, values)
        if key not in values:
            raise HarnessError(f"condition refers to `{key}`, which is not an input of the task")
        return values[key]
    if isinstance(node, ast.Constant):
        return node.value
    raise HarnessError(f"condition syntax {ast.dump(node)[:80]} is not supported")
