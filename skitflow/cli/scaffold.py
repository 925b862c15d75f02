"""What `skitflow init` writes: a small working project, data included.

The dataset is generated here, deterministically, so a new project needs no download: call
records of a voice-AI contact centre (channel, duration, turns, silence, hour) and how each call
ended. The outcome is learnable from the columns, so the shipped recipe's gate passes at once.
"""

from __future__ import annotations

import csv
import io
import random

OUTCOMES = ("resolved", "escalated", "abandoned")
CHANNELS = ("phone", "app", "web")
DATA_ROWS = 1200
DATA_PATH = "data/calls.csv"


def calls_csv(rows: int = DATA_ROWS, seed: int = 7) -> str:
    """A CSV of `rows` synthetic calls; the same text for the same arguments."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["call_id", "channel", "duration_s", "turns", "silence_ratio", "hour", "outcome"])
    for index in range(rows):
        outcome = rng.choices(OUTCOMES, weights=(0.55, 0.3, 0.15))[0]
        duration = {"resolved": 180, "escalated": 420, "abandoned": 45}[outcome] * rng.uniform(0.3, 2.0)
        turns = max(1, int(duration / 20 + rng.gauss(0, 2)))
        silence = {"resolved": 0.1, "escalated": 0.2, "abandoned": 0.45}[outcome] + rng.uniform(-0.15, 0.15)
        channel = rng.choice(CHANNELS)
        writer.writerow([f"c{index:05d}", channel, f"{duration:.1f}", turns, f"{silence:.3f}",
                         rng.randrange(24), outcome])
    return out.getvalue()


def recipe_yaml(name: str) -> str:
    return f"""\
# yaml-language-server: $schema=recipe.schema.json
# Run it:  skitflow run recipe.yaml      Draw it:  skitflow graph recipe.yaml
apiVersion: skitflow/v1
name: {name}
description: Predict how a call ends from its metadata.
parameters:
  test_size: {{type: float, default: 0.25, description: Fraction of rows held out for evaluation.}}
  min_f1: {{type: float, default: 0.6, description: Smallest macro F1 for the model to be published.}}
source:
  csv:
    path: {DATA_PATH}
    columns: [call_id, channel, duration_s, turns, silence_ratio, hour, outcome]
steps:
  - drop_duplicates: {{subset: [call_id]}}
  - dropna: {{columns: [outcome]}}
  - drop_columns: {{columns: [call_id]}}
  - one_hot: {{columns: [channel]}}
sinks:
  - file: {{path: "published/{{{{ recipe.name }}}}/dataset.parquet", format: parquet}}
  - file: {{path: "published/{{{{ recipe.name }}}}/model.json"}}
    input: model
split:
  train_test: {{test_size: "{{{{ params.test_size }}}}", stratify: outcome, seed: 7}}
trainer:
  xgboost:
    target: outcome
    params: {{n_estimators: 100, max_depth: 4, learning_rate: 0.2}}
evaluator:
  classification: {{target: outcome}}
  gate: {{metric: f1_macro, min: "{{{{ params.min_f1 }}}}"}}
"""


SKITFLOW_TOML = """\
# Where `skitflow submit` sends this project's recipes (flags and KFP_* variables override).
# host = "https://kubeflow.example.com/pipeline"
# namespace = "my-team"
experiment = "Default"
"""

GITIGNORE = """\
# local runs, their cache, and published outputs of `skitflow run`
runs/
published/
"""


def readme(name: str) -> str:
    return f"""\
# {name}

A [skitflow](https://github.com/skitflow/skitflow) project made by `skitflow init`.

```
skitflow validate recipe.yaml     # check it: errors point at file:line:col
skitflow run recipe.yaml          # run it on this machine; results under runs/ and published/
skitflow graph recipe.yaml        # draw the pipeline (Mermaid)
skitflow submit recipe.yaml --host https://kubeflow.example   # run it on Kubeflow
```

`{DATA_PATH}` holds {DATA_ROWS} generated calls. Point `source:` at your own data (CSV, S3 or
SQL), edit `steps:`, and rerun: finished tasks whose inputs did not change are reused.
`recipe.schema.json` lets editors complete and check the recipe (the `$schema` line).
"""


def project_files(name: str, schema_text: str) -> dict[str, str]:
    """Relative path -> content of every file `skitflow init` writes."""
    return {
        "recipe.yaml": recipe_yaml(name),
        "recipe.schema.json": schema_text,
        DATA_PATH: calls_csv(),
        "skitflow.toml": SKITFLOW_TOML,
        ".gitignore": GITIGNORE,
        "README.md": readme(name),
    }
