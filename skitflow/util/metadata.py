"""Artifact metadata, bounded in size whatever the data.

KFP passes an input artifact's metadata to the next task inside its executor input, on the
command line: a 249 KB metadata (every category of a free-text column) made the next task fail
with `OSError: [Errno 7] Argument list too long`. Everything a task records on an artifact goes
through :func:`bounded`, which shortens long lists and strings until the JSON fits a fixed budget.
The full details live in the artifact's file (the model bundle, metrics.json), not in metadata.
"""

from __future__ import annotations

import json
from typing import Any

#: The most bytes of JSON one artifact's metadata may take.
MAX_METADATA_BYTES = 16 * 1024
_LIST_ITEMS = (50, 10, 3)
_STRING_CHARS = (1000, 200, 80)


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def _shrink(value: Any, items: int, chars: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= chars else value[:chars] + f"... ({len(value):,} characters)"
    if isinstance(value, list | tuple):
        kept = [_shrink(v, items, chars) for v in list(value)[:items]]
        if len(value) > items:
            kept.append(f"... {len(value) - items:,} more")
        return kept
    if isinstance(value, dict):
        keys = list(value)[: items * 2]
        kept_dict = {str(k): _shrink(value[k], items, chars) for k in keys}
        if len(value) > len(keys):
            kept_dict["..."] = f"{len(value) - len(keys):,} more keys"
        return kept_dict
    return value


def bounded(metadata: dict[str, Any], limit: int = MAX_METADATA_BYTES) -> dict[str, Any]:
    """`metadata` as plain JSON of at most `limit` bytes: long lists and strings are cut (saying
    how much was left out); as a last resort only the scalar entries are kept."""
    plain = json.loads(json.dumps(metadata, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    if _size(plain) <= limit:
        return plain
    for items, chars in zip(_LIST_ITEMS, _STRING_CHARS, strict=True):
        shrunk = {k: _shrink(v, items, chars) for k, v in plain.items()}
        if _size(shrunk) <= limit:
            shrunk["metadata_truncated"] = True
            return shrunk
    scalars = {k: _shrink(v, 3, 80) for k, v in plain.items() if not isinstance(v, list | dict)}
    scalars["metadata_truncated"] = True
    while _size(scalars) > limit and len(scalars) > 1:
        scalars.pop(next(k for k in scalars if k != "metadata_truncated"))
    return scalars
