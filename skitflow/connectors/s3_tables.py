"""CSV and Parquet objects on S3 read into one Arrow table, fetching every byte once.

A whole object is downloaded with parallel ranged GETs (:meth:`S3.download`) and read with
pyarrow's multithreaded readers; a CSV read with a row `limit` is streamed instead, and the GET
is closed as soon as enough rows arrived. CSV columns are typed as pandas would type them (dates
and times stay text), so a recipe reads the same data from S3 as from a local file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from skitflow.connectors.s3 import S3, MiB, ObjectInfo, local_name, parse_uri
from skitflow.errors import StepFailed, did_you_mean

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["object_format", "read_table"]

_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
_CSV_EXTENSIONS = (".csv", ".tsv", ".txt")
_PARQUET_EXTENSIONS = (".parquet", ".pq")


def object_format(key: str, declared: str = "auto") -> str:
    """`csv` or `parquet` for an object, from `declared` or else from its extension."""
    if declared != "auto":
        return declared
    name = key.lower()
    for suffix in _COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(_PARQUET_EXTENSIONS):
        return "parquet"
    if name.endswith(_CSV_EXTENSIONS):
        return "csv"
    raise StepFailed(
        f"s3: cannot tell the format of s3 object `{key}` from its name",
        hint="set `format: csv` or `format: parquet`",
    )


def _separator(key: str, sep: str | None) -> str:
    if sep:
        return sep
    base = key.lower()
    for suffix in _COMPRESSIONS:
        base = base.removesuffix(suffix)
    return "\t" if base.endswith(".tsv") else ","


@contextlib.contextmanager
def _scratch(directory: str | None) -> Iterator[str]:
    if directory:
        os.makedirs(directory, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=".skitflow-s3-", dir=directory or None)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_table(uri: str, *, format: str = "auto", columns: Sequence[str] | None = None,
               text_columns: Sequence[str] = (), limit: int | None = None,
               sep: str | None = None, encoding: str = "utf-8", directory: str | None = None,
               environ: Mapping[str, str] | None = None,
               log: Callable[[str], None] | None = None) -> pa.Table:
    """Read the CSV / Parquet objects `uri` names into one Arrow table.

    Every byte is fetched once: a whole object is downloaded with parallel ranged GETs to a
    temporary file in `directory` and read with pyarrow's multithreaded readers; with `limit`,
    a CSV is streamed and the transfer stops as soon as enough rows were read, and no further
    object is touched. CSV columns are typed like pandas would (dates stay text); columns in
    `text_columns` are read as text. `columns` are required and kept in that order; without
    them, every object must have the same columns.
    """
    s3 = S3(environ)
    say = log or (lambda _message: None)
    objects = s3.resolve(parse_uri(uri))
    total = sum(o.size for o in objects)
    say(f"reading {len(objects)} object{'s' if len(objects) != 1 else ''} "
        f"({total / MiB:.1f} MiB) from {uri}")
    wanted = list(columns) if columns else None
    tables: list[pa.Table] = []
    names: list[str] | None = None
    rows = 0
    with _scratch(directory) as scratch:
        for obj in objects:
            remaining = None if limit is None else limit - rows
            if remaining is not None and remaining <= 0:
                break
            file_format = object_format(obj.uri.key, format)
            table = _read_object(s3, obj, file_format, wanted, text_columns, remaining,
                                 _separator(obj.uri.key, sep), encoding, scratch)
            if wanted is None:
                if names is None:
                    names = table.column_names
                elif sorted(table.column_names) != sorted(names):
                    raise StepFailed(
                        f"s3: {obj.uri} has columns {', '.join(table.column_names)}, unlike "
                        f"{objects[0].uri} ({', '.join(names)})",
                        hint="read only objects of one layout, or declare the shared `columns`",
                    )
                else:
                    table = table.select(names)
            tables.append(table)
            rows += table.num_rows
    return _concatenate(tables, objects)


def _concatenate(tables: list[pa.Table], objects: list[ObjectInfo]) -> pa.Table:
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StepFailed(
            f"s3: the objects under {objects[0].uri} do not have compatible column types: {exc}",
            hint="give the column a `dtype` (e.g. str), or read the objects separately",
        ) from None


def _read_object(s3: S3, obj: ObjectInfo, file_format: str, wanted: list[str] | None,
                 text_columns: Sequence[str], limit: int | None, sep: str, encoding: str,
                 scratch: str) -> pa.Table:
    import pyarrow as pa

    try:
        if file_format == "csv" and limit is not None:
            return _stream_csv(s3, obj, wanted, text_columns, limit, sep, encoding)
        local = s3.download(obj, local_name(scratch, obj))
        try:
            if file_format == "parquet":
                return _read_parquet(local, obj, wanted, limit)
            return _read_csv(local, obj, wanted, text_columns, sep, encoding)
        finally:
            os.unlink(local)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        hint = None
        if isinstance(exc, UnicodeDecodeError) or "UTF8" in str(exc) or "utf8" in str(exc):
            hint = "set `encoding`, e.g. `encoding: latin-1`"
        raise StepFailed(f"s3: cannot read {obj.uri} as {file_format}: {exc}", hint=hint) from None


def _missing(obj: ObjectInfo, wanted: list[str] | None, present: list[str]) -> None:
    """The column contract: every declared column must exist, named in the error if not."""
    missing = [c for c in wanted or () if c not in present]
    if missing:
        listed = ", ".join(f"`{c}`" for c in missing)
        hint = did_you_mean(missing[0], present) or f"it has: {', '.join(present)}"
        noun = "column" if len(missing) == 1 else "columns"
        raise StepFailed(f"s3: {obj.uri} has no {noun} {listed}", hint=hint)


def _read_parquet(local: str, obj: ObjectInfo, wanted: list[str] | None,
                  limit: int | None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(local)
    present = parquet.schema_arrow.names
    _missing(obj, wanted, present)
    if limit is None:
        return parquet.read(columns=wanted, use_pandas_metadata=False)
    batches, rows = [], 0
    for batch in parquet.iter_batches(batch_size=min(limit, 64 * 1024), columns=wanted):
        batches.append(batch.slice(0, limit - rows))
        rows += batches[-1].num_rows
        if rows >= limit:
            break
    schema = parquet.schema_arrow if wanted is None else pa.schema(
        [parquet.schema_arrow.field(c) for c in wanted])
    return pa.Table.from_batches(batches, schema=batches[0].schema if batches else schema)


_NEVER_A_TIMESTAMP = ["\x01"]  # a parser that matches nothing: pandas does not guess dates either


def _csv_options(sep: str, encoding: str, types: Mapping[str, Any],
                 include: list[str] | None) -> tuple[Any, Any, Any]:
    """pyarrow's CSV options: types as pandas would guess them (dates stay text), "" is null."""
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(encoding=encoding, block_size=4 * MiB)
    parse = pacsv.ParseOptions(delimiter=sep)
    convert = pacsv.ConvertOptions(column_types=dict(types), strings_can_be_null=True,
                                   timestamp_parsers=_NEVER_A_TIMESTAMP,
                                   include_columns=include or [])
    return read, parse, convert


def _temporal_as_text(schema: pa.Schema, text_columns: Sequence[str]) -> dict[str, Any]:
    """Column types for reading: dates and times (which pandas leaves as text) and hints as text."""
    import pyarrow as pa

    types = {name: pa.string() for name in text_columns}
    for field in schema:
        if pa.types.is_temporal(field.type):
            types[field.name] = pa.string()
    return types


def _read_csv(local: str, obj: ObjectInfo, wanted: list[str] | None,
              text_columns: Sequence[str], sep: str, encoding: str) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with pa.input_stream(local, compression="detect") as stream:  # the first MiB, for the header
        head = Head(stream).lines(1)
    schema = _parse_csv(head, obj, sep, encoding, {}).schema
    _missing(obj, wanted, schema.names)
    types = _temporal_as_text(schema, [c for c in text_columns if c in schema.names])
    table = pacsv.read_csv(local, *_csv_options(sep, encoding, types, wanted))
    return _text_for_late_temporals(table)


class Head:
    """The start of a stream, read in growing chunks only as far as asked, never re-read."""

    def __init__(self, stream: Any, first_read: int = MiB) -> None:
        self.stream = stream
        self.data = bytearray()
        self.line_ends = 0
        self.ended = False
        self.chunk = first_read

    def lines(self, count: int) -> bytes:
        """The bytes read so far, cut after a line end, holding more than `count` line ends.

        Fewer when the stream ended (then everything). A quoted field may hold a line end, so
        a caller that parsed fewer records than it wanted asks again for more.
        """
        while not self.ended and self.line_ends <= count:
            chunk = self.stream.read(self.chunk)
            if not chunk:
                self.ended = True
                break
            self.data += chunk
            self.line_ends += chunk.count(b"\n")
            self.chunk = min(self.chunk * 2, 64 * MiB)
        if self.ended:
            return bytes(self.data)
        return bytes(self.data[: self.data.rfind(b"\n") + 1])


def _parse_csv(data: bytes, obj: ObjectInfo, sep: str, encoding: str,
               types: Mapping[str, Any]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(pa.BufferReader(data), *_csv_options(sep, encoding, types, None))
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise StepFailed(f"s3: {obj.uri} is empty") from None
        raise


def _text_for_late_temporals(table: pa.Table) -> pa.Table:
    """A date column whose first block was empty is typed late; make it text as pandas would."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_temporal(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.string()))
    return table


def _stream_csv(s3: S3, obj: ObjectInfo, wanted: list[str] | None, text_columns: Sequence[str],
                limit: int, sep: str, encoding: str) -> pa.Table:
    """The first `limit` rows of a CSV object: the GET is closed as soon as they arrived.

    pyarrow's streaming reader reads far ahead (dozens of blocks), so the body is read here in
    growing chunks until it holds `limit` records, and only those bytes are parsed.
    """
    import pyarrow as pa

    body = s3.open_stream(obj.uri)
    try:
        stream: Any = body
        for suffix, codec in _COMPRESSIONS.items():
            if obj.uri.key.lower().endswith(suffix):
                stream = pa.CompressedInputStream(pa.PythonFile(body, mode="r"), codec)
        types = {name: pa.string() for name in text_columns}
        head, lines = Head(stream, first_read=256 * 1024), limit
        while True:
            table = _parse_csv(head.lines(lines), obj, sep, encoding, types)
            if head.ended or table.num_rows >= limit:
                break
            lines *= 2  # quoted line ends: fewer records than lines
    finally:
        with contextlib.suppress(Exception):
            body.close()
    _missing(obj, wanted, table.schema.names)
    table = table.slice(0, limit)
    if wanted is not None:
        table = table.select(wanted)
    return _text_for_late_temporals(table)
