"""What runs inside a task, in the container image on Kubeflow and locally alike.

Each entry point reads the task's input artifacts, runs its steps in order, writes its outputs
atomically and records row counts as artifact metadata. A failing step is reported with its
recipe location on one marker line (``SKITFLOW-FAILURE {...}``) that `skitflow run` turns into a
readable message; secrets from the environment are redacted from it.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skitflow.steps.base import ArtifactFile, Kind, RunContext, Step
from skitflow.util.atomic import write_text
from skitflow.util.datasets import read_dataset, write_dataset
from skitflow.util.metadata import bounded
from skitflow.util.redact import redact

FAILURE_MARKER = "SKITFLOW-FAILURE "


@dataclass
class _Call:
    step: Step
    settings: Any
    location: str
    stage: str | None = None  # see StepCall.stage: "prepare" | "model" | None


class _TaskRun:
    """A task's parsed spec, resolved parameters and steps."""

    def __init__(self, spec_json: str, params: Mapping[str, Any], artifact_uri: str,
                 identity: Mapping[str, str] | None = None) -> None:
        from skitflow.recipe.models import Parameter, coerce_parameter
        from skitflow.recipe.templating import resolve_runtime

        self.spec = json.loads(spec_json)
        self.name = self.spec["task"]
        types = self.spec.get("param_types", {})
        try:
            values = {
                name: coerce_parameter(name, Parameter(type=types[name]), value)
                for name, value in params.items()
            }
        except ValueError as exc:
            self.report_failure(None, None, exc)
            raise
        try:
            self.identity = run_identity(identity or {})
        except ValueError as exc:
            self.report_failure(None, None, exc)
            raise
        self.values = values
        self.run_names = {k: v for k, v in self.identity.items() if k in ("id", "date", "name")}
        self.ctx = RunContext(
            recipe_name=self.spec["recipe"],
            run_id=self.identity.get("id", ""),
            run_date=self.identity.get("date", ""),
            workdir=os.path.dirname(artifact_uri) if artifact_uri else ".",
            environ=os.environ,
            log=self.log,
        )
        self.calls: list[_Call] = []
        for call in self.spec["calls"]:
            try:  # run-time parameter values are checked against the step's settings here
                resolved = resolve_runtime(call["settings"], values, self.run_names)
                step = _load_step(call)()
                settings = step.Settings.model_validate(resolved)
            except Exception as exc:
                self.report_failure(call["step"], call["location"], exc)
                raise
            self.calls.append(_Call(step, settings, call["location"], call.get("stage")))

    def chain(self) -> Any:
        """The staged transforms of this task (those a model bundle carries), in order."""
        from skitflow.steps.bundle import Chain, ChainStep

        return Chain([ChainStep(c.step, c.settings, c.stage, c.location)
                      for c in self.calls if c.stage is not None])

    def log(self, message: str) -> None:
        print(f"[{self.name}] {redact(message)}", flush=True)

    def record_identity(self, *artifacts: Any) -> None:
        """The run identity this task received, kept in its output artifacts' metadata."""
        if self.identity:
            for artifact in artifacts:
                artifact.metadata["run"] = dict(self.identity)

    def failed(self, call: _Call, exc: BaseException) -> None:
        self.report_failure(call.step.name, call.location, exc)

    def report_failure(self, step: str | None, location: str | None, exc: BaseException) -> None:
        """Print the one-line failure record `skitflow run` shows to the user."""
        record = {
            "task": self.name,
            "step": step,
            "location": location,
            "error": redact(_describe(exc)),
        }
        hints = [p.hint for p in getattr(exc, "problems", []) if p.hint]
        if hints:
            record["hint"] = redact(hints[0])
        print(FAILURE_MARKER + json.dumps(record), file=sys.stderr, flush=True)

    def steps(self, frame: Any, history: list[dict[str, Any]]) -> Any:
        """Run the transform calls in order, logging rows in and out of each."""
        for call in self.calls:
            if call.step.kind != "transform" or call.stage is not None:
                continue
            started, rows_in = time.perf_counter(), len(frame)
            try:
                frame = call.step.run(frame, call.settings)  # type: ignore[attr-defined]
            except Exception as exc:
                self.failed(call, exc)
                raise
            missing = [c for c in call.step.produces(call.settings) if c not in frame.columns]
            if missing:  # the plan trusted this declaration when it checked later steps
                error = LookupError(
                    f"`{call.step.name}` declares that it produces column(s) "
                    f"{', '.join(f'`{c}`' for c in missing)} but did not make them; fix its "
                    "`produces` or its `run`")
                self.failed(call, error)
                raise error
            seconds = time.perf_counter() - started
            history.append({"step": call.step.name, "rows_in": rows_in, "rows_out": len(frame),
                            "seconds": round(seconds, 3)})
            self.log(f"{call.step.name}: {rows_in} -> {len(frame)} rows ({seconds:.2f}s)")
        return frame

    def finish_dataset(self, frame: Any, out: Any, history: list[dict[str, Any]]) -> tuple[int, bool]:
        file_format = self.spec.get("format", "parquet")
        write_dataset(frame, out.path, file_format)
        out.metadata.update(bounded({"rows": len(frame), "columns": [str(c) for c in frame.columns],
                                     "format": file_format, "steps": history}))
        self.record_identity(out)
        probe = True
        if self.spec.get("probe"):
            from skitflow.expressions import parse

            probe = parse(self.spec["probe"]).holds(  # unknown (a null) is not true
                {"rows": len(frame), "columns": [str(c) for c in frame.columns]})
            self.log(f"condition `{self.spec['probe']}` is {probe}")
        return len(frame), probe


def _load_step(call: Mapping[str, Any]) -> type[Step]:
    """The step a call names, found by kind and name through the registry, as at compile time.

    The package records only what the registry needs (kind, name, distributing package), never a
    module path, so moving a step's code or installing a plugin differently changes no package.
    """
    from skitflow.steps.registry import default_registry

    kind, name, package = Kind(call["kind"]), call["step"], call.get("package") or ""
    entry = default_registry().get(name, kind)
    if entry is None:
        provider = f"package `{package}`" if package else "the package that provides it"
        raise LookupError(
            f"{kind.value} step `{name}` is not installed where this task runs; install {provider} "
            "into the runtime image (docs/plugins.md) and rebuild it"
        )
    if package and _dist_key(entry.package) != _dist_key(package):
        raise LookupError(
            f"{kind.value} step `{name}` comes from package `{entry.package}` where this task runs, "
            f"but the pipeline was compiled with it from `{package}`; install the same package in "
            "both places"
        )
    return entry.step


def _dist_key(name: str) -> str:
    """A distribution name as PEP 503 compares them (`Foo_Bar` and `foo-bar` are one package)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _describe(exc: BaseException) -> str:
    """One readable line: settings errors as `field: message`, ours as they are, others typed."""
    from pydantic import ValidationError

    from skitflow.errors import SkitflowError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"`{'.'.join(map(str, e['loc'])) or 'settings'}`: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False, include_input=False))
    if isinstance(exc, SkitflowError | ValueError | KeyError | LookupError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_identity(run: Mapping[str, str]) -> dict[str, str]:
    """The run's identity from the values of kfp's run placeholders the task received.

    `created` is the run's creation time (RFC 3339, UTC) and `date` its day: one value for every
    task of a run, however long it runs. A value still looking like `{{$.…}}` was not
    substituted: the backend is too old to run this package.
    """
    identity: dict[str, str] = {}
    for key, value in run.items():
        if value.startswith("{{$."):
            raise ValueError(f"the run placeholder {value} reached the task unsubstituted; the "
                             "Kubeflow Pipelines backend must substitute run placeholders (2.5.0 "
                             "or newer)")
        identity[key] = value
    if "created" in identity:
        created = _dt.datetime.fromisoformat(identity["created"].replace("Z", "+00:00"))
        identity["date"] = created.astimezone(_dt.UTC).date().isoformat()
    return identity


def _begin(spec: str, params: Mapping[str, Any], artifact: Any,
           identity: Mapping[str, str] | None = None) -> _TaskRun:
    return _TaskRun(spec, params, getattr(artifact, "path", "") or "", identity)


Outputs = collections.namedtuple("Outputs", ["rows", "probe"])


def prepare(out: Any, spec: str, params: Mapping[str, Any],
            identity: Mapping[str, str] | None = None) -> Outputs:
    run = _begin(spec, params, out, identity)
    source = run.calls[0]
    started = time.perf_counter()
    try:
        frame = source.step.run(source.settings, run.ctx)  # type: ignore[attr-defined]
    except Exception as exc:
        run.failed(source, exc)
        raise
    history = [{"step": source.step.name, "rows_in": 0, "rows_out": len(frame),
                "seconds": round(time.perf_counter() - started, 3)}]
    frame = run.steps(frame, history)
    return Outputs(*run.finish_dataset(frame, out, history))


def transform(data: Any, out: Any, spec: str, params: Mapping[str, Any],
              identity: Mapping[str, str] | None = None) -> Outputs:
    run = _begin(spec, params, out, identity)
    frame = read_dataset(data.path)
    history: list[dict[str, Any]] = []
    frame = run.steps(frame, history)
    return Outputs(*run.finish_dataset(frame, out, history))


def sink(data: Any, spec: str, params: Mapping[str, Any],
         identity: Mapping[str, str] | None = None) -> str:
    run = _begin(spec, params, data, identity)
    call = run.calls[0]
    role = run.spec.get("role", "dataset")
    metadata = dict(data.metadata or {})
    artifact = ArtifactFile(data.path, role, str(metadata.get("format", "")), metadata)
    try:
        where = call.step.run(artifact, call.settings, run.ctx)  # type: ignore[attr-defined]
    except Exception as exc:
        run.failed(call, exc)
        raise
    run.log(f"{call.step.name}: wrote {role} to {where}")
    if run.identity:
        run.log(f"run identity: {json.dumps(run.identity, sort_keys=True)}")
    return str(where)


SplitOutputs = collections.namedtuple("SplitOutputs", ["train_rows", "test_rows"])


def split(data: Any, train: Any, test: Any, spec: str, params: Mapping[str, Any],
          identity: Mapping[str, str] | None = None) -> SplitOutputs:
    run = _begin(spec, params, train, identity)
    call = run.calls[0]
    frame = read_dataset(data.path)
    try:
        train_frame, test_frame = call.step.run(frame, call.settings)  # type: ignore[attr-defined]
    except Exception as exc:
        run.failed(call, exc)
        raise
    chain = run.chain()
    if chain.steps:  # fitted steps of a recipe without a trainer: fit on train, apply to test
        from skitflow.steps.bundle import Rows

        try:
            train_frame = chain.fit(Rows(train_frame), run.log).frame
            test_frame = chain.apply(Rows(test_frame), raw=False).frame
        except Exception as exc:
            run.failed(call, exc)
            raise
    file_format = run.spec.get("format", "parquet")
    for artifact, part in ((train, train_frame), (test, test_frame)):
        write_dataset(part, artifact.path, file_format)
        artifact.metadata.update(bounded({"rows": len(part), "columns": [str(c) for c in part.columns],
                                          "format": file_format}))
    run.record_identity(train, test)
    run.log(f"{call.step.name}: {len(frame)} rows -> train {len(train_frame)}, test {len(test_frame)}")
    return SplitOutputs(len(train_frame), len(test_frame))


def train(train: Any, model: Any, spec: str, params: Mapping[str, Any],
          identity: Mapping[str, str] | None = None) -> None:
    """Fit the model-stage steps on the train rows, train, and write one model bundle."""
    from skitflow.steps.bundle import train_bundle

    run = _begin(spec, params, model, identity)
    call = run.calls[-1]  # the trainer; the transforms before it go into the bundle
    frame = read_dataset(train.path)
    started = time.perf_counter()
    try:
        metadata = train_bundle(frame, run.chain(), call.step, call.settings, model.path, run.ctx,
                                {"recipe_hash": run.spec["recipe_hash"]})
    except Exception as exc:
        run.failed(call, exc)
        raise
    summary = {key: metadata.get(key) for key in _MODEL_SUMMARY if key in metadata}
    model.metadata.update(bounded({**summary, "format": "skitflow-bundle"}))
    run.record_identity(model)
    run.log(f"{call.step.name}: trained on {len(frame)} rows ({time.perf_counter() - started:.2f}s)")


#: What the model artifact's metadata shows (the bundle file holds everything else).
_MODEL_SUMMARY = ("recipe", "recipe_hash", "run_id", "trainer", "library", "task", "target",
                  "classes", "features", "features_out", "steps", "params", "n_rounds",
                  "train_rows", "train_data_sha256", "bundle_bytes", "versions")

EvalOutputs = collections.namedtuple("EvalOutputs", ["passed", "score"])


def evaluate(model: Any, test: Any, metrics: Any, classification: Any, report: Any, spec: str,
             params: Mapping[str, Any], identity: Mapping[str, str] | None = None) -> EvalOutputs:
    run = _begin(spec, params, metrics, identity)
    call = run.calls[0]
    frame = read_dataset(test.path)
    try:
        result = call.step.run(model.path, frame, call.settings, run.ctx)  # type: ignore[attr-defined]
    except Exception as exc:
        run.failed(call, exc)
        raise
    for name, value in sorted(result.scalars.items()):
        metrics.log_metric(name, float(value))
    if result.confusion_matrix is not None:
        labels, matrix = result.confusion_matrix
        classification.log_confusion_matrix([str(x) for x in labels], [[int(v) for v in row] for row in matrix])
    write_text(metrics.path, json.dumps(_json_safe({"metrics": result.scalars, **result.details}),
                                        indent=2, sort_keys=True))
    metrics.metadata["format"] = "json"
    verdict = None
    if run.spec.get("gate"):
        try:
            verdict = _gate(run, call, frame, result.scalars)
        except Exception as exc:
            run.failed(call, exc)
            raise
        # Metrics hold numbers only: the verdict as 0/1 there, the reason on the report.
        metrics.log_metric("gate_passed", 1.0 if verdict.passed else 0.0)
        if verdict.champion_score is not None:
            metrics.log_metric("gate_champion_score", float(verdict.champion_score))
        report.metadata["gate"] = bounded(_json_safe(verdict.to_json()))
        _record_gate(metrics.path, verdict.to_json())
        run.log(f"gate {'passed' if verdict.passed else 'FAILED'}: {verdict.reason}")
    try:
        page = result.report.render(verdict.to_json() if verdict else None) \
            if result.report is not None else result.report_html
    except Exception as exc:
        run.failed(call, exc)
        raise
    write_text(report.path, page)
    report.metadata["format"] = "html"
    run.record_identity(report)  # not on Metrics: the UI shows its metadata as scalar metrics
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.scalars.items()))
    run.log(f"{call.step.name}: {shown}")
    if verdict is None:
        return EvalOutputs(True, float("nan"))
    return EvalOutputs(verdict.passed, verdict.score)


def _gate(run: _TaskRun, call: _Call, test: Any, scalars: Mapping[str, float]) -> Any:
    """The gate's verdict: bounds, then (with `beat`) the published model scored on the same
    test rows by the same evaluator (the same bundle code), when one is published."""
    import dataclasses

    from skitflow.recipe.templating import resolve_runtime
    from skitflow.steps.gate import decide, metric_direction

    gate = resolve_runtime(run.spec["gate"], run.values, run.run_names)
    metric = gate["metric"]
    if metric not in scalars:
        raise LookupError(f"gate metric `{metric}` was not computed; available: "
                          f"{', '.join(sorted(scalars))}")
    champion = None
    if gate.get("beat"):
        path = _published_model(gate["beat"], run)
        if path is None:
            run.log(f"gate: no published model at {gate['beat']} yet")
        else:
            ctx = dataclasses.replace(run.ctx, log=lambda line: run.log(f"published model: {line}"))
            try:
                champion = call.step.run(path, test, call.settings, ctx).scalars  # type: ignore[attr-defined]
            except Exception as exc:
                from skitflow.errors import StepFailed

                raise StepFailed(
                    f"gate: the published model at {gate['beat']} could not be scored on this "
                    f"test set: {_describe(exc)}",
                    hint="publish a model this recipe can score there, or remove `beat:`") from None
    direction = metric_direction(metric, getattr(call.step, "metrics", None) or {})
    return decide(metric, direction, scalars, minimum=gate.get("min"), maximum=gate.get("max"),
                  beat=gate.get("beat"), by=float(gate.get("by") or 0.0), champion=champion)


def _published_model(where: str, run: _TaskRun) -> str | None:
    """A local path of the bundle published at `where`, or None when nothing is there yet."""
    if where.lower().startswith("s3://"):
        from skitflow.connectors.s3 import open_if_present

        return open_if_present(where, os.path.join(run.ctx.workdir, ".published"), environ=os.environ)
    path = os.path.expanduser(where.removeprefix("file://"))
    if os.path.isdir(path):
        raise IsADirectoryError(f"gate: `beat: {where}` is a folder; name the model bundle file")
    return path if os.path.exists(path) else None


PredictOutputs = collections.namedtuple("PredictOutputs", ["rows"])


def predict(data: Any, model: Any, out: Any, spec: str, params: Mapping[str, Any]) -> PredictOutputs:
    """Score the dataset's rows with a bundle: the one trained in this run (`model`), whose
    preprocessing before the split already ran on these rows, or one named by path or URI,
    which replays its whole preprocessing on them."""
    from skitflow.steps.bundle import load_bundle

    run = _begin(spec, params, out)
    settings = run.spec["predict"]
    frame = read_dataset(data.path)
    started = time.perf_counter()
    try:
        path = model.path if model is not None else _model_file(settings["model"], run)
        bundle = load_bundle(path)
        scored = bundle.predictions(frame, output=settings["output"], scores=settings["scores"],
                                    score_prefix=settings["score_prefix"], raw=model is None)
    except Exception as exc:
        run.report_failure("predict", settings.get("location"), exc)
        raise
    file_format = run.spec.get("format", "parquet")
    write_dataset(scored, out.path, file_format)
    out.metadata.update(bounded({"rows": len(scored), "columns": [str(c) for c in scored.columns],
                                 "format": file_format, "model": settings["model"]}))
    seconds = time.perf_counter() - started
    run.log(f"predict: scored {len(scored):,} rows in {seconds:.2f}s "
            f"({len(scored) / max(seconds, 1e-9):,.0f} rows/s)")
    return PredictOutputs(len(scored))


def _model_file(where: str, run: _TaskRun) -> str:
    """A local path for the bundle at `where` (a path, a file:// URL or an s3:// URI)."""
    if where.lower().startswith("s3://"):
        from skitflow.connectors.s3 import open_for_read

        return open_for_read(where, os.path.join(run.ctx.workdir, ".model"), environ=os.environ)
    return where.removeprefix("file://")


def _record_gate(path: str, verdict: dict[str, Any]) -> None:
    """Add the gate's verdict to metrics.json, so sinks of the metrics (the sql sink) know it."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    document["gate"] = verdict
    write_text(path, json.dumps(_json_safe(document), indent=2, sort_keys=True))


def _json_safe(value: Any) -> Any:
    """Artifact metadata must be JSON: numpy scalars and tuples are converted."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
