"""Text models: skitflow's tfidf + linear / xgboost against a hand-written scikit-learn script.

In one invocation, on one generated utterance-intent dataset (fixed seed, 6 intents carried by
words in noisy text, see examples/intents/make_utterances.py):

1. the hand-written script (`TfidfVectorizer` + `LogisticRegression`, the same split, the same
   settings, the model saved with joblib) as a fresh process;
2. `skitflow run` of the same work as a recipe, tfidf + linear;
3. `skitflow run` with tfidf + xgboost;

each measured as a whole process (wall time and peak memory via benchmarks/harness.py), with
F1-macro on the same test rows; ratios are skitflow / hand-written. Then the scoring side: a
bundle from step 2 scores 1,000,000 raw rows (`Bundle.predictions`, as `predict:` and
`skitflow predict` do) in a fresh process reporting rows/s and peak memory, and the size of each
trainer's bundle.

    /work/main/.venv/bin/python benchmarks/text_models.py            # ~10 minutes on 2 cores
    /work/main/.venv/bin/python benchmarks/text_models.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "examples" / "intents"))

from harness import machine_facts, measure  # noqa: E402
from make_utterances import make  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "raw" / "text_models"
SEED, TEST_SIZE, C, MIN_DF = 11, 0.2, 4.0, 2

RECIPE = """\
apiVersion: skitflow/v1
name: intents-{trainer}
source:
  csv: {{path: {data}}}
steps:
  - select_columns: {{columns: [utterance, intent]}}
  - tfidf: {{column: utterance, ngram_range: [1, 2], min_df: {min_df}, sublinear_tf: true}}
split:
  train_test: {{test_size: {test_size}, stratify: intent, seed: {seed}}}
trainer:
{trainer_block}
evaluator:
  classification: {{target: intent}}
sinks:
  - file: {{path: {out}/model-{trainer}.zip}}
    input: model
"""
TRAINERS = {
    "linear": f"  linear: {{target: intent, C: {C}}}",
    "xgboost": "  xgboost: {target: intent, params: {n_estimators: 200, max_depth: 6, learning_rate: 0.3}}",
}

HAND_WRITTEN = textwrap.dedent(f"""\
    import json, sys, time
    import joblib, numpy as np, pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(sys.argv[1])[["utterance", "intent"]]
    codes = pd.factorize(frame["intent"], sort=True)[0]
    train_idx, test_idx = train_test_split(np.arange(len(frame)), test_size={TEST_SIZE},
                                           random_state={SEED}, stratify=codes)
    train, test = frame.iloc[train_idx], frame.iloc[test_idx]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df={MIN_DF}, sublinear_tf=True)
    x_train = vectorizer.fit_transform(train["utterance"].fillna(""))
    model = LogisticRegression(C={C}, max_iter=1000, random_state=42).fit(x_train, train["intent"])
    predicted = model.predict(vectorizer.transform(test["utterance"].fillna("")))
    joblib.dump((vectorizer, model), sys.argv[2])
    print(json.dumps({{"f1_macro": f1_score(test["intent"], predicted, average="macro"),
                      "features": x_train.shape[1]}}))
""")

SCORER = textwrap.dedent("""\
    import json, resource, sys, time
    import pandas as pd
    import skitflow
    frame = pd.read_parquet(sys.argv[2]).drop(columns=["intent"])
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bundle = skitflow.load_model(sys.argv[1])
    started = time.perf_counter()
    scored = bundle.predictions(frame)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(scored), "seconds": seconds, "rows_per_s": len(scored) / seconds,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "after_reading_rows_mib": loaded / 1024}))
""")


def python() -> str:
    return sys.executable


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def skitflow_run(trainer: str, data: Path) -> dict:
    recipe = OUT / f"intents-{trainer}.yaml"
    recipe.write_text(RECIPE.format(trainer=trainer, data=data, min_df=MIN_DF, test_size=TEST_SIZE,
                                    seed=SEED, trainer_block=TRAINERS[trainer], out=OUT))
    run_dir = OUT / f"run-{trainer}"
    sample = measure([python(), "-m", "skitflow", "run", str(recipe), "--out", str(run_dir), "--no-cache"],
                     log=OUT / f"run-{trainer}.log", env=env(), cwd=REPO, sample_tree=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    train_task = f"train-{trainer}"
    return {"wall_s": sample.wall_s, "peak_mib": round((sample.peak_kb or 0) / 1024, 1),
            "tree_peak_mib": round((sample.tree_peak_kb or 0) / 1024, 1),
            "f1_macro": summary["metrics"]["f1_macro"],
            "train_task_s": summary["tasks"][train_task]["seconds"],
            "task_seconds": {k: v["seconds"] for k, v in summary["tasks"].items()},
            "bundle_bytes": (OUT / f"model-{trainer}.zip").stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows to train, 100,000 to score")
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rows, score_rows = (20000, 100_000) if args.quick else (args.rows, args.score_rows)
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"utterances-{rows}.csv"
    if not data.exists():
        make(rows, seed=SEED).to_csv(data, index=False)
    script = OUT / "hand_written.py"
    script.write_text(HAND_WRITTEN)

    results: dict = {"machine": machine_facts(), "rows": rows, "score_rows": score_rows}
    sample = measure([python(), str(script), str(data), str(OUT / "hand.joblib")],
                     log=OUT / "hand.log", env=env(), cwd=REPO)
    hand = json.loads((OUT / "hand.log").read_text().strip().splitlines()[-1])
    results["hand_written"] = {"wall_s": sample.wall_s, "peak_mib": round((sample.peak_kb or 0) / 1024, 1),
                               "f1_macro": hand["f1_macro"], "features": hand["features"],
                               "model_bytes": (OUT / "hand.joblib").stat().st_size}
    for trainer in ("linear", "xgboost"):
        result = skitflow_run(trainer, data)
        result["f1_minus_hand"] = round(result["f1_macro"] - hand["f1_macro"], 4)
        result["wall_ratio"] = round(result["wall_s"] / sample.wall_s, 2)
        results[f"skitflow_{trainer}"] = result
        print(trainer, json.dumps(result), flush=True)

    scoring_data = OUT / f"score-{score_rows}.parquet"
    if not scoring_data.exists():  # 100,000 distinct new rows, repeated in shuffled order
        distinct = make(min(score_rows, 100_000), seed=SEED + 1)
        repeats = -(-score_rows // len(distinct))
        import pandas as pd

        tiled = pd.concat([distinct] * repeats, ignore_index=True).head(score_rows)
        tiled = tiled.sample(frac=1.0, random_state=0).reset_index(drop=True)
        tiled.to_parquet(scoring_data, index=False)
    scorer = OUT / "scorer.py"
    scorer.write_text(SCORER)
    for trainer in ("linear", "xgboost"):
        log = OUT / f"score-{trainer}.log"
        measured = measure([python(), str(scorer), str(OUT / f"model-{trainer}.zip"), str(scoring_data)],
                           log=log, env=env(), cwd=REPO)
        scored = json.loads(log.read_text().strip().splitlines()[-1])
        results[f"predict_{trainer}"] = {**scored, "process_wall_s": measured.wall_s}
        print("predict", trainer, json.dumps(scored), flush=True)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
