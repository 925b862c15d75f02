"""Local run history: the summary.json of every `skitflow run` under a runs folder, read back.

`skitflow runs`, `skitflow runs compare` and `skitflow docs` read runs through here only, so a
field added to the summary is shown the same way everywhere. Summaries of older skitflow versions
lack some fields; they read as unknown, never as an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skitflow.errors import SkitflowError, did_you_mean

SUMMARY = "summary.json"
#: the metrics shown in one-line listings, in this order, when a run has them
KEY_METRICS = ("f1_macro", "accuracy", "roc_auc", "rmse", "r2")


@dataclass(frozen=True)
class RunRecord:
    """One local run as its summary.json describes it."""

    id: str  # the run folder's name
    folder: Path
    summary: dict[str, Any] = field(repr=False)

    @property
    def recipe(self) -> str:
        return str(self.summary.get("recipe", "?"))

    @property
    def status(self) -> str:
        if "status" in self.summary:
            return str(self.summary["status"])
        return "succeeded" if self.summary.get("succeeded") else "failed"

    @property
    def started(self) -> str:
        return str(self.summary.get("started") or _mtime_iso(self.folder / SUMMARY))

    @property
    def seconds(self) -> float | None:
        value = self.summary.get("seconds")
        return float(value) if isinstance(value, int | float) else None

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in (self.summary.get("metrics") or {}).items()
                if isinstance(v, int | float)}

    @property
    def gate(self) -> str:
        gate = self.summary.get("gate")
        if not gate:
            return ""
        return "passed" if gate.get("passed") else "failed"

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.summary.get("parameters") or {})

    @property
    def recipe_hash(self) -> str:
        return str(self.summary.get("recipe_hash") or "")

    @property
    def sources(self) -> dict[str, Any]:
        return dict(self.summary.get("sources") or {})

    def key_metrics(self) -> dict[str, float]:
        metrics = self.metrics
        return {name: metrics[name] for name in KEY_METRICS if name in metrics}


def _mtime_iso(path: Path) -> str:
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(folder: Path) -> RunRecord | None:
    try:
        summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a run still going, or one killed before it wrote its summary
    return RunRecord(folder.name, folder, summary) if isinstance(summary, dict) else None


def list_runs(base: Path = Path("runs"), recipe: str | None = None) -> list[RunRecord]:
    """Every run under `base` with a readable summary, newest first."""
    if not base.is_dir():
        return []
    records = [r for r in (_read(p) for p in _run_folders(base)) if r is not None]
    if recipe is not None:
        records = [r for r in records if r.recipe == recipe]
    return sorted(records, key=lambda r: (r.started, r.id), reverse=True)


def _run_folders(base: Path) -> Iterator[Path]:
    with os.scandir(base) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                yield Path(entry.path)


def find_run(ref: str, base: Path = Path("runs")) -> RunRecord:
    """A run by folder name, folder path, or unique prefix of its name; a clear error otherwise."""
    as_path = Path(ref)
    if (as_path / SUMMARY).is_file():
        record = _read(as_path)
        if record is not None:
            return record
    records = list_runs(base)
    exact = [r for r in records if r.id == ref]
    matches = exact or [r for r in records if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        hint = did_you_mean(ref, [r.id for r in records]) or (
            f"`skitflow runs` lists the {len(records)} runs under {base}" if records
            else f"no runs under {base} yet: `skitflow run RECIPE` makes one")
        raise SkitflowError(f"no run `{ref}` under {base}", hint=hint)
    raise SkitflowError(f"`{ref}` matches {len(matches)} runs: "
                        f"{', '.join(r.id for r in matches[:5])}", hint="give more of the name")


def latest_by_recipe(records: list[RunRecord]) -> dict[str, RunRecord]:
    """The newest run of each recipe (records are newest first)."""
    latest: dict[str, RunRecord] = {}
    for record in records:
        latest.setdefault(record.recipe, record)
    return latest


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(f"{prefix}.{key}", item))
        return out
    return {prefix: value}


def comparison(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Rows for `runs compare`: one per field that any run has, the runs' values side by side.

    Each row: `field`, `values` (one per run, None where absent), `differs`, and for metrics the
    `deltas` against the first run.
    """
    columns: list[dict[str, Any]] = []
    for record in records:
        flat: dict[str, Any] = {"status": record.status, "recipe": record.recipe,
                                "recipe_hash": record.recipe_hash or None,
                                "seconds": record.seconds, "gate": record.gate or None}
        flat.update(_flat("params", record.parameters) if record.parameters else {})
        for name, source in record.sources.items():
            flat.update(_flat(f"source.{name}", source))
        flat.update({f"metric.{k}": v for k, v in sorted(record.metrics.items())})
        columns.append(flat)
    order: list[str] = []
    for flat in columns:
        order += [name for name in flat if name not in order]
    rows = []
    for name in order:
        values = [flat.get(name) for flat in columns]
        row: dict[str, Any] = {"field": name, "values": values,
                               "differs": len({json.dumps(v, sort_keys=True) for v in values}) > 1}
        if name.startswith("metric.") and isinstance(values[0], int | float):
            row["deltas"] = [None if not isinstance(v, int | float) else v - values[0] for v in values]
        rows.append(row)
    return rows
