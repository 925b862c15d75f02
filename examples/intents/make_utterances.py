"""Generate a synthetic utterance-intent dataset: 6 intents carried by words in noisy text.

Each utterance mixes 2-4 words of its intent's vocabulary with filler words, sometimes a word
of another intent, and typos; a small share of labels is wrong. A fixed seed gives the same rows.

    python examples/intents/make_utterances.py --rows 3000 --out examples/intents/data/utterances.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

INTENTS: dict[str, list[str]] = {
    "billing": ["invoice", "charge", "charged", "bill", "payment", "refund", "overcharged", "fee",
                "price", "receipt", "credit", "card", "statement", "paid", "twice"],
    "cancel": ["cancel", "cancellation", "terminate", "close", "stop", "quit", "unsubscribe",
               "end", "contract", "leave", "discontinue", "membership", "subscription"],
    "technical": ["error", "crash", "broken", "bug", "slow", "freezes", "login", "password",
                  "reset", "install", "update", "app", "screen", "loading", "wifi", "connect"],
    "shipping": ["delivery", "package", "shipped", "tracking", "courier", "arrive", "late",
                 "parcel", "address", "shipping", "delivered", "lost", "order", "box"],
    "account": ["account", "profile", "email", "username", "details", "change", "verify",
                "settings", "name", "phone", "number", "personal", "information", "security"],
    "sales": ["buy", "purchase", "upgrade", "plan", "premium", "offer", "discount", "deal",
              "quote", "pricing", "trial", "demo", "interested", "more", "licenses"],
}
FILLER = ("i", "my", "the", "a", "to", "is", "it", "can", "you", "please", "help", "me", "with",
          "hi", "hello", "need", "want", "would", "like", "there", "this", "that", "was", "have",
          "been", "why", "how", "do", "just", "so", "um", "uh", "yeah", "okay", "thanks", "today",
          "again", "still", "really", "not", "on", "for", "and", "but", "about", "your", "service")
CHANNELS = ("phone", "chat", "email")


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 3:
        return word
    i = int(rng.integers(0, len(word) - 1))
    kind = rng.integers(0, 3)
    if kind == 0:  # swap two letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop one
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # double one


def make(rows: int, seed: int = 0, label_noise: float = 0.03) -> pd.DataFrame:
    """`rows` utterances with columns call_id, channel, duration, utterance, intent."""
    rng = np.random.default_rng(seed)
    names = sorted(INTENTS)
    weights = np.array([0.24, 0.12, 0.22, 0.16, 0.14, 0.12])
    labels = rng.choice(names, size=rows, p=weights / weights.sum())
    utterances = []
    for label in labels:
        words = list(rng.choice(INTENTS[label], size=int(rng.integers(1, 4))))
        if rng.random() < 0.35:  # a word that belongs to another intent
            other = names[int(rng.integers(0, len(names)))]
            words.append(str(rng.choice(INTENTS[other])))
        words += list(rng.choice(FILLER, size=int(rng.integers(3, 12))))
        rng.shuffle(words)
        words = [_typo(w, rng) if rng.random() < 0.06 else w for w in words]
        text = " ".join(words)
        utterances.append(text.capitalize() if rng.random() < 0.5 else text.upper() if rng.random() < 0.05 else text)
    noisy = rng.random(rows) < label_noise
    labels = labels.astype(object)
    labels[noisy] = rng.choice(names, size=int(noisy.sum()))
    return pd.DataFrame({
        "call_id": np.arange(1, rows + 1),
        "channel": rng.choice(CHANNELS, size=rows),
        "duration": np.round(rng.gamma(2.0, 40.0, size=rows), 1),
        "utterance": utterances,
        "intent": labels,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="examples/intents/data/utterances.csv")
    args = parser.parse_args()
    frame = make(args.rows, args.seed)
    if args.out.endswith(".parquet"):
        frame.to_parquet(args.out, index=False)
    else:
        frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame):,} rows to {args.out}")


if __name__ == "__main__":
    main()
