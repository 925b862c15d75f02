"""Recipe + registry -> Plan: the pipeline's tasks, their wiring and their checked settings.

Pure: no files, no network, no clock, no kfp. Everything a user can get wrong about step names,
settings, options and columns is found here, all at once, each at its line in the recipe.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import ValidationError

from skitflow import __version__
from skitflow.errors import Problem, RecipeError, did_you_mean
from skitflow.plan.gates import gate_problems
from skitflow.recipe.loader import LoadedRecipe, pydantic_problems
from skitflow.recipe.matrix import Loop
from skitflow.recipe.models import (
    SLOT_OPTIONS,
    Gate,
    Gpu,
    ItemOptions,
    LoopItems,
    Notify,
    Parameter,
    Recipe,
    Resources,
    Schedule,
    TaskOptions,
)
from skitflow.recipe.sourcemap import Path, SourceMap
from skitflow.recipe.templating import ParamRef, referenced_params, referenced_run_names
from skitflow.steps.base import Columns, Kind, Step
from skitflow.steps.registry import Registry

DEFAULT_IMAGE = f"ghcr.io/skitflow/skitflow:{__version__}"
SLOT_KIND = {
    "source": Kind.SOURCE,
    "steps": Kind.TRANSFORM,
    "sinks": Kind.SINK,
    "split": Kind.SPLIT,
    "trainer": Kind.TRAINER,
    "evaluator": Kind.EVALUATOR,
}
Component = Literal["prepare", "transform", "sink", "split", "train", "evaluate", "predict",
                    "predict_trained", "select"]
_SAMPLES = {"str": "x", "int": 1, "float": 0.5, "bool": False, "list": [], "dict": {}}


@dataclass(frozen=True)
class StepCall:
    """One step with its settings as written (ParamRefs still symbolic)."""

    step: str
    kind: Kind
    settings: dict[str, Any]
    location: str  # "recipe.yaml:12:5", for messages at plan time and in `skitflow run`
    params: tuple[str, ...]
    package: str  # the distribution that provides the step; the task finds it by kind and name
    run_names: tuple[str, ...] = ()  # `run.*` names the settings use: id, date, name
    #: None: runs where it is listed. "prepare": ran before the split (a model replays it on raw
    #: rows). "model": fitted on the train rows after the split, applied with that state to the rest.
    stage: str | None = None
    checks: bool = False  # the step reports data checks (`expect`): the task gets a Metrics output
    on: str | None = None  # an expect on a split's output: `train` or `test`
    #: Where the item is in the recipe ("steps[3]"): what the package carries instead of
    #: `location`, so that an edit elsewhere that shifts lines changes no task's inputs (its cache
    #: key); `skitflow run` maps it back through `Plan.locations`.
    at: str = ""


def path_label(path: Sequence[str | int]) -> str:
    """("steps", 3) -> "steps[3]"; ("source",) -> "source"."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


@dataclass(frozen=True)
class Ref:
    """An output of an earlier task."""

    task: str
    output: str


@dataclass(frozen=True)
class Condition:
    """A run-time condition compiled to `dsl.If`: a parameter or a task output against a value."""

    label: str
    op: str
    value: Any
    param: str | None = None
    ref: Ref | None = None


@dataclass(frozen=True)
class Task:
    id: str
    component: Component
    calls: tuple[StepCall, ...]
    inputs: dict[str, tuple[Ref, ...]]  # several refs: exactly one ran (dsl.OneOf)
    options: TaskOptions
    condition: Condition | None = None
    branch: Literal["if", "else"] | None = None
    probe: str | None = None  # data expression this task evaluates on its output
    gate: Gate | None = None
    role: str | None = None  # what a sink writes: dataset, train, test, model, metrics, report
    predict: dict[str, Any] | None = None  # a predict task's settings (model, output, ...)
    guard: Condition | None = None  # an outer condition (the source had rows) around `condition`
    on_empty: str | None = None  # the source task: `skip` when an empty source ends the run
    select: dict[str, Any] | None = None  # a matrix sweep's chooser: metric, mode, branch labels

    @property
    def fan_in(self) -> int:
        """How many branches a select task compares (its inputs are model_i and metrics_i)."""
        return sum(1 for name in self.inputs if name.startswith("model_"))

    @property
    def checks(self) -> bool:
        """Whether the task runs `expect` checks (and so has a `checks` Metrics output)."""
        return any(call.checks and call.stage is None for call in self.calls)

    @property
    def params(self) -> tuple[str, ...]:
        used = {p for call in self.calls for p in call.params}
        if self.gate is not None:
            used |= referenced_params([self.gate.min, self.gate.max, self.gate.beat, self.gate.by])
        return tuple(sorted(used))

    @property
    def run_names(self) -> tuple[str, ...]:
        """The run identity (`run.id`, `run.date`, `run.name`) this task's steps use.

        Only these tasks get kfp's run placeholders as inputs: a run id among a task's inputs
        makes every run a cache miss, so tasks that do not need it must not have it.
        """
        return tuple(sorted({n for call in self.calls for n in call.run_names}))


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    version: str | None
    parameters: dict[str, Parameter]
    image: str
    dataset_format: str
    recipe_hash: str
    tasks: tuple[Task, ...]
    schedule: Schedule | None = None
    warnings: tuple[Problem, ...] = ()
    #: What the plan decided that the recipe does not spell out (where fitted steps run).
    notes: tuple[str, ...] = ()
    branches: int = 1  # matrix branches unrolled into the tasks
    #: a matrix dimension from a list parameter: every task runs once per item, in a ParallelFor
    loop: Loop | None = None
    #: StepCall.at -> "file:line:col": how a run-time failure finds its line in the recipe.
    locations: Mapping[str, str] = field(default_factory=dict)
    #: Who hears when a run ends (the recipe's `notify:`): compiled to an exit handler.
    notify: tuple[Notify, ...] = ()

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.id == task_id)


@dataclass
class _Columns:
    """Columns known at a point of the recipe, and where the vanished ones went."""

    known: Columns
    gone: dict[str, str] = field(default_factory=dict)


@dataclass
class _Item:
    call: StepCall
    step: Step
    settings: Any
    options: ItemOptions
    path: Path
    explicit: frozenset[str]  # option names the user wrote on this item
    checkable: bool  # False when a parameter without default feeds a setting


def build_plan(loaded: LoadedRecipe, registry: Registry) -> Plan:
    """Resolve every step against the registry and lay out the tasks; raise on any problem."""
    if loaded.branches:
        from skitflow.plan.matrix import build_matrix_plan

        return build_matrix_plan(loaded, registry)
    if loaded.loop is not None:
        return _looped(loaded, registry, loaded.loop)
    if isinstance((loaded.recipe.evaluator or {}).get("select"), dict):
        raise RecipeError(problems=[*loaded.problems, loaded.source_map.problem(
            ("evaluator", "select"), "`select:` picks the best of several models, but the recipe "
            "has no `matrix:`", "add e.g. `matrix: {depth: [4, 6, 8]}` and use `{{ matrix.depth }}` "
            "in the trainer's settings", key=True)])
    return _Planner(loaded, registry).build()


def _looped(loaded: LoadedRecipe, registry: Registry, loop: Loop) -> Plan:
    """One path, run once per item of a list parameter: the item is a run-time name of the tasks
    (like a parameter's), not an input of the pipeline."""
    if isinstance((loaded.recipe.evaluator or {}).get("select"), dict):
        raise RecipeError(problems=[*loaded.problems, loaded.source_map.problem(
            ("evaluator", "select"), f"`select:` needs every branch's score in one task, but the "
            f"branches of matrix `{loop.name}` come from `params.{loop.items}` at run time "
            "(a ParallelFor): the open-source Kubeflow backend cannot collect a loop's outputs",
            f"list the values in the recipe (`{loop.name}: [a, b]`) to compare them with `select:`",
            key=True)])
    item = Parameter(**loop.item_declaration(loaded.recipe.parameters[loop.items].default))
    recipe = loaded.recipe.model_copy(update={"parameters": {**loaded.recipe.parameters, loop.item: item}})
    plan = _Planner(replace(loaded, recipe=recipe), registry).build()
    parameters = {name: LoopItems.model_validate(spec.model_dump()) if name == loop.items else spec
                  for name, spec in plan.parameters.items() if name != loop.item}
    return replace(plan, parameters=parameters, loop=loop)


class _Planner:
    def __init__(self, loaded: LoadedRecipe, registry: Registry) -> None:
        self.recipe: Recipe = loaded.recipe
        self.map: SourceMap = loaded.source_map
        self.registry = registry
        self.problems: list[Problem] = list(loaded.problems)
        self.warnings: list[Problem] = []
        self.file_label = os.path.basename(self.map.file)
        self.used_ids: set[str] = set()
        self.notes: list[str] = []
        self.suffix = ""  # a matrix branch's label, added to each of its task names
        self.locations: dict[str, str] = {}  # places that are not a step call (predict)

    # -- items -------------------------------------------------------------------------------
    def parse_item(self, slot: str, item: dict[str, Any], path: Path) -> _Item | None:
        allowed = SLOT_OPTIONS[slot]
        kind = SLOT_KIND[slot]
        names = self.registry.names(kind)
        # An option of another slot that names a step here is the step (`expect` in `steps:`).
        all_options = set(ItemOptions.model_fields) - (set(names) - set(allowed))
        option_values = {k: v for k, v in item.items() if k in all_options}
        candidates = [k for k in item if k not in all_options]
        for key in option_values:
            if key not in allowed:
                self.problems.append(
                    self.map.problem((*path, key), f"`{key}` is not an option of {slot}",
                                     f"options here: {', '.join(sorted(allowed))}", key=True)
                )
        if not candidates:
            self.problems.append(
                self.map.problem(path, f"no step named in this {slot} item",
                                 f"name one, e.g. `{names[0] if names else 'step'}: {{...}}`")
            )
            return None
        if len(candidates) > 1:
            known = [c for c in candidates if self.registry.get(c, kind)]
            unknown = [c for c in candidates if not self.registry.get(c, kind)]
            for name in unknown:
                hint = did_you_mean(name, [*names, *allowed])
                self.problems.append(
                    self.map.problem((*path, name), f"unknown step or option `{name}`", hint, key=True)
                )
            if len(known) > 1:
                self.problems.append(
                    self.map.problem((*path, known[1]), f"one item names two steps: `{known[0]}` and `{known[1]}`",
                                     "give each step its own list item", key=True)
                )
            return None
        name = candidates[0]
        entry = self.registry.get(name, kind)
        if entry is None and name in self.registry:
            other = self.registry.find(name)[0]
            self.problems.append(
                self.map.problem((*path, name), f"`{name}` is a {other.kind.value} step, not a {kind.value} step",
                                 f"{kind.value} steps: {', '.join(names)}", key=True)
            )
            return None
        if entry is None:
            hint = did_you_mean(name, names) or did_you_mean(name, allowed) or (
                f"{kind.value} steps: {', '.join(names)}; `skitflow steps` lists all"
            )
            self.problems.append(self.map.problem((*path, name), f"unknown {kind.value} step `{name}`", hint, key=True))
            return None
        raw_settings = item[name]
        if raw_settings is None:
            raw_settings = {}
        if not isinstance(raw_settings, dict):
            self.problems.append(
                self.map.problem((*path, name), f"settings of `{name}` must be a mapping",
                                 f"write `{name}: {{...}}`; `skitflow steps show {name}` lists them")
            )
            return None
        step = entry.step()
        view, checkable = self._validation_view(raw_settings)
        settings = None
        try:
            settings = step.Settings.model_validate(view)
        except ValidationError as exc:
            self.problems.extend(
                pydantic_problems(exc, view, self.map, step.Settings, (*path, name), noun="setting", owner=name)
            )
        try:
            options = ItemOptions.model_validate(option_values)
        except ValidationError as exc:
            self.problems.extend(pydantic_problems(exc, option_values, self.map, ItemOptions, path, noun="option"))
            options = ItemOptions()
        if settings is None:
            return None
        location, _ = self.map.locate((*path, name), key=True)
        call = StepCall(
            step=name,
            kind=kind,
            settings=raw_settings,
            location=f"{self.file_label}:{location.line}:{location.column}",
            params=tuple(sorted(referenced_params(raw_settings))),
            run_names=tuple(sorted(set(referenced_run_names(raw_settings)) | set(step.run_identity))),
            package=entry.package,
            checks=step.reports_checks,
            at=path_label(path),
        )
        return _Item(call, step, settings, options, path, frozenset(option_values), checkable)

    def _validation_view(self, value: Any) -> tuple[Any, bool]:
        """Settings with each ParamRef replaced by its default (or a sample of its type)."""
        checkable = True

        def swap(v: Any) -> Any:
            nonlocal checkable
            if isinstance(v, ParamRef):
                spec = self.recipe.parameters[v.name]
                if spec.default is None:
                    checkable = False
                    return _SAMPLES[spec.type]
                return spec.default
            if isinstance(v, dict):
                return {k: swap(x) for k, x in v.items()}
            if isinstance(v, list):
                return [swap(x) for x in v]
            return v

        return swap(value), checkable

    # -- columns -----------------------------------------------------------------------------
    def flow(self, item: _Item, columns: _Columns) -> _Columns:
        if item.checkable and columns.known is not None:
            for column in item.step.needs(item.settings):
                if column not in columns.known:
                    close_gone = did_you_mean(column, columns.gone)
                    if column in columns.gone:
                        hint = f"`{column}` was {columns.gone[column]}; re-order or drop that step"
                    elif not did_you_mean(column, columns.known) and close_gone:
                        gone_name = close_gone.split("`")[1]
                        hint = f"{close_gone} it was {columns.gone[gone_name]}"
                    else:
                        hint = did_you_mean(column, columns.known) or (
                            "columns here: " + ", ".join(f"`{c}`" for c in columns.known[:12])
                            + (" ..." if len(columns.known) > 12 else "")
                        )
                    self.problems.append(
                        self.map.problem((*item.path, item.call.step),
                                         f"`{item.call.step}` needs column `{column}`, which does not exist here",
                                         hint, key=True)
                    )
        after = item.step.columns_out(item.settings, columns.known)
        gone = dict(columns.gone)
        if columns.known is not None and after is not None:
            for column in columns.known:
                if column not in after:
                    gone[column] = f"removed by `{item.call.step}` at {item.call.location}"
        if after is not None:
            for column in after:
                gone.pop(column, None)
        return _Columns(after, gone)

    # -- tasks -------------------------------------------------------------------------------
    def task_id(self, wanted: str | None, default: str) -> str:
        base = (wanted or default.replace("_", "-")) + (f"-{self.suffix}" if self.suffix else "")
        candidate, n = base, 2
        while candidate in self.used_ids:
            candidate, n = f"{base}-{n}", n + 1
        self.used_ids.add(candidate)
        return candidate

    def merge_options(self, items: list[_Item], defaults: TaskOptions) -> TaskOptions:
        """Recipe defaults, overridden by what the items set; fused items must agree.

        A task holding a step that is not cacheable (it reads a database, writes somewhere) is
        not cached unless the recipe asks for caching explicitly.
        """
        updates: dict[str, Any] = {}
        if defaults.caching is None and not all(item.step.is_cacheable(item.settings) for item in items):
            updates["caching"] = False
        setter: dict[str, _Item] = {}
        for item in items:
            for name in sorted(item.explicit & set(TaskOptions.model_fields)):
                value = getattr(item.options, name)
                if name in setter and updates[name] != value:
                    self.problems.append(
                        self.map.problem((*item.path, name),
                                         f"`{name}` differs from `{setter[name].call.step}` fused into the same task",
                                         "set `isolate: true` on one of them, or give both the same value",
                                         key=True)
                    )
                setter[name], updates[name] = item, value
        return defaults.model_copy(update=updates)

    def build(self) -> Plan:
        r = self.recipe
        defaults = r.defaults
        image = r.image or defaults.image or DEFAULT_IMAGE
        if defaults.caching is None and _mutable_tag(image):
            self.warnings.append(
                self.map.problem(("image",), f"image `{image}` has a mutable tag; caching is turned off",
                                 "pin a version tag or digest to let Kubeflow reuse cached results")
            )
            defaults = defaults.model_copy(update={"caching": False})
        if not r.image and not defaults.image:
            defaults = defaults.model_copy(update={"image": image})
        elif r.image:
            defaults = defaults.model_copy(update={"image": r.image})

        source = self.parse_item("source", r.source, ("source",))
        transforms = [self.parse_item("steps", it, ("steps", i)) for i, it in enumerate(r.steps)]
        sinks = [self.parse_item("sinks", it, ("sinks", i)) for i, it in enumerate(r.sinks)]
        split = self.parse_item("split", r.split, ("split",)) if r.split is not None else None
        otherwise = None
        if split is not None and split.options.otherwise is not None:
            otherwise = self.parse_item("split", split.options.otherwise, ("split", "otherwise"))
        trainer = self.parse_item("trainer", r.trainer, ("trainer",)) if r.trainer is not None else None
        evaluator = self.parse_item("evaluator", r.evaluator, ("evaluator",)) if r.evaluator is not None else None

        # Fitted steps (and all after them) move after the split; row filters among them move
        # before it when they can. Columns are checked in the order the steps will run.
        transforms, chain = self.place_fitted(transforms, split, trainer)
        columns = _Columns(None)
        if source is not None:
            columns = self.flow(source, columns)
        for item in transforms:
            if item is not None:
                columns = self.flow(item, columns)
        dataset_columns = columns
        if split is not None:
            after = self.flow(split, dataset_columns)
            if otherwise is not None:
                other = self.flow(otherwise, dataset_columns)
                if after.known is not None and other.known is not None:
                    after = _Columns([c for c in after.known if c in other.known], {**after.gone, **other.gone})
                else:
                    after = _Columns(None, after.gone)
            columns = after
        # checks on the split's outputs see its rows before the fitted steps change them
        split_checks = self.split_expectations(split, columns) if split is not None else ()
        for item in chain:
            columns = self.flow(item, columns)
        for item in (trainer, evaluator):
            if item is not None:
                self.flow(item, columns)

        self.check_structure(split, otherwise, trainer, evaluator, sinks)
        if evaluator is not None and evaluator.options.gate is not None:
            self.problems.extend(gate_problems(evaluator.options.gate, evaluator.step, self.map))
        if self.problems or source is None or any(i is None for i in (*transforms, *sinks)):
            raise RecipeError(problems=self.problems or [Problem("invalid recipe")])

        tasks: list[Task] = []
        # Source and the transforms up to the first isolated one run in one task; then groups.
        groups: list[list[_Item]] = [[source]]
        for item in transforms:
            assert item is not None
            if item.options.isolate or groups[-1][-1].options.isolate:
                groups.append([item])
            else:
                groups[-1].append(item)
        dataset: Ref | None = None
        for index, group in enumerate(groups):
            names = [g.call.step for g in group]
            default = names[0] if len(names) == 1 else (
                "-".join(names) if len(names) <= 3 else f"{names[0]}-to-{names[-1]}"
            )
            wanted = next((g.options.name for g in group if g.options.name), None)
            task_id = self.task_id(wanted, default)
            tasks.append(Task(
                id=task_id,
                component="prepare" if index == 0 else "transform",
                calls=tuple(g.call for g in group),
                inputs={} if dataset is None else {"data": (dataset,)},
                options=self.merge_options(group, defaults),
            ))
            dataset = Ref(task_id, "out")
        assert dataset is not None

        outputs: dict[str, tuple[Ref, ...]] = {"dataset": (dataset,)}
        for item in sinks:
            assert item is not None
            if item.options.input == "dataset":
                tasks.append(self.sink_task(item, outputs, defaults))

        if split is not None:
            condition = self.condition(split, dataset, tasks)
            split_ids = []
            branches: tuple[tuple[Literal["if", "else"], _Item | None], ...] = (
                ("if", split), ("else", otherwise))
            for branch, item in branches:
                if item is None:
                    continue
                task_id = self.task_id(item.options.name, f"split-{item.call.step}")
                split_ids.append(task_id)
                model_calls = () if trainer is not None else tuple(_staged(c, "model") for c in chain)
                tasks.append(Task(
                    id=task_id, component="split", calls=(item.call, *model_calls, *split_checks),
                    inputs={"data": (dataset,)}, options=self.merge_options([item], defaults),
                    condition=condition, branch=branch if condition else None,
                ))
            outputs["train"] = tuple(Ref(t, "train") for t in split_ids)
            outputs["test"] = tuple(Ref(t, "test") for t in split_ids)
            # Without an `otherwise`, train/test exist only inside the condition's branch.
            inside = condition if otherwise is None else None
            for item in sinks:
                assert item is not None
                if item.options.input in ("train", "test"):
                    tasks.append(self.sink_task(item, outputs, defaults, inside,
                                                "if" if inside else None))

        if trainer is not None:
            options = self.merge_options([trainer], defaults)
            accelerator = trainer.step.accelerator(trainer.settings)  # type: ignore[attr-defined]
            if accelerator and not (options.resources and options.resources.gpu):
                gpu = Gpu(type=accelerator[0], count=accelerator[1])
                resources = (options.resources or Resources()).model_copy(update={"gpu": gpu})
                options = options.model_copy(update={"resources": resources})
            task_id = self.task_id(trainer.options.name, f"train-{trainer.call.step}")
            # data checks curate the training data: a model does not replay them on new rows
            replayed = tuple(_staged(t, "prepare") for t in transforms
                             if t is not None and not t.step.reports_checks)
            fitted = tuple(_staged(c, "model") for c in chain)
            tasks.append(Task(id=task_id, component="train", calls=(*replayed, *fitted, trainer.call),
                              inputs={"train": outputs["train"]}, options=options))
            outputs["model"] = (Ref(task_id, "model"),)

        gate_condition = None
        if evaluator is not None:
            task_id = self.task_id(evaluator.options.name, f"evaluate-{evaluator.call.step}")
            options = self.merge_options([evaluator], defaults)
            if evaluator.options.gate is not None and evaluator.options.gate.beat is not None \
                    and options.caching is None:  # the published model changes under its name
                options = options.model_copy(update={"caching": False})
            tasks.append(Task(id=task_id, component="evaluate", calls=(evaluator.call,),
                              inputs={"model": outputs["model"], "test": outputs["test"]},
                              options=options, gate=evaluator.options.gate))
            outputs["metrics"] = (Ref(task_id, "metrics"),)
            outputs["report"] = (Ref(task_id, "report"),)
            gate = evaluator.options.gate
            if gate is not None:
                gate_condition = Condition(
                    label=f"gate-{gate.metric}".replace("_", "-"), op="==", value=True,
                    ref=Ref(task_id, "passed"),
                )
        for item in sinks:  # only the model waits for the gate: its metrics and report say why
            assert item is not None
            if item.options.input in ("model", "metrics", "report"):
                condition = gate_condition if item.options.input == "model" else None
                tasks.append(self.sink_task(item, outputs, defaults, condition))
        if r.predict is not None:
            trained = r.predict.model == "trained"
            location, _ = self.map.locate(("predict",), key=True)
            task_id = self.task_id(r.predict.name, "predict")
            inputs = {"data": (dataset,), **({"model": outputs["model"]} if trained else {})}
            settings = {**r.predict.model_dump(exclude={"name"}), "at": "predict"}
            self.locations["predict"] = f"{self.file_label}:{location.line}:{location.column}"
            condition = gate_condition if trained else None
            # A bundle named by path can change under the same name: never reuse a cached result.
            options = defaults if trained or defaults.caching is not None else \
                defaults.model_copy(update={"caching": False})
            tasks.append(Task(id=task_id, component="predict_trained" if trained else "predict", calls=(),
                              inputs=inputs, options=options, condition=condition, predict=settings))
            outputs["predictions"] = (Ref(task_id, "out"),)
            for item in sinks:
                assert item is not None
                if item.options.input == "predictions":
                    tasks.append(self.sink_task(item, outputs, defaults, condition))

        if source.options.on_empty == "skip":
            tasks = skip_when_empty(tasks)
        if self.problems:
            raise RecipeError(problems=self.problems)
        return Plan(
            name=r.name,
            description=r.description,
            version=r.version,
            parameters=dict(r.parameters),
            image=image,
            dataset_format=r.dataset_format,
            recipe_hash=recipe_hash(r),
            tasks=tuple(tasks),
            schedule=r.schedule,
            warnings=tuple(self.warnings),
            notes=tuple(self.notes),
            notify=tuple(r.notify),
            locations={**{c.at: c.location for t in tasks for c in t.calls}, **self.locations},
        )

    def split_expectations(self, split: _Item, columns: _Columns) -> tuple[StepCall, ...]:
        """The split's `expect:` option as expect calls on its train and/or test output.

        Checked like an `expect` item in `steps:`: its settings by the step's model, its column
        names against the columns after the split.
        """
        raw = split.options.expect
        if not raw:
            return ()
        parts = {k: raw[k] for k in ("train", "test") if k in raw}
        if parts and set(raw) - set(parts):
            self.problems.append(self.map.problem(
                ("split", "expect"), "`expect:` on a split mixes `train:`/`test:` with checks",
                "write the checks once for both outputs, or under `train:` and `test:`", key=True))
            return ()
        targets: list[tuple[str, Any, Path]] = [
            (on, settings, ("split", "expect", on)) for on, settings in parts.items()] or [
            (on, raw, ("split", "expect")) for on in ("train", "test")]
        entry = self.registry.get("expect", Kind.TRANSFORM)
        if entry is None:  # a registry without the built-ins
            self.problems.append(self.map.problem(("split", "expect"), "no `expect` step is installed",
                                                  key=True))
            return ()
        step = entry.step()
        calls: list[StepCall] = []
        for on, settings, path in targets:
            if not isinstance(settings, dict):
                self.problems.append(self.map.problem(path, "`expect:` must be a mapping of checks",
                                                      "e.g. `expect: {row_count: {min: 100}}`"))
                continue
            view, checkable = self._validation_view(settings)
            try:
                validated = step.Settings.model_validate(view)
            except ValidationError as exc:
                self.problems.extend(pydantic_problems(exc, view, self.map, step.Settings, path,
                                                       noun="setting", owner="expect"))
                continue
            location, _ = self.map.locate(path, key=True)
            call = StepCall(step="expect", kind=Kind.TRANSFORM, settings=settings,
                            location=f"{self.file_label}:{location.line}:{location.column}",
                            params=tuple(sorted(referenced_params(settings))), package=entry.package,
                            checks=True, on=on)
            # flow() points at (*path, step name); the settings sit at `path` itself here
            self.flow(_Item(call, step, validated, ItemOptions(), path if len(path) == 3 else path[:-1],
                            frozenset(), checkable), columns)
            calls.append(call)
        return tuple(calls)

    def sink_task(self, item: _Item, outputs: dict[str, tuple[Ref, ...]], defaults: TaskOptions,
                  condition: Condition | None = None, branch: Literal["if"] | None = None) -> Task:
        role = item.options.input
        task_id = self.task_id(item.options.name, f"{item.call.step}-{role}")
        return Task(id=task_id, component="sink", calls=(item.call,), inputs={"data": outputs[role]},
                    options=self.merge_options([item], defaults), condition=condition,
                    branch=branch, role=role)

    def place_fitted(self, transforms: list[_Item | None], split: _Item | None,
                     trainer: _Item | None) -> tuple[list[_Item | None], list[_Item]]:
        """(steps before the split, steps after it). The first fitted or sparse step and every
        step after it run after the split: fitted on the train rows, applied with the same state
        to the test rows and, from the model bundle, to any later data. Row filters listed after
        a fitted step move before the split when they read no column an earlier moved step
        changed; otherwise they are an error (they would misalign rows and features)."""
        def moves(item: _Item) -> bool:
            return item.step.is_fitted(item.settings) or item.step.sparse

        first = next((i for i, t in enumerate(transforms) if t is not None and moves(t)), None)
        if first is None:
            return transforms, []
        if trainer is None:
            for item in transforms:
                if item is not None and item.step.sparse:
                    self.problems.append(self.map.problem(
                        (*item.path, item.call.step),
                        f"`{item.call.step}` makes sparse features, which only a trainer can use",
                        "add `split:` and `trainer:`, or use a dense encoding (one_hot)", key=True))
            fitted = [t for t in transforms if t is not None and moves(t)]
            if split is None:
                self.notes.append("fitted steps fit on all rows (the recipe has no split): "
                                  + _names(fitted))
                return transforms, []
        before: list[_Item | None] = list(transforms[:first])
        chain: list[_Item] = []
        touched: set[str] = set()
        for item in transforms[first:]:
            if item is None:
                continue
            if item.step.changes_rows:
                reads = item.step.reads(item.settings)
                if reads is not None and not touched & set(reads):
                    before.append(item)
                    self.notes.append(f"`{item.call.step}` ({item.call.location}) drops rows, so it "
                                      "runs before the split")
                    continue
                blocker = chain[-1].call if chain else item.call
                self.problems.append(self.map.problem(
                    (*item.path, item.call.step),
                    f"`{item.call.step}` drops rows after `{chain[0].call.step}`, which is fitted on "
                    "the train rows after the split, and it reads columns changed since then",
                    f"move it before `{chain[0].call.step}` (at {chain[0].call.location})"
                    if chain else f"move it before `{blocker.step}`", key=True))
                continue
            touched |= set(item.step.needs(item.settings))
            chain.append(item)
            moved = sorted(item.explicit)
            if moved and trainer is not None:
                self.warnings.append(self.map.problem(
                    (*item.path, moved[0]),
                    f"`{item.call.step}` runs inside the train, evaluate and predict tasks (it is "
                    f"fitted after the split), so its task option(s) {', '.join(moved)} do not apply",
                    "set task options on the trainer instead", key=True))
        where = "the train task" if trainer is not None else "the split task"
        self.notes.append(
            f"fitted after the split, on the train rows, in {where}, then applied unchanged to the "
            "test rows" + (" and kept in the model bundle" if trainer is not None else "") + ": "
            + _names(chain))
        return before, chain

    def check_structure(self, split: _Item | None, otherwise: _Item | None, trainer: _Item | None,
                        evaluator: _Item | None, sinks: Iterable[_Item | None]) -> None:
        # What the recipe *writes* counts, not what parsed: a trainer with a mistake in its
        # settings already has its error, and must not also make every model sink an error.
        r = self.recipe
        if trainer is not None and r.split is None:
            self.problems.append(self.map.problem(("trainer",), "a trainer needs a `split:` to train on",
                                                  "add `split: {train_test: {test_size: 0.2}}`", key=True))
        if evaluator is not None and r.trainer is None:
            self.problems.append(self.map.problem(("evaluator",), "an evaluator needs a `trainer:` to evaluate",
                                                  key=True))
        if split is not None and split.options.when and otherwise is None and trainer is not None:
            self.problems.append(self.map.problem(("split", "when"),
                                                  "a conditional split needs `otherwise:` when a trainer follows",
                                                  "say what to do when the condition is false, e.g. "
                                                  "`otherwise: {by_column: {column: split}}`"))
        if split is not None and split.options.otherwise is not None and not split.options.when:
            self.problems.append(self.map.problem(("split", "otherwise"), "`otherwise:` without `when:`",
                                                  "add a `when:` condition or remove `otherwise:`", key=True))
        available = {"dataset"}
        if r.split is not None:
            available |= {"train", "test"}
        if r.trainer is not None:
            available.add("model")
        if r.evaluator is not None:
            available |= {"metrics", "report"}
        if self.recipe.predict is not None:
            available.add("predictions")
            if self.recipe.predict.model == "trained" and trainer is None:
                self.problems.append(self.map.problem(("predict", "model"),
                                                      "`model: trained` needs a `trainer:` in this recipe",
                                                      "add a trainer, or give the path or s3:// URI of a "
                                                      "model bundle"))
        for item in sinks:
            if item is not None and item.options.input not in available:
                self.problems.append(self.map.problem((*item.path, "input"),
                                                      f"this recipe produces no `{item.options.input}` to write",
                                                      f"inputs available: {', '.join(sorted(available))}"))

    def condition(self, split: _Item, dataset: Ref, tasks: list[Task]) -> Condition | None:
        """Compile `when:` into a parameter condition or a data probe on the dataset's task."""
        text = split.options.when
        if not text:
            return None
        from skitflow.expressions import ExpressionError, problem_in_source  # only for `when:`

        path = ("split", "when")
        try:
            parsed = parse_when(text, tuple(self.recipe.parameters))
        except ExpressionError as exc:
            start, width = self.map.locate(path)
            self.problems.append(problem_in_source(
                exc, text, start, width, "invalid `when`",
                "write `params.NAME == value` or a data expression over `rows` and `columns`, "
                "e.g. `\"split\" not in columns`"))
            return None
        if parsed[0] == "param":
            _, name, op, value = parsed
            return Condition(label=f"when-{name}".replace("_", "-"), op=op, value=value, param=name)
        # A data condition: the task that made the dataset evaluates it and outputs `probe`.
        index = next(i for i, t in enumerate(tasks) if t.id == dataset.task)
        tasks[index] = replace(tasks[index], probe=text)
        return Condition(label="when-data", op="==", value=True, ref=Ref(dataset.task, "probe"))


def _names(items: Iterable[_Item]) -> str:
    return ", ".join(f"`{i.call.step}` ({i.call.location})" for i in items)


def _staged(item: _Item, stage: str) -> StepCall:
    return replace(item.call, stage=stage)


def skip_when_empty(tasks: list[Task]) -> list[Task]:
    """`on_empty: skip`: every task after the source runs only when the source task had rows.

    A `dsl.If` on the source task's `rows` output, so Kubeflow skips them as kfp.local does.
    """
    source = tasks[0]
    guard = Condition(label="source-has-rows", op=">", value=0, ref=Ref(source.id, "rows"))
    return [replace(source, on_empty="skip"), *(replace(t, guard=guard) for t in tasks[1:])]


#: The names a data condition (`when:` not on a parameter) can read: the dataset's size and columns.
WHEN_NAMES = ("rows", "columns")


def parse_when(text: str, parameters: tuple[str, ...]) -> tuple:
    """`params.NAME <op> literal` -> ("param", NAME, op, value); a data expression -> ("data", text).

    Read by the one expression parser (the runtime evaluates the data form with the same
    evaluator); raises ExpressionError pointing into `text`.
    """
    from skitflow.expressions import ExpressionError, parse  # 6 ms: only recipes with `when:`

    expression = parse(text)
    for name in sorted(expression.params):
        if name not in parameters:
            raise expression.error_at(f"params.{name}", f"unknown parameter `{name}`",
                                      did_you_mean(name, parameters))
    if expression.params:
        test = expression.parameter_test()
        if test is None:
            raise ExpressionError("a condition on a parameter must be `params.NAME <op> value`", 0,
                                  "compare one parameter with a constant, e.g. `params.holdout == true`; it "
                                  "cannot be combined with other conditions",
                                  len(text))
        return ("param", *test)
    unknown = sorted(set(expression.names) - set(WHEN_NAMES))
    if unknown:
        raise expression.error_at(unknown[0], f"unknown name `{unknown[0]}`: data conditions know "
                                  "`rows` and `columns`", did_you_mean(unknown[0], WHEN_NAMES))
    return ("data", text)


def _mutable_tag(image: str) -> bool:
    if "@sha256:" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.endswith(":latest")


def recipe_hash(recipe: Recipe) -> str:
    """A short, stable hash of the validated recipe (not of its formatting)."""
    # recipes without the newer sections (`predict:`, `matrix:`) keep their hash
    data = recipe.model_dump(mode="python", by_alias=True)
    for section in ("predict", "matrix"):
        if data.get(section) is None:
            data.pop(section, None)
    import hashlib  # hashlib and json: `skitflow validate` never gets here
    import json

    text = json.dumps(data, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_default(value: Any) -> Any:
    if isinstance(value, ParamRef):
        return value.to_json()
    return str(value)
