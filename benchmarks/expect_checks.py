"""The `expect` step on 1,000,000 rows against the same checks hand-written in pandas.

Both sides check the same generated frame (all checks pass, and a second frame where every check
fails, so the example rows are gathered too); the best of `--repeat` runs is printed.

    PYTHONPATH=. python benchmarks/expect_checks.py [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from skitflow.steps.expect import ExpectSettings, check_frame  # noqa: E402

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
SETTINGS = ExpectSettings(
    row_count={"min": 1000}, not_null=["utterance", "intent"], unique=["call_id"],
    accepted_values={"lang": ["en", "hi"]}, range={"duration": {"min": 0, "max": 3600}},
    class_balance={"column": "intent", "min_share": 0.02},
    freshness={"column": "created_at", "max_age": "2d"}, columns={"duration": "float"})


def make(rows: int, broken: bool) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({
        "call_id": np.arange(rows),
        "utterance": pd.Series([f"utterance {i % 5000}" for i in range(rows)], dtype=object),
        "intent": rng.choice(["billing", "cancel", "support", "sales", "other"], rows),
        "lang": rng.choice(["en", "hi"], rows),
        "duration": rng.uniform(0, 3600, rows),
        "created_at": pd.Series(pd.date_range(end=NOW, periods=rows, freq="s", tz="UTC")),
    })
    if broken:
        frame.loc[::1000, "intent"] = None
        frame.loc[::997, "lang"] = "fr"
        frame.loc[::991, "duration"] = -1.0
        frame.loc[1::2003, "call_id"] = 0
    return frame


def by_hand(frame: pd.DataFrame) -> dict[str, int]:
    """The same checks as one would write them in pandas (counts only, no examples)."""
    now = NOW
    out = {"row_count": int(len(frame) < 1000)}
    for column in ("utterance", "intent"):
        out[f"not_null.{column}"] = int(frame[column].isna().sum())
    ids = frame["call_id"]
    out["unique.call_id"] = int((ids.duplicated(keep=False) & ids.notna()).sum())
    lang = frame["lang"]
    out["accepted_values.lang"] = int((~lang.isin(["en", "hi"]) & lang.notna()).sum())
    duration = frame["duration"]
    out["range.duration"] = int(((duration < 0) | (duration > 3600)).sum())
    shares = frame["intent"].value_counts(normalize=True)
    out["class_balance.intent"] = int((shares < 0.02).sum())
    out["freshness.created_at"] = int(now - frame["created_at"].max() > dt.timedelta(days=2))
    out["columns.duration"] = int(not pd.api.types.is_float_dtype(duration.dtype))
    return out


def best(function, frame: pd.DataFrame, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function(frame)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"| data ({args.rows:,} rows) | expect step s | by hand s | ratio |")
    print("|---|---|---|---|")
    for broken in (False, True):
        frame = make(args.rows, broken)
        step = {r.name: r.failing for r in check_frame(frame, SETTINGS, now=NOW)}
        hand = by_hand(frame)
        assert step == hand, (step, hand)  # the same answers, or the comparison means nothing
        ours = best(lambda f: check_frame(f, SETTINGS, now=NOW), frame, args.repeat)
        theirs = best(by_hand, frame, args.repeat)
        label = "every check fails (examples gathered)" if broken else "every check passes"
        print(f"| {label} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
