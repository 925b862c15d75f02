"""Dataset files passed between tasks: Parquet by default, CSV when the recipe asks.

An artifact's file has no extension, so the format is detected from the content (Parquet files
start with ``PAR1``) and also recorded in the artifact's metadata. Writes are atomic: a task that
dies half-way never leaves a file a later task would mistake for a result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

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


class NotStreamable(Exception):
    """Rows streamed in chunks would not give the whole frame's result (a column's type changed
    from one chunk to the next): the task runs on all rows at once instead."""


@contextlib.contextmanager
def chunk_writer(path: str, file_format: str = "parquet") -> Iterator[Callable[[pd.DataFrame], None]]:
    """Write a dataset one frame after another, atomically, as `write_dataset` writes their
    concatenation. A frame whose columns or types differ from the first's raises NotStreamable
    (the file is then not published); so does writing no frame at all."""
    with atomic_path(path) as temporary:
        state: dict[str, Any] = {}
        if file_format == "csv":
            def write(frame: pd.DataFrame) -> None:
                if "dtypes" not in state:
                    state["dtypes"] = frame.dtypes
                    frame.to_csv(temporary, index=False)
                elif not frame.dtypes.equals(state["dtypes"]):
                    raise NotStreamable("the columns' types changed between chunks")
                else:
                    frame.to_csv(temporary, index=False, header=False, mode="a")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            def write(frame: pd.DataFrame) -> None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                writer = state.get("writer")
                if writer is None:
                    state["writer"] = pq.ParquetWriter(temporary, table.schema, compression="snappy")
                    state["dtypes"] = frame.dtypes
                elif not (table.schema.equals(writer.schema, check_metadata=True)
                          and frame.dtypes.equals(state["dtypes"])):
                    raise NotStreamable("the columns' types changed between chunks")
                state["writer"].write_table(table)
        try:
            yield write
        finally:
            if state.get("writer") is not None:
                state["writer"].close()
        if "dtypes" not in state:
            raise NotStreamable("no rows were written")
