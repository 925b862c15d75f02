"""The few KFP components every skitflow pipeline is made of.

Each is a lightweight Python component whose body only hands over to `skitflow.run.runtime`: the same
code runs in the container image on Kubeflow and in `skitflow run` (kfp.local's
SubprocessRunner), so local runs cannot drift from cluster runs.

A task's inputs are its artifacts, `spec` (the task's JSON: steps, settings, parameter types),
one typed input per pipeline parameter its steps use (`param_<name>`), wired straight to the
pipeline parameter, and, only when its steps use `run.*`, the run's identity (`run_id`,
`run_name`, `run_created`), fed from kfp's run placeholders. That is why the functions are generated: their signatures depend on the
recipe. kfp embeds a component's source in the package, so the source is generated as text,
deterministically, and registered with `linecache` where `inspect.getsource` finds it.
"""

from __future__ import annotations

import hashlib
import linecache
from collections.abc import Callable, Sequence
from typing import Any

#: component -> (artifact parameters, outputs annotation, runtime call)
_SHAPES: dict[str, tuple[str, str, str]] = {
    "prepare": (
        "out: Output[Dataset]",
        ' -> NamedTuple("Outputs", [("rows", int), ("probe", bool)])',
        "return runtime.prepare(out, spec, params{run})",
    ),
    "transform": (
        "data: Input[Dataset], out: Output[Dataset]",
        ' -> NamedTuple("Outputs", [("rows", int), ("probe", bool)])',
        "return runtime.transform(data, out, spec, params{run})",
    ),
    "sink": (
        "data: Input[Artifact]",
        " -> str",
        "return runtime.sink(data, spec, params{run})",
    ),
    "split": (
        "data: Input[Dataset], train: Output[Dataset], test: Output[Dataset]",
        ' -> NamedTuple("Outputs", [("train_rows", int), ("test_rows", int)])',
        "return runtime.split(data, train, test, spec, params{run})",
    ),
    "train": (
        "train: Input[Dataset], model: Output[Model]",
        "",
        "runtime.train(train, model, spec, params{run})",
    ),
    "predict": (
        "data: Input[Dataset], out: Output[Dataset]",
        ' -> NamedTuple("Outputs", [("rows", int)])',
        "return runtime.predict(data, None, out, spec, params)",
    ),
    "predict_trained": (
        "data: Input[Dataset], model: Input[Model], out: Output[Dataset]",
        ' -> NamedTuple("Outputs", [("rows", int)])',
        "return runtime.predict(data, model, out, spec, params)",
    ),
    "evaluate": (
        "model: Input[Model], test: Input[Dataset], metrics: Output[Metrics], "
        "classification: Output[ClassificationMetrics], report: Output[HTML]",
        ' -> NamedTuple("Outputs", [("passed", bool), ("score", float)])',
        "return runtime.evaluate(model, test, metrics, classification, report, spec, params{run})",
    ),
}
_DOCS = {
    "prepare": "Read the source and run the fused transforms after it.",
    "transform": "Run a group of fused transforms on a dataset.",
    "sink": "Write a dataset, model or report somewhere; returns where it went.",
    "split": "Split a dataset into train and test.",
    "train": "Train a model on the train set.",
    "evaluate": "Evaluate the model on the test set and decide the gate.",
    "predict": "Score the dataset's rows with a model bundle.",
    "predict_trained": "Score the dataset's rows with the model trained in this run.",
    "select": "Pick the best model of a matrix sweep by its metric and decide the gate.",
}
#: Components whose runtime imports the model libraries (sklearn, xgboost): in a local run they
#: wait for the warm worker's stage that has them imported (run/warm_worker.py).
MODEL_COMPONENTS = ("split", "train", "predict", "predict_trained", "evaluate", "select")
#: Of those, the components whose runtime also draws the evaluation report's figures (matplotlib).
FIGURE_COMPONENTS = ("evaluate", "select")
PARAM_PREFIX = "param_"
#: `run.<name>` -> the component input that carries it (the value of a kfp run placeholder).
RUN_INPUTS = {"id": "run_id", "name": "run_name", "date": "run_created"}
#: Components that can run `expect` checks; such a task gets one more output, `checks`
#: (KFP Metrics: failing rows per check), so the results show in the Kubeflow UI. Tasks without
#: an expect keep the plain shape, so their packages do not change.
CHECKED = ("prepare", "transform", "split")
_CACHE: dict[tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], bool, int, bool],
             Callable[..., Any]] = {}


def _select_shape(branches: int, champion: bool = False) -> tuple[str, str, str]:
    """A matrix sweep's chooser: one model and metrics input per branch, the winner out; with
    `champion` (a gate with `beat:`) also the test rows, to score the published model on them."""
    inputs = "".join(f"model_{i}: Input[Model], metrics_{i}: Input[Metrics], " for i in range(branches))
    inputs += "test: Input[Dataset], " if champion else ""
    models = ", ".join(f"model_{i}" for i in range(branches))
    metrics = ", ".join(f"metrics_{i}" for i in range(branches))
    return (
        f"{inputs}model: Output[Model], metrics: Output[Metrics], report: Output[HTML]",
        ' -> NamedTuple("Outputs", [("passed", bool), ("score", float)])',
        f"return runtime.select([{models}], [{metrics}], model, metrics, report, spec, params"
        f"{', test=test' if champion else ''}{{run}})",
    )


def component_source(component: str, params: Sequence[tuple[str, str]],
                     run_names: Sequence[str] = (), checks: bool = False, fan_in: int = 0,
                     champion: bool = False) -> str:
    """The Python source of a component taking `params` ((name, type) pairs) as typed inputs,
    and the run identity inputs for the `run.*` names in `run_names`.

    With `checks`, the component also has a `checks: Output[Metrics]` for its expect results;
    `fan_in` is the number of branches a `select` compares; `champion`, whether it also scores
    the published model (its gate has `beat:`).
    """
    artifacts, returns, call = _select_shape(fan_in, champion) if component == "select" \
        else _SHAPES[component]
    if checks:
        if component not in CHECKED:
            raise ValueError(f"a {component} task cannot run expect checks")
        artifacts += ", checks: Output[Metrics]"
        call = call.replace(", spec, params{run})", ", spec, params, checks{run})")
    inputs = "".join(f", {PARAM_PREFIX}{name}: {type_name}" for name, type_name in params)
    values = ", ".join(f"{name!r}: {PARAM_PREFIX}{name}" for name, _ in params)
    run_inputs = [RUN_INPUTS[name] for name in sorted(run_names)]
    inputs += "".join(f", {name}: str" for name in run_inputs)
    run_line = ""
    if run_inputs:
        run_values = ", ".join(f"{name.removeprefix('run_')!r}: {name}" for name in run_inputs)
        run_line = f"    run = {{{run_values}}}\n"
    return (
        f"def {component}({artifacts}, spec: str{inputs}){returns}:\n"
        f'    """{_DOCS[component]}"""\n'
        "    from skitflow import runtime\n"
        "\n"
        f"    params = {{{values}}}\n"
        f"{run_line}"
        f"    {call.format(run=', identity=run' if run_inputs else '')}\n"
    )


def component_function(component: str, params: Sequence[tuple[str, str]],
                       run_names: Sequence[str] = (), checks: bool = False,
                       fan_in: int = 0, champion: bool = False) -> Callable[..., Any]:
    """The component's function, generated once per signature."""
    key = (component, tuple(params), tuple(sorted(run_names)), checks, fan_in, champion)
    if key not in _CACHE:
        from typing import NamedTuple

        from kfp.dsl import (
            HTML,
            Artifact,
            ClassificationMetrics,
            Dataset,
            Input,
            Metrics,
            Model,
            Output,
        )

        source = component_source(component, params, run_names, checks, fan_in, champion)
        filename = f"<skitflow-component-{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict[str, Any] = {
            "NamedTuple": NamedTuple, "HTML": HTML, "Artifact": Artifact,
            "ClassificationMetrics": ClassificationMetrics, "Dataset": Dataset, "Input": Input,
            "Metrics": Metrics, "Model": Model, "Output": Output, "__name__": "skitflow.compile.components",
        }
        # dont_inherit: this module's `from __future__ import annotations` would turn the
        # annotations kfp reads into strings.
        exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # generated here
        _CACHE[key] = namespace[component]
    return _CACHE[key]


#: The exit handler's task (recipes with `notify:`): it receives the run's final status from the
#: backend and the run's identity from placeholders; it reads no outputs of the tasks it guards,
#: which an exit task cannot consume.
NOTIFY_TASK = "notify"
NOTIFY_SOURCE = (
    "def notify(status: PipelineTaskFinalStatus, spec: str, run_id: str, run_name: str, "
    "run_created: str):\n"
    '    """Tell the recipe\'s notify targets how the run ended (the exit handler\'s task)."""\n'
    "    from skitflow import runtime\n"
    "\n"
    "    runtime.notify(status, spec, {'id': run_id, 'name': run_name, 'created': run_created})\n"
)


def notify_function() -> Callable[..., Any]:
    """The exit handler's component function, generated like the others (kfp embeds its source)."""
    key = (NOTIFY_TASK, (), (), False, 0, False)
    if key not in _CACHE:
        from kfp.dsl import PipelineTaskFinalStatus

        filename = "<skitflow-component-notify>"
        linecache.cache[filename] = (len(NOTIFY_SOURCE), None, NOTIFY_SOURCE.splitlines(True), filename)
        namespace: dict[str, Any] = {"PipelineTaskFinalStatus": PipelineTaskFinalStatus,
                                     "__name__": "skitflow.compile.components"}
        exec(compile(NOTIFY_SOURCE, filename, "exec", dont_inherit=True), namespace)  # generated here
        _CACHE[key] = namespace[NOTIFY_TASK]
    return _CACHE[key]
