"""Generated recipes: a CSV source followed by a chain of N transforms (scale and fusion).

The transforms cycle through five steps that can repeat any number of times and keep the
source's columns, so every generated recipe is valid whatever N is.
"""

from __future__ import annotations

from pathlib import Path

COLUMNS = ["ticket_id", "created_at", "subject", "channel", "priority", "customer_age",
           "account_months", "num_previous_tickets", "response_minutes", "label"]
CYCLE = [
    "strip: {columns: [subject]}",
    "lowercase: {columns: [subject]}",
    "fillna: {values: {response_minutes: 0}}",
    "filter_rows: {expr: \"account_months >= 0\"}",
    "regex_replace: {columns: [subject], pattern: '\\s+', replacement: ' '}",
]


def chain_recipe(steps: int, isolate: bool, data: str = "examples/data/tickets.csv") -> str:
    """Recipe text: source, `steps` transforms (each in its own task when `isolate`), no sink."""
    name = f"chain-{steps}-{'isolated' if isolate else 'fused'}"
    lines = [
        "apiVersion: skitflow/v1",
        f"name: {name}",
        "parameters:",
        f"  data: {{type: str, default: {data}}}",
        "source:",
        "  csv:",
        "    path: \"{{ params.data }}\"",
        f"    columns: [{', '.join(COLUMNS)}]",
        "steps:",
    ]
    for index in range(steps):
        lines.append(f"  - {CYCLE[index % len(CYCLE)]}")
        if isolate:
            lines.append("    isolate: true")
    return "\n".join(lines) + "\n"


def write_chain(folder: Path, steps: int, isolate: bool, data: str = "examples/data/tickets.csv") -> Path:
    """Write the chain recipe under `folder` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"chain-{steps}-{'isolated' if isolate else 'fused'}.yaml"
    path.write_text(chain_recipe(steps, isolate, data), encoding="utf-8")
    return path
