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

from skitflow.connectors.s3_uri import is_s3_uri
from skitflow.steps.base import ArtifactFile, Kind, RunContext, Step
from skitflow.util.atomic import write_text
from skitflow.util.datasets import NotStreamable, chunk_writer, read_dataset, write_dataset
from skitflow.util.imports import gc_paused
from skitflow.util.metadata import bounded
from skitflow.util.overlap import read_ahead, side_by_side, write_behind
from skitflow.util.redact import redact

FAILURE_MARKER = "SKITFLOW-FAILURE "
#: what an empty source with `on_empty: skip` says, in the task log and the run's summary
NO_ROWS = "no rows: nothing to train"


@dataclass
class _Call:
    step: Step
    settings: Any
    location: str
    stage: str | None = None  # see StepCall.stage: "prepare" | "model" | None
    on: str | None = None  # an expect on a split: which output it checks (train or test)
    # `location` is the item's place in the recipe ("steps[3]", StepCall.at); `skitflow run`
    # maps it to file:line:col (Plan.locations)


class _TaskRun:
    """A task's parsed spec, resolved parameters and steps."""

    def __init__(self, spec_json: str, params: Mapping[str, Any], artifact_uri: str,
                 identity: Mapping[str, str] | None = None) -> None:
        from skitflow.recipe.coerce import coerce_value
        from skitflow.recipe.templating import resolve_runtime

        self.spec = json.loads(spec_json)
        self.name = self.spec["task"]
        types = self.spec.get("param_types", {})
        try:
            values = {
                name: coerce_value(name, types[name], value)
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
        self.checks: Any = None  # the task's KFP Metrics output for `expect` results, if any
        self.expectations: list[dict[str, Any]] = []  # results so far, upstream ones included
        for call in self.spec["calls"]:
            try:  # run-time parameter values are checked against the step's settings here
                resolved = resolve_runtime(call["settings"], values, self.run_names)
                step = _load_step(call)()
                settings = step.Settings.model_validate(resolved)
            except Exception as exc:
                self.report_failure(call["step"], call.get("at"), exc)
                raise
            self.calls.append(_Call(step, settings, call.get("at", ""), call.get("stage"),
                                    call.get("on")))

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
            if call.step.kind != "transform" or call.stage is not None or call.on:
                continue
            started, rows_in = time.perf_counter(), len(frame)
            if call.step.reports_checks:
                self.expect(call, frame)
                history.append({"step": call.step.name, "rows_in": rows_in, "rows_out": rows_in,
                                "seconds": round(time.perf_counter() - started, 3)})
                continue
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

    def expect(self, call: _Call, frame: Any, where: str = "") -> None:
        """Run an `expect` call: record every check as a metric, log failures, stop on errors."""
        from skitflow.steps.expect import ExpectationsFailed, check_frame, failure_message

        results = check_frame(frame, call.settings)
        taken = {r["name"] for r in self.expectations}
        for result in results:
            base = f"{where}.{result.name}" if where else result.name
            result.name, n = base, 2
            while result.name in taken:
                result.name, n = f"{base}-{n}", n + 1
            taken.add(result.name)
            self.expectations.append({**result.record(), "task": self.name})
        failed = [r for r in results if not r.passed]
        self.log(f"expect{f' on {where}' if where else ''}: {len(results) - len(failed)} of "
                 f"{len(results)} checks passed")
        self.write_checks()
        if not failed:
            return
        message = failure_message(failed, len(results), where)
        if call.settings.severity == "warn":
            for line in message.splitlines():
                self.log(f"WARNING {line.strip()}")
            return
        error = ExpectationsFailed(message, hint="fix the data upstream, or set `severity: warn` "
                                   "on this expect to record the failures and go on")
        self.failed(call, error)
        raise error

    def inherit(self, artifact: Any) -> None:
        """Carry the expectations recorded upstream (artifact metadata) on to this task's outputs."""
        self.expectations.extend((getattr(artifact, "metadata", None) or {}).get("expectations", []))

    def write_checks(self) -> None:
        """This task's own results as KFP Metrics (failing rows per check; 0 is a pass)."""
        if self.checks is None:
            return
        own = [r for r in self.expectations if r.get("task") == self.name]
        for record in own:
            self.checks.log_metric(record["name"], float(record["failing"]))
        write_text(self.checks.path, json.dumps({"expectations": own}, indent=2, sort_keys=True))
        self.checks.metadata["format"] = "json"

    def finish_dataset(self, frame: Any, out: Any, history: list[dict[str, Any]]) -> tuple[int, bool]:
        write_dataset(frame, out.path, self.spec.get("format", "parquet"))
        return self.describe_dataset(len(frame), [str(c) for c in frame.columns], out, history)

    def describe_dataset(self, rows: int, columns: list[str], out: Any,
                         history: list[dict[str, Any]]) -> tuple[int, bool]:
        """The written dataset's metadata, and the task's `probe` condition on it."""
        checked = {"expectations": self.expectations} if self.expectations else {}
        out.metadata.update(bounded({"rows": rows, "columns": columns,
                                     "format": self.spec.get("format", "parquet"),
                                     "steps": history, **checked}))
        self.record_identity(out)
        probe = True
        if self.spec.get("probe"):
            from skitflow.expressions import parse

            probe = parse(self.spec["probe"]).holds(  # unknown (a null) is not true
                {"rows": rows, "columns": columns})
            self.log(f"condition `{self.spec['probe']}` is {probe}")
        return rows, probe

    def stream(self, source: _Call, out: Any) -> tuple[int, bool] | None:
        """Source and transforms chunk by chunk, each chunk written when done, so memory is
        bounded by the chunk size, not the data; None (nothing published) when a step needs all
        rows at once, or when the chunks could not give exactly the whole frame's result: the
        caller then runs the task on all rows, as without streaming (and reports its errors)."""
        rows = stream_rows()
        if rows is None:
            return None
        calls = [c for c in self.calls[1:]
                 if c.step.kind == "transform" and c.stage is None and not c.on]
        if any(c.step.reports_checks for c in calls):
            return None
        streamers = [c.step.streamer(c.settings) for c in calls]  # type: ignore[attr-defined]
        if any(s is None for s in streamers):
            return None
        batches = source.step.batches(source.settings, self.ctx, rows)  # type: ignore[attr-defined]
        if batches is None:
            return None
        counts = [[0, 0, 0.0] for _ in range(len(calls) + 1)]  # rows in, rows out, seconds
        columns: list[str] = []
        try:
            # the next chunk is parsed, and the last one written, while this one is transformed
            with chunk_writer(out.path, self.spec.get("format", "parquet")) as write_now, \
                    write_behind(write_now) as write, read_ahead(batches) as chunks:
                while True:
                    frame = next(chunks, None)
                    if frame is None:
                        break
                    counts[0][1] += len(frame)
                    for count, call, step in zip(counts[1:], calls, streamers, strict=True):
                        started, count[0] = time.perf_counter(), count[0] + len(frame)
                        frame = step(frame)  # type: ignore[misc]
                        if any(c not in frame.columns for c in call.step.produces(call.settings)):
                            raise NotStreamable(f"`{call.step.name}` did not make its columns")
                        count[1] += len(frame)
                        count[2] += time.perf_counter() - started
                    columns = [str(c) for c in frame.columns]
                    write(frame)
                counts[0][2] = chunks.seconds  # the source's own time, in the reading thread
                if counts[0][1] == 0:  # the empty source's rules (on_empty) are the other path's
                    raise NotStreamable("the source returned no rows")
        except Exception as exc:  # noqa: BLE001 - the whole-frame run reports real errors
            self.log(f"streaming stopped ({_describe(exc)}); running on all rows at once")
            return None
        names = [source.step.name, *(c.step.name for c in calls)]
        history = [{"step": name, "rows_in": 0 if i == 0 else int(n_in), "rows_out": int(n_out),
                    "seconds": round(seconds, 3)}
                   for i, (name, (n_in, n_out, seconds)) in enumerate(zip(names, counts, strict=True))]
        for entry in history[1:]:
            self.log(f"{entry['step']}: {entry['rows_in']} -> {entry['rows_out']} rows "
                     f"({entry['seconds']:.2f}s)")
        self.log(f"streamed {counts[0][1]} rows in chunks of {rows}")
        return self.describe_dataset(int(counts[-1][1]), columns, out, history)


#: Rows per chunk when the data-prep task streams (see `_TaskRun.stream`); 0 turns streaming off.
STREAM_ROWS_ENV = "SKITFLOW_STREAM_ROWS"
STREAM_ROWS = 262_144


def stream_rows() -> int | None:
    """The chunk size of a streamed data-prep task, or None when streaming is turned off."""
    value = os.environ.get(STREAM_ROWS_ENV, "").strip()
    try:
        rows = int(value) if value else STREAM_ROWS
    except ValueError:
        rows = STREAM_ROWS
    return rows if rows > 0 else None


def _load_step(call: Mapping[str, Any]) -> type[Step]:
    """The step a call names, found by kind and name through the registry, as at compile time.

    The package records only what the registry needs (kind, name, distributing package), never a
    module path, so moving a step's code or installing a plugin differently changes no package.
    A built-in step (package `skitflow`) is resolved by the registry's name table, importing its
    module alone; any other through entry-point discovery.
    """
    from skitflow.steps import registry

    kind, name, package = Kind(call["kind"]), call["step"], call.get("package") or ""
    if _dist_key(package) == registry.BUILTIN_PACKAGE:
        builtin = registry.builtin_step(kind, name)
        if builtin is not None:
            return builtin
    entry = registry.default_registry().get(name, kind)
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
           identity: Mapping[str, str] | None = None, frames: bool = True) -> _TaskRun:
    if frames:
        _import_frame_libraries()
    return _TaskRun(spec, params, getattr(artifact, "path", "") or "", identity)


def _import_frame_libraries() -> None:
    """Import pandas and pyarrow with the cyclic garbage collector paused (a task is a short
    process: see `gc_paused`)."""
    with gc_paused():
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401


Outputs = collections.namedtuple("Outputs", ["rows", "probe"])


def prepare(out: Any, spec: str, params: Mapping[str, Any], checks: Any = None,
            identity: Mapping[str, str] | None = None) -> Outputs:
    run = _begin(spec, params, out, identity)
    run.checks = checks
    source = run.calls[0]
    streamed = run.stream(source, out)
    if streamed is not None:
        return Outputs(*streamed)
    started = time.perf_counter()
    try:
        frame = source.step.run(source.settings, run.ctx)  # type: ignore[attr-defined]
    except Exception as exc:
        run.failed(source, exc)
        raise
    history = [{"step": source.step.name, "rows_in": 0, "rows_out": len(frame),
                "seconds": round(time.perf_counter() - started, 3)}]
    if len(frame) == 0:
        if run.spec.get("on_empty") != "skip":
            from skitflow.errors import StepFailed

            error = StepFailed(f"`{source.step.name}` returned no rows",
                                hint="check the query or path; set `on_empty: skip` on the source to "
                                "end such runs successfully instead")
            run.failed(source, error)
            raise error
        run.log(f"{NO_ROWS}: the source returned none, so every later step and task is skipped")
        return Outputs(*run.finish_dataset(frame, out, history))
    frame = run.steps(frame, history)
    return Outputs(*run.finish_dataset(frame, out, history))


def transform(data: Any, out: Any, spec: str, params: Mapping[str, Any], checks: Any = None,
              identity: Mapping[str, str] | None = None) -> Outputs:
    run = _begin(spec, params, out, identity)
    run.checks = checks
    run.inherit(data)
    frame = read_dataset(data.path)
    history: list[dict[str, Any]] = []
    frame = run.steps(frame, history)
    return Outputs(*run.finish_dataset(frame, out, history))


def sink(data: Any, spec: str, params: Mapping[str, Any],
         identity: Mapping[str, str] | None = None) -> str:
    run = _begin(spec, params, data, identity, frames=False)  # a sink copies files
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
          checks: Any = None, identity: Mapping[str, str] | None = None) -> SplitOutputs:
    run = _begin(spec, params, train, identity)
    run.checks = checks
    run.inherit(data)
    call = run.calls[0]
    frame = read_dataset(data.path)
    try:
        train_frame, test_frame = call.step.run(frame, call.settings)  # type: ignore[attr-defined]
    except Exception as exc:
        run.failed(call, exc)
        raise
    parts = {"train": train_frame, "test": test_frame}
    for check in run.calls[1:]:  # the split's `expect:` option, on train and/or test
        if check.stage is None:  # (checks see the split's rows before any fitted step)
            run.expect(check, parts[check.on or "train"], check.on or "")
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
    checked = {"expectations": run.expectations} if run.expectations else {}

    def publish(artifact: Any, part: Any) -> None:
        write_dataset(part, artifact.path, file_format)
        artifact.metadata.update(bounded({"rows": len(part), "columns": [str(c) for c in part.columns],
                                          "format": file_format, **checked}))

    # test is written on a second core while train is (pyarrow's writer releases the GIL)
    side_by_side(lambda: publish(test, test_frame), lambda: publish(train, train_frame))
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
                                {"model_hash": run.spec.get("model_hash")})
    except Exception as exc:
        run.failed(call, exc)
        raise
    summary = {key: metadata.get(key) for key in _MODEL_SUMMARY if key in metadata}
    model.metadata.update(bounded({**summary, "format": "skitflow-bundle"}))
    run.record_identity(model)
    run.log(f"{call.step.name}: trained on {len(frame)} rows ({time.perf_counter() - started:.2f}s)")


#: What the model artifact's metadata shows (the bundle file holds everything else).
_MODEL_SUMMARY = ("recipe", "model_hash", "run_id", "trainer", "library", "task", "target",
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
    # The artifact's file must exist even when only its metadata matters: kfp.local's cache treats
    # a cached artifact without its file as missing, so the evaluation was never reused.
    write_text(classification.path, json.dumps(_json_safe(dict(classification.metadata)), sort_keys=True))
    expectations = (test.metadata or {}).get("expectations", [])
    for record in expectations:  # checks that warned upstream are part of this model's record
        if not record["passed"]:
            metrics.log_metric(f"expect.{record['name']}", float(record["failing"]))
    details = {**result.details, **({"expectations": expectations} if expectations else {})}
    write_text(metrics.path, json.dumps(_json_safe({"metrics": result.scalars, **details}),
                                        indent=2, sort_keys=True))
    metrics.metadata["format"] = "json"
    verdict = None
    if run.spec.get("gate"):
        try:
            verdict = _gate(run, call, frame, result.scalars)
        except Exception as exc:
            run.failed(call, exc)
            raise
        _record_verdict(run, verdict, metrics, report)
    try:
        page = result.report.render(verdict.to_json() if verdict else None) \
            if result.report is not None else result.report_html
    except Exception as exc:
        run.failed(call, exc)
        raise
    write_text(report.path, with_section(page, expectations_html(expectations)))
    report.metadata["format"] = "html"
    run.record_identity(report)  # not on Metrics: the UI shows its metadata as scalar metrics
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.scalars.items()))
    run.log(f"{call.step.name}: {shown}")
    if verdict is None:
        return EvalOutputs(True, float("nan"))
    return EvalOutputs(verdict.passed, verdict.score)


def _record_verdict(run: _TaskRun, verdict: Any, metrics: Any, report: Any) -> None:
    """Metrics hold numbers only: the verdict as 0/1 there, the reason on the report; the whole
    verdict in metrics.json, so sinks of the metrics (the sql sink) know it."""
    metrics.log_metric("gate_passed", 1.0 if verdict.passed else 0.0)
    if verdict.champion_score is not None:
        metrics.log_metric("gate_champion_score", float(verdict.champion_score))
    report.metadata["gate"] = bounded(_json_safe(verdict.to_json()))
    _record_gate(metrics.path, verdict.to_json())
    run.log(f"gate {'passed' if verdict.passed else 'FAILED'}: {verdict.reason}")


def _gate(run: _TaskRun, call: _Call | None, test: Any, scalars: Mapping[str, float]) -> Any:
    """The gate's verdict: bounds, then (with `beat`) the published model scored on the same
    test rows by the same evaluator (the same bundle code), when one is published. A matrix
    sweep's chooser gets the sweep's evaluator call and test rows only when it has `beat:`."""
    import dataclasses

    from skitflow.recipe.templating import resolve_runtime
    from skitflow.steps.gate import decide, metric_direction

    gate = resolve_runtime(run.spec["gate"], run.values, run.run_names)
    metric = gate["metric"]
    if metric not in scalars:
        raise LookupError(f"gate metric `{metric}` was not computed; available: "
                          f"{', '.join(sorted(scalars))}")
    champion = None
    if gate.get("beat") and call is not None:
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
    declared = (getattr(call.step, "metrics", None) or {}) if call is not None else {}
    direction = metric_direction(metric, declared)
    return decide(metric, direction, scalars, minimum=gate.get("min"), maximum=gate.get("max"),
                  beat=gate.get("beat"), by=float(gate.get("by") or 0.0), champion=champion)


def _published_model(where: str, run: _TaskRun) -> str | None:
    """A local path of the bundle published at `where`, or None when nothing is there yet."""
    if is_s3_uri(where):
        from skitflow.connectors.s3 import open_if_present

        return open_if_present(where, os.path.join(run.ctx.workdir, ".published"), environ=os.environ)
    path = os.path.expanduser(where.removeprefix("file://"))
    if os.path.isdir(path):
        raise IsADirectoryError(f"gate: `beat: {where}` is a folder; name the model bundle file")
    return path if os.path.exists(path) else None


def select(models: list[Any], metrics_in: list[Any], model: Any, metrics: Any, report: Any, spec: str,
           params: Mapping[str, Any], identity: Mapping[str, str] | None = None,
           test: Any = None) -> EvalOutputs:
    """A matrix sweep: the branch whose model scores best passes on its model; every score is kept.
    With `test` (a gate with `beat:`) the published model is scored on it by the sweep's evaluator."""
    import html
    import shutil

    run = _begin(spec, params, metrics, identity)
    chooser = run.spec["select"]
    metric, labels = chooser["metric"], chooser["branches"]
    scores: list[tuple[str, float]] = []
    for label, artifact in zip(labels, metrics_in, strict=True):
        scalars = _read_json(artifact.path).get("metrics", {})
        if metric not in scalars:
            error = LookupError(f"select metric `{metric}` was not computed for branch `{label}`; "
                                f"available: {', '.join(sorted(scalars))}")
            run.report_failure(None, None, error)
            raise error
        scores.append((label, float(scalars[metric])))
    pick = max if chooser.get("mode", "max") == "max" else min
    winner = pick(range(len(scores)), key=lambda i: scores[i][1])
    chosen = models[winner]
    if os.path.isdir(chosen.path):
        shutil.copytree(chosen.path, model.path, dirs_exist_ok=True)
    else:
        shutil.copyfile(chosen.path, model.path)
    model.metadata.update(_json_safe({**(chosen.metadata or {}), "selected_branch": scores[winner][0],
                                      "selected_by": {metric: scores[winner][1]}}))
    best = _read_json(metrics_in[winner].path)
    for name, value in sorted(best.get("metrics", {}).items()):
        metrics.log_metric(name, float(value))
    for label, value in scores:
        metrics.log_metric(f"branch.{label}.{metric}", value)
    write_text(metrics.path, json.dumps(_json_safe({**best, "selected_branch": scores[winner][0],
                                                    "branches": dict(scores)}), indent=2, sort_keys=True))
    metrics.metadata["format"] = "json"
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{value:.4f}</td>"
                   f"<td>{'winner' if i == winner else ''}</td></tr>"
                   for i, (label, value) in enumerate(scores))
    write_text(report.path, f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(run.spec['recipe'])}"
               f": select by {html.escape(metric)}</title></head><body><h1>Branches by {html.escape(metric)} "
               f"({chooser.get('mode', 'max')})</h1><table><tr><th>branch</th><th>{html.escape(metric)}</th>"
               f"<th></th></tr>{rows}</table></body></html>\n")
    report.metadata["format"] = "html"
    for label, value in scores:
        run.log(f"branch {label}: {metric}={value:.4f}{' (selected)' if label == scores[winner][0] else ''}")
    if not run.spec.get("gate"):
        return EvalOutputs(True, scores[winner][1])
    try:
        call = run.calls[0] if test is not None and run.calls else None
        verdict = _gate(run, call, read_dataset(test.path) if call is not None else None,
                        best.get("metrics", {}))
    except Exception as exc:
        run.report_failure(None, None, exc)
        raise
    _record_verdict(run, verdict, metrics, report)
    return EvalOutputs(verdict.passed, verdict.score)


def with_section(page: str, section: str) -> str:
    """`section` inserted at the end of an HTML page's body (or appended to a fragment)."""
    at = page.rfind("</body>")
    return page + section if at < 0 else page[:at] + section + page[at:]


def expectations_html(expectations: list[dict[str, Any]]) -> str:
    """The data checks behind a model, as a section appended to the evaluator's report."""
    if not expectations:
        return ""
    import html

    rows = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(str(r.get('task', '')))}</td>"
        f"<td>{'passed' if r['passed'] else 'FAILED (' + html.escape(r['severity']) + ')'}</td>"
        f"<td>{int(r['failing'])}</td><td>{html.escape(redact(r['detail']))}</td></tr>"
        for r in expectations)
    return ("<section id=\"expectations\"><h2>Data expectations</h2><table><tr><th>check</th>"
            "<th>task</th><th>result</th><th>failing</th><th>detail</th></tr>" + rows
            + "</table></section>")


def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return dict(json.load(handle))


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
        run.report_failure("predict", settings.get("at"), exc)
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
    if is_s3_uri(where):
        from skitflow.connectors.s3 import open_for_read

        return open_for_read(where, os.path.join(run.ctx.workdir, ".model"), environ=os.environ)
    return where.removeprefix("file://")


def notify(status: Any, spec: str, identity: Mapping[str, str]) -> None:
    """The exit handler's task: tell the recipe's notify targets how the run ended.

    It knows the final status the backend gives it (state and error message) and the run's
    identity; not the metrics or the gate (see util.notify). It never fails: a notification that
    cannot be sent is logged, and the run's own status stays what the backend decided.
    """
    from skitflow.util.notify import (
        EXIT_HANDLER_NOTE,
        LOCAL_RUN_ENV,
        UI_URL_ENV,
        RunReport,
        Target,
        deliver,
    )

    def log(message: str) -> None:
        print(f"[notify] {redact(message)}", flush=True)

    if os.environ.get(LOCAL_RUN_ENV):
        log("skitflow run sends this run's notifications itself when the run ends")
        return
    try:
        data = json.loads(spec)
        run = run_identity(identity)
        state = str(getattr(status, "state", "") or "").upper()
        seconds = None
        if run.get("created"):
            created = _dt.datetime.fromisoformat(run["created"].replace("Z", "+00:00"))
            seconds = max(0.0, (_dt.datetime.now(_dt.UTC) - created).total_seconds())
        ui = os.environ.get(UI_URL_ENV, "").rstrip("/")
        report = RunReport(
            recipe=data["recipe"],
            status="succeeded" if state == "SUCCEEDED" else
            "interrupted" if state.startswith("CANCEL") else "failed",
            run_name=run.get("name", ""), run_id=run.get("id", ""),
            link=f"{ui}/#/runs/details/{run['id']}" if ui and run.get("id") else None,
            seconds=seconds, notes=[EXIT_HANDLER_NOTE])
        if report.status != "succeeded":
            message = getattr(status, "error_message", None) or f"the run ended {state or 'unknown'}"
            report.failure = {"task": None, "error": redact(str(message))}
        deliver(report, [Target.from_dict(t) for t in data["targets"]], environ=os.environ, log=log)
    except Exception as exc:  # the run's outcome is decided; a notification must not change it
        log(f"notifications not sent: {_describe(exc)}")


def _record_gate(path: str, verdict: dict[str, Any]) -> None:
    """Add the gate's verdict to metrics.json, so sinks of the metrics (the sql sink) know it."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    document["gate"] = verdict
    write_text(path, json.dumps(_json_safe(document), indent=2, sort_keys=True))


def _json_safe(value: Any) -> Any:
    """Artifact metadata must be JSON: numpy scalars and tuples are converted."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
