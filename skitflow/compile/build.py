"""Plan -> KFP pipeline (through kfp's own DSL) -> package text (IR YAML).

Pure: the package is built in memory; `emit.py` writes it. Nothing here hand-writes IR: tasks are
kfp components wired by the DSL and compiled by kfp's pipeline-spec builder, so the package is
exactly what `kfp.compiler.Compiler` would write for the same pipeline.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Any

from skitflow import __version__
from skitflow.compile.kfp_compat import (
    import_kfp,
    import_kfp_kubernetes,
    linear_spec_builder,
    package_comments,
)
from skitflow.errors import SkitflowError
from skitflow.expressions import COMPARISONS
from skitflow.plan.planner import Condition, Plan, Ref, Task, build_plan
from skitflow.recipe.loader import LoadedRecipe
from skitflow.recipe.models import KFP_PARAM_TYPES, kfp_parameter_value, parse_duration
from skitflow.recipe.templating import ParamRef
from skitflow.steps.registry import Registry, default_registry


@dataclass(frozen=True)
class Package:
    """A compiled pipeline package."""

    name: str
    text: str  # IR YAML: PipelineSpec document, then PlatformSpec when Kubernetes options are used
    plan: Plan


def task_spec(plan: Plan, task: Task) -> str:
    """The JSON a task's runtime receives: its steps, settings and parameter types.

    It is an input of the task, so it is part of the task's cache key (kfp.local and Kubeflow
    alike): it holds only what the task's result depends on. Steps are named by their place in
    the recipe (`steps[3]`), not by line and column, and the recipe's hash is not in it, so editing
    the description, a sink or the evaluator changes no upstream task's key. The skitflow version
    is: a new skitflow may compute something else from the same settings.
    """
    spec = _spec_dict(plan, task)
    if task.component == "train":
        # The bundle records what the model depends on (this task and every task upstream of
        # it), not the whole recipe's hash, which changes with the description.
        spec["model_hash"] = model_hash(plan, task)
    return _dump(spec)


def _spec_dict(plan: Plan, task: Task) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "recipe": plan.name,
        "skitflow": __version__,
        "task": task.id,
        "format": plan.dataset_format,
        "param_types": {name: param_type(plan, name) for name in task.params},
        "calls": [
            {"step": c.step, "kind": c.kind.value, "package": c.package, "at": c.at,
             "settings": c.settings, **({"stage": c.stage} if c.stage else {}),
             **({"on": c.on} if c.on else {})}
            for c in task.calls
        ],
    }
    if task.predict:
        spec["predict"] = task.predict
    if task.probe:
        spec["probe"] = task.probe
    if task.role:
        spec["role"] = task.role
    if task.on_empty:
        spec["on_empty"] = task.on_empty
    if task.select:
        spec["select"] = task.select
    if task.gate:
        gate = {"metric": task.gate.metric, "min": task.gate.min, "max": task.gate.max,
                "beat": task.gate.beat, "by": task.gate.by if task.gate.beat is not None else None}
        spec["gate"] = {k: v for k, v in gate.items() if v is not None}
    return spec


def param_type(plan: Plan, name: str) -> str:
    """A task's run-time name's type: a parameter's declared type; a loop item is text."""
    if plan.loop is not None and name == plan.loop.item:
        return "str"
    return plan.parameters[name].type


def model_hash(plan: Plan, task: Task) -> str:
    """A hash of the specs of `task` and of every task it reads from, transitively, with the
    image each runs in: what a trained model depends on, besides its input data (whose content
    hash the bundle records itself)."""
    seen: dict[str, str] = {}

    def visit(current: Task) -> None:
        if current.id in seen:
            return
        seen[current.id] = _dump({"spec": _spec_dict(plan, current),
                                  "image": current.options.image or plan.image})
        for refs in current.inputs.values():
            for ref in refs:
                visit(plan.task(ref.task))

    visit(task)
    text = "\n".join(seen[name] for name in sorted(seen))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _dump(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, ParamRef):
        return value.to_json()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def build_pipeline(plan: Plan) -> Any:
    """The kfp pipeline object (a GraphComponent) for a plan."""
    import_kfp()
    from kfp import dsl

    from skitflow.compile.components import PARAM_PREFIX, RUN_INPUTS, component_function

    # Parameters are a mapping; kfp reads them from a Python signature, where an argument
    # without a default may not follow one with a default. Those without defaults go first.
    param_names = sorted(plan.parameters, key=lambda name: plan.parameters[name].default is not None)
    # The run's identity comes from Kubeflow itself: the driver substitutes these (kfp.local too).
    run_placeholders = {
        "id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        "name": dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        "date": dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
    }

    def body(*args: Any) -> None:
        channels = dict(zip(param_names, args, strict=True))
        made: dict[str, Any] = {}

        def output(ref: Ref) -> Any:
            return made[ref.task].outputs[ref.output]

        def add(task: Task) -> None:
            function = component_function(
                task.component, [(name, KFP_PARAM_TYPES[param_type(plan, name)].__name__)
                                 for name in task.params],
                task.run_names, task.checks, task.fan_in,
                champion=task.component == "select" and "test" in task.inputs)
            component = dsl.component(
                function, base_image=task.options.image or plan.image, install_kfp_package=False)
            component.component_spec.name = task.id
            arguments: dict[str, Any] = {"spec": task_spec(plan, task)}
            arguments.update({f"{PARAM_PREFIX}{name}": channels[name] for name in task.params})
            arguments.update({RUN_INPUTS[name]: run_placeholders[name] for name in task.run_names})
            for name, refs in task.inputs.items():
                arguments[name] = output(refs[0]) if len(refs) == 1 else dsl.OneOf(*map(output, refs))
            made[task.id] = _apply_options(component(**arguments), task)

        def condition(cond: Condition) -> Any:
            left = channels[cond.param] if cond.param else output(cond.ref)  # type: ignore[arg-type]
            return COMPARISONS[cond.op](left, cond.value)  # the expression language's own table

        def place(tasks: tuple[Task, ...]) -> None:
            for group in _condition_groups(tasks):
                first = group[0]
                if first.condition is None:
                    for task in group:
                        add(task)
                elif first.branch == "else":
                    with dsl.Else():
                        for task in group:
                            add(task)
                else:
                    with dsl.If(condition(first.condition), name=first.condition.label):
                        for task in group:
                            add(task)

        def add_all() -> None:
            if plan.loop is not None:  # every task once per item of the list parameter
                with dsl.ParallelFor(items=channels[plan.loop.items]) as item:
                    channels[plan.loop.item] = item
                    add_guarded()
            else:
                add_guarded()

        def add_guarded() -> None:
            for guarded in _guard_groups(plan.tasks):  # `on_empty: skip`: the source had rows
                guard = guarded[0].guard
                if guard is None:
                    place(guarded)
                else:
                    with dsl.If(condition(guard), name=guard.label):
                        place(guarded)

        if plan.notify:  # an exit handler around every task, the notify task its exit task
            with dsl.ExitHandler(_notify_task(plan, run_placeholders), name="run"):
                add_all()
        else:
            add_all()

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=list if looped else KFP_PARAM_TYPES[spec.type],
                default=inspect.Parameter.empty if spec.default is None
                else spec.default if looped else kfp_parameter_value(spec.type, spec.default),
            )
            for name, spec, looped in (
                (name, plan.parameters[name], plan.loop is not None and name == plan.loop.items)
                for name in param_names)
        ]
    )
    body.__name__ = plan.name.replace("-", "_")
    body.__doc__ = plan.description or None
    with linear_spec_builder():  # kfp builds the spec here; same bytes, linear time
        return dsl.pipeline(name=plan.name, description=plan.description or None)(body)




def _guard_groups(tasks: tuple[Task, ...]) -> list[tuple[Task, ...]]:
    """Consecutive tasks under the same outer guard share one dsl.If around their own conditions."""
    groups: list[list[Task]] = []
    for task in tasks:
        if groups and groups[-1][0].guard == task.guard:
            groups[-1].append(task)
        else:
            groups.append([task])
    return [tuple(group) for group in groups]


def _notify_task(plan: Plan, run_placeholders: dict[str, str]) -> Any:
    """The exit task: its spec names the variables holding the URLs, never a URL; a target's
    `secret:` becomes that variable through kfp-kubernetes. Never cached: a cached notification
    is one never sent."""
    from kfp import dsl

    from skitflow.compile.components import NOTIFY_TASK, notify_function

    component = dsl.component(notify_function(), base_image=plan.image, install_kfp_package=False)
    component.component_spec.name = NOTIFY_TASK
    spec = {"recipe": plan.name, "skitflow": __version__,
            "targets": [entry.to_target() for entry in plan.notify]}
    task = component(spec=_dump(spec), run_id=run_placeholders["id"],
                     run_name=run_placeholders["name"], run_created=run_placeholders["date"])
    task.set_caching_options(False)
    secrets = [entry.target for entry in plan.notify if entry.target.secret]
    if secrets:
        kubernetes = import_kfp_kubernetes()
        for target in secrets:
            kubernetes.use_secret_as_env(
                task, secret_name=target.secret,
                secret_key_to_env={target.secret_key or target.env_name(): target.env_name()})
    return task


def _condition_groups(tasks: tuple[Task, ...]) -> list[list[Task]]:
    """Consecutive tasks under the same condition and branch share one dsl.If/dsl.Else block."""
    groups: list[list[Task]] = []
    for task in tasks:
        if groups and (groups[-1][0].condition, groups[-1][0].branch) == (task.condition, task.branch):
            groups[-1].append(task)
        else:
            groups.append([task])
    return groups


def _apply_options(task: Any, planned: Task) -> Any:
    """Resources, retries, caching and Kubernetes settings through kfp and kfp-kubernetes."""
    options = planned.options
    if options.resources:
        r = options.resources
        if r.cpu is not None:
            task.set_cpu_request(str(r.cpu))
        if r.cpu_limit is not None:
            task.set_cpu_limit(str(r.cpu_limit))
        if r.memory:
            task.set_memory_request(r.memory)
        if r.memory_limit:
            task.set_memory_limit(r.memory_limit)
        if r.gpu:
            task.set_accelerator_type(r.gpu.type)
            task.set_accelerator_limit(r.gpu.count)
    if options.retries:
        task.set_retry(
            num_retries=options.retries.count,
            backoff_duration=f"{parse_duration(options.retries.backoff)}s",
            backoff_factor=2.0,
        )
    if options.caching is not None:
        task.set_caching_options(options.caching)
    if (options.timeout or options.node_selector or options.tolerations or options.secrets
            or options.volumes):
        kubernetes = import_kfp_kubernetes()

        if options.timeout:
            kubernetes.set_timeout(task, parse_duration(options.timeout))
        for key, value in sorted((options.node_selector or {}).items()):
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for tol in options.tolerations or []:
            kubernetes.add_toleration(task, key=tol.key, operator=tol.operator, value=tol.value,
                                      effect=tol.effect)
        for secret in options.secrets or []:
            kubernetes.use_secret_as_env(
                task, secret_name=secret.secret,
                secret_key_to_env={key: env for env, key in sorted(secret.env.items())},
            )
        for volume in options.volumes or []:
            kubernetes.mount_pvc(task, pvc_name=volume.pvc, mount_path=volume.mount)
    return task


def compile_plan(plan: Plan) -> Package:
    """Build the pipeline with kfp and serialise it exactly as kfp's compiler would."""
    import yaml
    from google.protobuf import json_format

    import_kfp()
    try:
        pipeline = build_pipeline(plan)
    except Exception as exc:  # kfp refused what the plan asked for: a skitflow bug or limit
        raise SkitflowError(f"kfp could not build pipeline `{plan.name}`: {exc}", exit_code=1) from exc
    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    documents = [spec]
    platform = pipeline.platform_spec
    if len(platform.platforms) > 0:
        documents.append(json_format.MessageToDict(platform))
    comments = package_comments(spec, plan.description or None)
    text = comments + yaml.dump_all(documents, sort_keys=True)
    return Package(plan.name, text, plan)


def compile_loaded(loaded: LoadedRecipe, registry: Registry | None = None) -> Package:
    """A loaded recipe -> its package: plan against the registry, then build and emit in memory."""
    return compile_plan(build_plan(loaded, registry or default_registry()))
