"""Dataset files passed between tasks: Parquet by default, CSV when the recipe asks.

An artifact's file has no extension, so the format is detected from the content (Parquet files
start with ``PAR1``) and also recorded in the artifact's metadata. Writes are atomic: a task that
dies half-way never leaves a file a later task would mistake for a result.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

PARQUET_MAGIC = b"PAR1"


def detect_format(path: str) -> str:
    with open(path, "rb") as handle:
        return "parquet" if handle.read(4) == PARQUET_MAGIC else "csv"


def read_dataset(path: str) -> pd.DataFrame:
    import pandas as pd

    if detect_format(path) == "parquet":
        return pd.read_parquet(path, engine="pyarrow")
    return pd.read_csv(path)


def write_dataset(frame: pd.DataFrame, path: str, file_format: str = "parquet") -> None:
    """Write atomically: temp file beside the target, then rename."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        if file_format == "csv":
            frame.to_csv(temp, index=False)
        else:
            frame.to_parquet(temp, engine="pyarrow", index=False, compression="snappy")
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
