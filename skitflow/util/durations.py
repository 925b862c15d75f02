"""Durations as recipes write them (`90`, `90s`, `15m`, `2h`, `1d`): one parser for every layer.

Task timeouts and retry back-off (recipe options) and an `expect` step's `freshness.max_age` read
durations the same way.
"""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^(\d+)\s*(s|m|h|d)?$")


def parse_duration(value: int | str) -> int:
    """Seconds from `90`, `"90s"`, `"15m"`, `"2h"` or `"1d"`."""
    if isinstance(value, int):
        return value
    match = _DURATION_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"`{value}` is not a duration; write it like 90, 90s, 15m, 2h or 1d")
    number, unit = int(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
