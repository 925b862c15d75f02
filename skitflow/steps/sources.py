"""Built-in sources: where a recipe's data comes from.

`csv` reads local files (globs too), http(s) URLs and s3:// objects (prefixes and globs too) with
pandas; several files are concatenated. Its `columns` are the column contract
the compiler checks every later step against, so the source yields exactly those columns and
fails clearly, naming the missing one, when the file lacks one.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from skitflow.connectors.s3_uri import is_s3_uri
from skitflow.errors import RemoteError, StepFailed, did_you_mean
from skitflow.steps.base import NotStreamable, RunContext, SourceStep, StepSettings
from skitflow.steps.columns import CastType, ColumnList, convert_column

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SOURCES"]

_SCHEMES = ("", "file", "http", "https", "s3")
_GLOB_CHARS = ("*", "?", "[")


class TableReadSettings(StepSettings):
    """Settings every tabular source shares: the column contract, types, encoding and a limit."""

    columns: ColumnList | None = Field(
        None,
        min_length=1,
        description="The columns to read, in this order; the column contract of the recipe. "
        "All columns, in the data's order, if omitted (later steps are then checked only at run "
        "time).",
    )
    dtype: dict[str, CastType] | None = Field(
        None,
        description="Column -> int, float, str, bool, category or datetime, instead of the "
        "guessed type.",
    )
    limit: int | None = Field(
        None, ge=1, description="Read at most this many rows (for a quick sample run)."
    )
    encoding: str = Field("utf-8", description="Text encoding of CSV data.")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding `{encoding}`") from None
        return encoding

    @model_validator(mode="after")
    def _dtype_of_read_columns(self) -> TableReadSettings:
        if self.dtype and self.columns:
            stray = [c for c in self.dtype if c not in self.columns]
            if stray:
                hint = did_you_mean(stray[0], self.columns)
                raise ValueError(
                    f"dtype given for `{stray[0]}`, which is not in `columns`"
                    + (f"; {hint}" if hint else "")
                )
        return self


class CsvSource(SourceStep):
    """Read CSV files: a local path or glob, an http(s) URL, or s3:// objects (prefix or glob).

    Several files (a glob, an S3 prefix) are read in name order and concatenated; they must have
    the same columns. S3 endpoints and credentials come from the environment (AWS_*) at run time.

    Compressed files (.gz, .zip, .bz2, .xz, .zst) are read as such. With `columns`, exactly
    those columns are kept, in that order, and a missing one stops the run; later steps are
    checked against them when the recipe is compiled. `dtype` reads chosen columns as a type
    instead of letting pandas guess (`str` keeps leading zeros in ids such as "007").
    """

    name = "csv"
    paths = ("path",)
    example: ClassVar[Mapping[str, Any]] = {
        "path": "data/calls.csv",
        "columns": ["call_id", "utterance", "intent", "duration"],
        "dtype": {"call_id": "str"},
    }

    class Settings(TableReadSettings):
        """Where the file is and how to read it."""

        path: str = Field(
            min_length=1,
            description="A local path or glob (relative to the working directory), a file:// URL, "
            "an http(s):// URL, or s3://bucket/key, a prefix ending in / or a glob.",
        )
        sep: str = Field(",", min_length=1, description="Field separator, e.g. `;` or `\\t`.")

        @field_validator("path")
        @classmethod
        def _known_scheme(cls, path: str) -> str:
            scheme = urlsplit(path).scheme.lower()
            if len(scheme) > 1 and scheme not in _SCHEMES:  # one letter: a Windows drive
                raise ValueError(
                    f"the csv source reads local files, http(s) and s3:// URLs, not `{scheme}://`"
                )
            return path

    def is_cacheable(self, settings: Settings) -> bool:
        """Remote files may change between runs without skitflow noticing: read them again."""
        return urlsplit(settings.path).scheme.lower() not in ("http", "https", "s3")

    def run(self, settings: Settings, ctx: RunContext) -> pd.DataFrame:
        import pandas as pd

        wanted = list(settings.columns) if settings.columns else None
        seen: list[str] = []
        frames: list[pd.DataFrame] = []
        remaining = settings.limit
        for location in _locations(settings.path, ctx):
            part = _read_one(location, settings, wanted, seen, remaining)
            if frames and list(part.columns) != list(frames[0].columns):
                raise StepFailed(
                    f"csv: {location} has columns {list(part.columns)}, the first file "
                    f"{list(frames[0].columns)}",
                    hint="files read together must have the same columns; declare `columns:` "
                    "to read only those",
                )
            frames.append(part)
            if remaining is not None:
                remaining -= len(part)
                if remaining <= 0:
                    break
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        frame = _shape(frame, settings, wanted, seen)
        ctx.log(f"csv: read {len(frame)} rows, {len(frame.columns)} columns from {settings.path}")
        return frame

    def batches(self, settings: Settings, ctx: RunContext, rows: int) -> Iterator[pd.DataFrame] | None:
        """The rows in chunks, read by the same parser with the same options as `run`.

        pandas guesses each chunk's types on its own, so every chunk must come out with the
        first one's dtypes, and none may be `object` (a mixed column, whose values depend on
        where the parser's own chunks fall): otherwise NotStreamable stops the chunks and the
        task reads the whole file instead. Categories and datetimes (their values depend on all
        rows) are never streamed.
        """
        if any(to in ("category", "datetime") for to in (settings.dtype or {}).values()):
            return None
        return self._batches(settings, ctx, rows)

    def _batches(self, settings: Settings, ctx: RunContext, rows: int) -> Iterator[pd.DataFrame]:
        from pandas.api.types import is_object_dtype

        wanted = list(settings.columns) if settings.columns else None
        seen: list[str] = []
        remaining, total = settings.limit, 0
        columns: list[str] | None = None
        dtypes: Any = None
        for location in _locations(settings.path, ctx):
            with _read_one(location, settings, wanted, seen, remaining, chunksize=rows) as reader:
                for part in reader:
                    if columns is None:
                        columns = list(part.columns)
                    elif list(part.columns) != columns:
                        raise NotStreamable(f"{location} has other columns")
                    frame = _shape(part, settings, wanted, seen)
                    if dtypes is None:
                        dtypes = frame.dtypes
                        mixed = [str(c) for c, t in dtypes.items() if is_object_dtype(t)]
                        if mixed:
                            raise NotStreamable(f"column(s) {', '.join(mixed)} hold mixed types")
                    elif not frame.dtypes.equals(dtypes):
                        raise NotStreamable("the columns' types change from chunk to chunk")
                    total += len(frame)
                    yield frame
            if settings.limit is not None:
                remaining = settings.limit - total
                if remaining <= 0:
                    break
        ctx.log(f"csv: read {total} rows, {len(dtypes) if dtypes is not None else 0} columns "
                f"from {settings.path}")


SOURCES: list[type[SourceStep]] = [CsvSource]


def _shape(frame: pd.DataFrame, settings: CsvSource.Settings, wanted: list[str] | None,
           seen: list[str]) -> pd.DataFrame:
    """The columns of the contract, in its order, with the `dtype` hints applied."""
    hints = dict(settings.dtype or {})
    if wanted is not None:
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            hint = did_you_mean(missing[0], seen) or f"the file has: {', '.join(seen)}"
            listed = ", ".join(f"`{c}`" for c in missing)
            raise StepFailed(f"csv: {settings.path} has no column {listed}", hint=hint)
        frame = frame[wanted]
    unread = [c for c in hints if c not in frame.columns]
    if unread:
        raise StepFailed(
            f"csv: dtype given for `{unread[0]}`, which {settings.path} does not have",
            hint=did_you_mean(unread[0], seen),
        )
    converted = {c: convert_column(frame[c], to, c, "csv") for c, to in hints.items()}
    if converted:
        frame = frame.assign(**converted)
    return frame


def _locations(path: str, ctx: RunContext) -> list[str]:
    """The files a `path` names: one path or URL, a local glob, or S3 objects fetched locally."""
    import glob
    import os

    if is_s3_uri(path):
        from skitflow.connectors.s3 import fetch_all

        return fetch_all(path, os.path.join(ctx.workdir, "csv-source"), environ=ctx.environ)
    if "://" not in path and any(char in path for char in _GLOB_CHARS):
        matches = sorted(glob.glob(path, recursive=True))
        if not matches:
            raise StepFailed(f"csv: no file matches {path}",
                             hint="relative paths are read from the current working directory")
        return matches
    return [path]


def _read_one(location: str, settings: CsvSource.Settings, wanted: list[str] | None,
              seen: list[str], limit: int | None, chunksize: int | None = None) -> Any:
    """One CSV file (a reader of chunks of it, with `chunksize`), with the errors a user can act
    on."""
    import pandas as pd

    def use(column: str) -> bool:  # records the header, for the did-you-mean of a miss
        if column not in seen:
            seen.append(column)
        return wanted is None or column in wanted

    hints = dict(settings.dtype or {})
    try:
        return pd.read_csv(
            location,
            sep=settings.sep,
            encoding=settings.encoding,
            usecols=use,
            nrows=limit,
            # read hinted columns as text and convert them below, with clear errors
            dtype=dict.fromkeys(hints, "str") or None,
            chunksize=chunksize,
        )
    except FileNotFoundError:
        raise StepFailed(
            f"csv: no such file: {location}",
            hint="relative paths are read from the current working directory",
        ) from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        raise RemoteError(f"csv: cannot read {location}: {reason}") from None
    except OSError as error:
        raise StepFailed(f"csv: cannot read {location}: {error}") from None
    except UnicodeDecodeError as error:
        raise StepFailed(
            f"csv: {location} is not valid {settings.encoding}: {error.reason}",
            hint="set `encoding`, e.g. `encoding: latin-1`",
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise StepFailed(f"csv: cannot parse {location}: {error}") from None
