"""The few KFP components every skitflow pipeline is made of.

Each is a lightweight Python component with a fixed signature whose body only hands over to
`skitflow.runtime`: the same code runs in the container image on Kubeflow and in `skitflow run`
(kfp.local's SubprocessRunner), so local runs cannot drift from cluster runs. kfp embeds these
functions' source in the package, so they must stay self-contained: imports inside the body, and
annotations kfp's own preamble (`from kfp.dsl import *`, `from typing import *`) understands.

`spec` is the task's JSON (steps, settings, parameter types); `params` maps the pipeline
parameters the task uses to their run-time values.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def prepare(out: Output[Dataset], spec: str, params: dict) -> NamedTuple(  # type: ignore[valid-type]
    "Outputs", [("rows", int), ("probe", bool)]
):
    """Read the source and run the fused transforms after it."""
    from skitflow import runtime

    return runtime.prepare(out, spec, params)


def transform(  # type: ignore[valid-type]
    data: Input[Dataset], out: Output[Dataset], spec: str, params: dict
) -> NamedTuple("Outputs", [("rows", int), ("probe", bool)]):
    """Run a group of fused transforms on a dataset."""
    from skitflow import runtime

    return runtime.transform(data, out, spec, params)


def sink(data: Input[Artifact], spec: str, params: dict) -> str:
    """Write a dataset, model or report somewhere; returns where it went."""
    from skitflow import runtime

    return runtime.sink(data, spec, params)


def split(  # type: ignore[valid-type]
    data: Input[Dataset], train: Output[Dataset], test: Output[Dataset], spec: str, params: dict
) -> NamedTuple("Outputs", [("train_rows", int), ("test_rows", int)]):
    """Split a dataset into train and test."""
    from skitflow import runtime

    return runtime.split(data, train, test, spec, params)


def train(train: Input[Dataset], model: Output[Model], spec: str, params: dict):
    """Train a model on the train set."""
    from skitflow import runtime

    runtime.train(train, model, spec, params)


def evaluate(  # type: ignore[valid-type]
    model: Input[Model],
    test: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    spec: str,
    params: dict,
) -> NamedTuple("Outputs", [("passed", bool), ("score", float)]):
    """Evaluate the model on the test set and decide the gate."""
    from skitflow import runtime

    return runtime.evaluate(model, test, metrics, classification, report, spec, params)


FUNCTIONS = {
    "prepare": prepare,
    "transform": transform,
    "sink": sink,
    "split": split,
    "train": train,
    "evaluate": evaluate,
}
