"""Generate the example dataset: customer support tickets to classify by topic.

The data is synthetic and deterministic (numpy seed), shaped like a real export so that the
example recipes have something to clean: duplicated tickets, subjects in mixed case with stray
spaces, missing response times, text categories. The label (billing / technical / account /
other) is learnable from the numeric and categorical columns (a gradient-boosted model with
`channel` and `priority` encoded reaches F1 macro ~0.85); a keyword in `subject` adds signal.

    python examples/make_dataset.py                      # examples/data/tickets.csv, 3,000 rows
    python examples/make_dataset.py --rows 1000000 --out /tmp/tickets-1m.csv

Large files are generated and written in vectorised chunks (`generate_classification_csv`), so a
million rows take a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

LABELS = np.array(["billing", "technical", "account", "other"])
LABEL_SHARE = [0.35, 0.30, 0.20, 0.15]
CHANNELS = np.array(["email", "chat", "phone"])
PRIORITIES = np.array(["low", "medium", "high", "urgent"])
COLUMNS = [
    "ticket_id",
    "created_at",
    "subject",
    "channel",
    "priority",
    "customer_age",
    "account_months",
    "num_previous_tickets",
    "response_minutes",
    "label",
]

# Per label (rows in LABELS order): how tickets of that topic tend to look.
CHANNEL_SHARE = np.array(
    [[0.70, 0.15, 0.15], [0.10, 0.80, 0.10], [0.15, 0.10, 0.75], [0.34, 0.33, 0.33]]
)
PRIORITY_SHARE = np.array(
    [[0.30, 0.50, 0.15, 0.05], [0.08, 0.27, 0.40, 0.25], [0.20, 0.40, 0.30, 0.10],
     [0.60, 0.30, 0.08, 0.02]]
)  # fmt: skip
MEAN_ACCOUNT_MONTHS = np.array([48.0, 24.0, 4.0, 16.0])
MEAN_PREVIOUS_TICKETS = np.array([1.5, 6.0, 1.0, 0.3])
MEAN_AGE = np.array([48.0, 34.0, 40.0, 58.0])

KEYWORDS = {
    "billing": ["refund", "invoice", "double charge", "payment failed", "billing question"],
    "technical": ["app crashes", "error 500", "bug report", "page not loading", "sync broken"],
    "account": ["reset password", "change email", "close account", "login locked", "2fa setup"],
    "other": ["feedback", "partnership", "general question", "compliment", "suggestion"],
}
NEUTRAL = ["help needed", "urgent please", "question", "issue with my account", "follow up"]
KEYWORD_SHARE = 0.7  # the rest get a neutral subject
DUPLICATE_SHARE = 0.02  # exported twice, as real ticket systems do
MISSING_RESPONSE_SHARE = 0.06


def _variants(phrase: str) -> list[str]:
    """The ways people type a subject: case and stray spaces vary, the words do not."""
    cased = [phrase, phrase.capitalize(), phrase.title(), phrase.upper()]
    return [
        pad_l + text + pad_r for text in cased for pad_l, pad_r in (("", ""), ("  ", ""), ("", " "))
    ]


def _subject_pools() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All subject strings in one array, with each label's (offset, size) in it; last = neutral."""
    groups = [KEYWORDS[str(label)] for label in LABELS] + [NEUTRAL]
    pools = [[v for phrase in group for v in _variants(phrase)] for group in groups]
    sizes = np.array([len(p) for p in pools])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.array([s for p in pools for s in p], dtype=object), offsets, sizes


_POOL, _POOL_OFFSETS, _POOL_SIZES = _subject_pools()


def _choice_by_row(rng: np.random.Generator, shares: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each row, draw an index from the probability row `shares[rows[i]]` (vectorised)."""
    cumulative = shares.cumsum(axis=1)[rows]
    return (rng.random(len(rows))[:, None] > cumulative).sum(axis=1).clip(0, shares.shape[1] - 1)


def make_tickets(rows: int, seed: int = 7, first_id: int = 1) -> dict[str, np.ndarray]:
    """`rows` tickets as column arrays (about 2% of them exported twice), deterministic per seed."""
    rng = np.random.default_rng(seed)
    unique = max(1, round(rows / (1 + DUPLICATE_SHARE)))
    label = rng.choice(len(LABELS), size=unique, p=LABEL_SHARE)

    channel = _choice_by_row(rng, CHANNEL_SHARE, label)
    priority = _choice_by_row(rng, PRIORITY_SHARE, label)
    age = np.clip(rng.normal(MEAN_AGE[label], 11.0), 18, 85).round().astype(np.int64)
    months = rng.gamma(2.0, MEAN_ACCOUNT_MONTHS[label] / 2.0).round().astype(np.int64)
    previous = rng.poisson(MEAN_PREVIOUS_TICKETS[label])
    # Chat is answered fast, email slowly; urgent tickets jump the queue. Not label-specific.
    base_minutes = np.array([240.0, 6.0, 15.0])[channel] / (1.0 + priority)
    response = (base_minutes * rng.lognormal(0.0, 0.6, unique)).round(1)
    response[rng.random(unique) < MISSING_RESPONSE_SHARE] = np.nan

    with_keyword = rng.random(unique) < KEYWORD_SHARE
    group = np.where(with_keyword, label, len(LABELS))
    subject = _POOL[_POOL_OFFSETS[group] + rng.integers(0, _POOL_SIZES[group])]

    start = np.datetime64("2024-01-01T00:00")
    minutes = np.sort(rng.integers(0, 366 * 24 * 60, unique))
    created = np.datetime_as_string(start + minutes.astype("timedelta64[m]"), unit="m")
    ticket_id = np.char.add(
        "TCK-", np.char.zfill(np.arange(first_id, first_id + unique).astype(str), 7)
    )

    columns = {
        "ticket_id": ticket_id.astype(object),
        "created_at": created.astype(object),
        "subject": subject,
        "channel": CHANNELS[channel].astype(object),
        "priority": PRIORITIES[priority].astype(object),
        "customer_age": age,
        "account_months": months,
        "num_previous_tickets": previous,
        "response_minutes": response,
        "label": LABELS[label].astype(object),
    }
    # Re-export some tickets: exact duplicate rows placed right after their original.
    order = np.arange(unique)
    repeat = rng.choice(unique, size=rows - unique, replace=False) if rows > unique else []
    order = np.sort(np.concatenate([order, np.asarray(repeat, dtype=np.int64)]), kind="stable")
    return {name: values[order] for name, values in columns.items()}


def _table(columns: dict[str, np.ndarray]) -> Any:
    import pyarrow as pa

    return pa.table({name: pa.array(columns[name], from_pandas=True) for name in COLUMNS})


def write_csv(columns: dict[str, np.ndarray], path: str | Path) -> None:
    """Write one set of columns as CSV (missing values as empty fields)."""
    import pyarrow.csv as pacsv

    pacsv.write_csv(_table(columns), str(path))


def generate_classification_csv(
    path: str | Path, rows: int = 1_000_000, seed: int = 7, chunk_rows: int = 200_000
) -> Path:
    """A large tickets CSV for benchmarks, written chunk by chunk; deterministic per seed.

    Each chunk has its own seed derived from (`seed`, chunk number), so the file depends only on
    the arguments. Memory stays at one chunk whatever `rows` is.
    """
    import pyarrow.csv as pacsv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    written = 0
    try:
        for number, start in enumerate(range(0, rows, chunk_rows)):
            size = min(chunk_rows, rows - start)
            chunk_seed = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
            table = _table(make_tickets(size, seed=chunk_seed, first_id=written + 1))
            if writer is None:
                writer = pacsv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
            written += size  # ids stay unique across chunks (duplicates repeat within a chunk)
    finally:
        if writer is not None:
            writer.close()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="number of rows (default 3000)")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "data" / "tickets.csv"),
        help="CSV file to write (default examples/data/tickets.csv)",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.rows > 200_000:
        generate_classification_csv(out, args.rows, args.seed)
    else:
        write_csv(make_tickets(args.rows, args.seed), out)
    print(f"wrote {args.rows:,} rows to {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
