"""Globs over object keys (S3): `*` and `?` stay within one folder level, `**` crosses levels.

`fnmatch` lets `*` cross `/`, and `glob.translate` (which does not) needs Python 3.13, so the
translation to a regular expression is written here, once.
"""

from __future__ import annotations

import re

__all__ = ["GLOB_CHARACTERS", "glob_pattern", "glob_prefix", "is_glob"]

GLOB_CHARACTERS = "*?["


def is_glob(key: str) -> bool:
    return any(c in key for c in GLOB_CHARACTERS)


def glob_prefix(key: str) -> str:
    """The literal part of a glob before its first wildcard (what a listing can start from)."""
    return key[: min((key.find(c) for c in GLOB_CHARACTERS if c in key), default=len(key))]


def glob_pattern(pattern: str) -> re.Pattern[str]:
    """A glob over keys: * and ? stay within one folder level, ** crosses levels."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            inner = pattern[i + 1:end]
            inner = "^" + inner[1:] if inner.startswith("!") else inner
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")
