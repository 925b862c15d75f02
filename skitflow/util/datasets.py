"""Dataset files passed between tasks: Parquet by default, CSV when the recipe asks.

An artifact's file has no extension, so the format is detected from the content (Parquet files
start with ``PAR1``) and also recorded in the artifact's metadata. Writes are atomic: a task that
dies half-way never leaves a file a later task would mistake for a result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skitflow.util.atomic import atomic_path

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
    """Write atomically (temp file beside the target, fsync, rename): see `util.atomic`."""
    with atomic_path(path) as temporary:
        if file_format == "csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, engine="pyarrow", index=False, compression="snappy")
