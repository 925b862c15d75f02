"""The evaluation report a reviewer reads: one standalone page, written as `report.html`.

Every table is a real HTML table (metrics, per-class scores, the confusion matrix, the gate's
verdict, champion vs challenger, features used and ignored, feature importance, parameters,
data sizes, library versions); only curves and the confusion heatmap are pictures, PNGs drawn
with matplotlib's Agg canvas (no display, no pyplot global state) inlined as data URIs, so the
page needs nothing from elsewhere. Sections are drawn when the page is rendered, after the gate
decided: scoring the published model for the gate draws nothing.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from skitflow.steps.base import RunContext
    from skitflow.steps.bundle import Bundle

#: Most rows a list of columns (features used, ignored) shows; the rest are counted.
MAX_LISTED = 200
#: Most features the importance table shows.
TOP_FEATURES = 25


@dataclass
class Report:
    """A page still to be drawn: its title, subtitle and sections (title, HTML-making callable)."""

    title: str
    subtitle: str
    scalars: dict[str, float]
    sections: list[tuple[str, Callable[[], str]]] = field(default_factory=list)

    def add(self, title: str, render: Callable[[], str]) -> None:
        self.sections.append((title, render))

    def render(self, gate: Mapping[str, Any] | None = None) -> str:
        """The page; with the gate's verdict (steps.gate.Verdict.to_json()) first, and champion
        vs challenger side by side when a published model was scored."""
        parts = []
        if gate is not None:
            parts.append(section("Gate", gate_table(gate)))
            if gate.get("champion_metrics"):
                parts.append(section("Champion vs challenger",
                                     champion_table(self.scalars, gate["champion_metrics"],
                                                    gate.get("beat") or "", gate.get("metric"))))
        parts += [section(title, render()) for title, render in self.sections]
        return page(self.title, self.subtitle, "".join(parts))


def subtitle(ctx: RunContext) -> str:
    parts = (f"recipe {ctx.recipe_name}", f"run {ctx.run_id}" if ctx.run_id else "", ctx.run_date)
    return " · ".join(str(part) for part in parts if part)


def page(title: str, sub: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1rem; }}
td, th {{ padding: .25rem .75rem; border-bottom: 1px solid #ddd; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.passed {{ color: #161; font-weight: bold; }} .failed {{ color: #b11; font-weight: bold; }}
img {{ max-width: 100%; }}
.sub {{ color: #666; }}
</style></head>
<body><h1>{html.escape(title)}</h1><p class="sub">{html.escape(sub)}</p>
{body}
</body></html>
"""


def section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "",
          row_header: bool = True) -> str:
    """An HTML table; numbers are right-aligned and formatted, everything is escaped. With
    `row_header`, each row's first cell is a header cell (`<th scope="row">`)."""
    head = "".join(f'<th scope="col">{html.escape(str(h))}</th>' for h in header)
    lines = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if i == 0 and row_header:
                cells.append(f'<th scope="row">{html.escape(str(value))}</th>')
            elif isinstance(value, int | float) and not isinstance(value, bool):
                cells.append(f'<td class="num">{fmt(value)}</td>')
            else:
                cells.append(f"<td>{html.escape('' if value is None else str(value))}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def fmt(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def metrics_table(scalars: Mapping[str, float]) -> str:
    return table(["metric", "value"], [(name, value) for name, value in scalars.items()])


def per_class_table(per_class: Mapping[str, Mapping[str, float]]) -> str:
    rows = [(label, s["precision"], s["recall"], s["f1"], int(s["support"]))
            for label, s in per_class.items()]
    return table(["class", "precision", "recall", "F1", "support"], rows)


def confusion_table(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """Rows: the true class; columns: the predicted class."""
    header = ["actual \\ predicted", *labels]
    return table(header, [(label, *map(int, row)) for label, row in zip(labels, matrix, strict=True)])


def gate_table(gate: Mapping[str, Any]) -> str:
    verdict = "passed" if gate.get("passed") else "FAILED"
    rows: list[tuple[str, Any]] = [("metric", gate.get("metric")),
                                   ("better when", gate.get("direction") or "unknown"),
                                   ("score", _number(gate.get("score")))]
    for bound in ("min", "max"):
        if gate.get(bound) is not None:
            rows.append((bound, float(gate[bound])))
    if gate.get("beat"):
        rows.append(("published model", gate["beat"]))
        rows.append(("published model's score", _number(gate.get("champion_score"))
                     if gate.get("champion") == "scored" else "none published yet"))
        rows.append(("must be better by", float(gate.get("by") or 0.0)))
    rows.append(("reason", gate.get("reason", "")))
    css = "passed" if gate.get("passed") else "failed"
    return f'<p class="{css}" id="gate-verdict">gate {verdict}</p>' + table(["", ""], rows)


def champion_table(challenger: Mapping[str, float], champion: Mapping[str, float], where: str,
                   gated: str | None) -> str:
    """Each metric of the new model (challenger) beside the published one's (champion)."""
    from skitflow.steps.gate import metric_direction

    rows = []
    for name in [*challenger, *(n for n in champion if n not in challenger)]:
        new, old = challenger.get(name, math.nan), champion.get(name, math.nan)
        direction = metric_direction(name, {})
        diff = new - old
        better = "" if direction is None or math.isnan(diff) else (
            "new" if (diff > 0) == (direction == "higher") and diff != 0 else
            "same" if diff == 0 else "published")
        rows.append((f"{name} (gate)" if name == gated else name, new, old, diff, better))
    return table(["metric", "challenger (this run)", f"champion ({where})", "difference", "better"],
                 rows)


def _number(value: Any) -> Any:
    return math.nan if value is None else float(value)


def model_sections(report: Report, bundle: Bundle, test_rows: int) -> None:
    """Features used and ignored, feature importance, parameters, data sizes, versions."""
    meta = bundle.metadata

    def features() -> str:
        used = [(name, "dense", "") for name in bundle.design.features]
        used += [(b["name"], "sparse block", f"{int(b['width']):,} columns") for b in bundle.design.blocks]
        ignored = sorted((meta.get("ignored_columns") or {}).items())
        parts = [f"<p>{len(used):,} input(s) used, {bundle.design.width:,} model columns; "
                 f"{len(ignored):,} column(s) ignored.</p>",
                 table(["used", "kind", "width"], used[:MAX_LISTED])]
        if len(used) > MAX_LISTED:
            parts.append(f"<p>... and {len(used) - MAX_LISTED:,} more</p>")
        if ignored:
            parts.append(table(["ignored", "reason"], ignored[:MAX_LISTED]))
            if len(ignored) > MAX_LISTED:
                parts.append(f"<p>... and {len(ignored) - MAX_LISTED:,} more</p>")
        return "".join(parts)

    def importance() -> str:
        ranked = bundle.feature_importance(TOP_FEATURES)
        what = "total gain" if bundle.model.library == "xgboost" else "mean |coefficient|"
        if not ranked:
            return "<p>The model relies on no feature (a constant model).</p>"
        return table(["feature", what], ranked, caption=f"top {len(ranked)} by {what}")

    def parameters() -> str:
        params = meta.get("params") or {}
        rows = [("trainer", meta.get("trainer")), ("library", meta.get("library")),
                *((str(k), _shown(v)) for k, v in sorted(params.items()))]
        for key in ("n_rounds", "best_iteration", "converged", "n_iter"):
            if meta.get(key) is not None:
                rows.append((key, _shown(meta[key])))
        return table(["parameter", "value"], rows)

    def sizes() -> str:
        rows: list[tuple[str, Any]] = [("train", int(meta.get("train_rows") or 0))]
        if meta.get("validation_rows"):
            rows += [("  of which fitted on", int(meta.get("fit_rows") or 0)),
                     ("  of which early-stopping validation", int(meta["validation_rows"]))]
        rows.append(("test", int(test_rows)))
        return table(["split", "rows"], rows)

    def versions() -> str:
        return table(["library", "version"], sorted((meta.get("versions") or {}).items()))

    report.add("Features", features)
    report.add("Feature importance", importance)
    report.add("Parameters", parameters)
    report.add("Data", sizes)
    report.add("Library versions", versions)


def _shown(value: Any) -> Any:
    return value if isinstance(value, int | float | str) and not isinstance(value, bool) else str(value)


# -- pictures ----------------------------------------------------------------------------------


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()
