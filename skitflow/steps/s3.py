"""S3 steps: the `s3` sink and the `s3` source, for AWS and S3-compatible stores.

Endpoint and credentials come from the environment when the task runs (see
:mod:`skitflow.connectors.s3`), never from the recipe, so a recipe can be shared and compiled
without secrets. boto3, pyarrow and pandas are imported inside `run`, so `skitflow validate`
stays fast.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from skitflow.connectors.s3_uri import is_s3_uri, parse_uri
from skitflow.errors import StepFailed, did_you_mean
from skitflow.steps.base import ArtifactFile, RunContext, SinkStep, SourceStep
from skitflow.steps.sinks import WriteSettings, artifact_file_name
from skitflow.steps.sources import TableReadSettings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["S3_STEPS"]

MiB = 1024 * 1024
_DATASET_FORMATS = ("parquet", "csv")
_CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv",
                  "skitflow-bundle": "application/zip", "xgboost-json": "application/json",
                  "json": "application/json",
                  "html": "text/html"}


def _check_s3_uri(uri: str) -> str:
    parse_uri(uri)
    return uri


class S3Sink(SinkStep):
    """Write an artifact to S3 or an S3-compatible store: a dataset as Parquet or CSV, anything else as is.

    The object appears under its key only once the whole upload completed, big files go up in
    parts in parallel, and the server's SHA-256 of what it received is compared with the local
    file's. A `uri` ending in `/` receives the artifact as `<role>.<ext>` (`dataset.parquet`,
    `model.zip`, the model bundle). Templates such as `{{ run.id }}` in the uri are rendered first. A `file://`
    URL or a local path is written like the `file` sink does. Endpoint and credentials come from
    the environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
    """

    name = "s3"
    paths = ("uri",)
    example: ClassVar[Mapping[str, Any]] = {
        "uri": "s3://my-bucket/{{ recipe.name }}/{{ run.id }}/dataset.csv",
        "format": "csv",
    }

    class Settings(WriteSettings):
        """Where to write, in which format, and how."""

        uri: str = Field(
            min_length=1,
            description="s3://bucket/key (ending in `/`: a folder receiving `<role>.<ext>`), a "
            "file:// URL or a local path.",
        )
        multipart_threshold_mb: int = Field(
            64, ge=1, le=5 * 1024,
            description="Files of at least this many MiB go up in parts, several at once.",
        )
        part_size_mb: int = Field(
            16, ge=5, le=5 * 1024, description="Size of each part of a multipart upload, in MiB."
        )
        content_type: str | None = Field(
            None, description="Content-Type of the object; by default from the format."
        )

        @field_validator("uri")
        @classmethod
        def _known_target(cls, uri: str) -> str:
            if is_s3_uri(uri):
                return _check_s3_uri(uri)
            scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
            if scheme not in ("", "file"):
                raise ValueError(
                    f"the s3 sink writes s3:// URIs, file:// URLs and local paths, not `{scheme}://`"
                )
            return uri

    def run(self, artifact: ArtifactFile, settings: Settings, ctx: RunContext) -> str:
        if not os.path.exists(artifact.path):
            raise StepFailed(f"s3: the {artifact.role} to write is missing: {artifact.path}")
        convert = settings.format not in ("auto", artifact.format)
        if convert and artifact.format not in _DATASET_FORMATS:
            raise StepFailed(
                f"s3: a {artifact.role} ({artifact.format or 'file'}) cannot be written as "
                f"{settings.format}; only datasets can be converted",
                hint="use `format: auto` to write it as it is",
            )
        if not is_s3_uri(settings.uri):
            return self._write_local(artifact, settings, ctx)
        from skitflow.connectors.s3 import S3

        file_format = settings.format if convert else artifact.format
        target = parse_uri(settings.uri)
        if target.is_prefix:
            target = target.with_key(target.key + artifact_file_name(artifact.role, file_format))
        client = S3(ctx.environ)
        with tempfile.TemporaryDirectory(prefix=".s3-sink-", dir=_scratch_root(ctx)) as scratch:
            payload = artifact.path
            if convert:  # the file sink's conversion: the same bytes as a `file` sink writes
                payload = self._write_local(artifact, settings.model_copy(update={
                    "uri": os.path.join(scratch, f"{artifact.role}.{settings.format}"),
                    "overwrite": True}), ctx)
            if os.path.isdir(payload):
                return self._upload_folder(client, payload, target, settings, ctx, artifact)
            content_type = settings.content_type or _content_type(file_format, target.key)
            result = client.upload(
                payload, target, overwrite=settings.overwrite, content_type=content_type,
                multipart_threshold=settings.multipart_threshold_mb * MiB,
                part_size=settings.part_size_mb * MiB,
            )
        from skitflow.connectors.s3 import human_rate

        parts = f"{result.parts} parts" if result.parts > 1 else "one request"
        check = ("SHA-256 verified" if result.checksum_confirmed
                 else "size verified (the server reports no SHA-256)")
        ctx.log(f"s3: uploaded {artifact.role} ({file_format or 'file'}) to {result.uri}: "
                f"{human_rate(result.size, result.seconds)}, {parts}, {check}")
        return str(result.uri)

    @staticmethod
    def _upload_folder(client: Any, folder: str, target: Any, settings: Settings,
                       ctx: RunContext, artifact: ArtifactFile) -> str:
        """A folder artifact becomes one object per file under `<uri>/` (each one atomic)."""
        prefix = target.key if target.key.endswith("/") else target.key + "/"
        files = sorted(
            os.path.relpath(os.path.join(root, name), folder)
            for root, _, names in os.walk(folder) for name in names
        )
        if not settings.overwrite and client.list_objects(target.with_key(prefix)):
            from skitflow.connectors.s3_errors import exists_error

            raise exists_error(target.with_key(prefix))
        for relative in files:
            key = prefix + relative.replace(os.sep, "/")
            client.upload(os.path.join(folder, relative), target.with_key(key),
                          overwrite=settings.overwrite,
                          content_type=settings.content_type or _content_type("", key),
                          multipart_threshold=settings.multipart_threshold_mb * MiB,
                          part_size=settings.part_size_mb * MiB)
        where = f"s3://{target.bucket}/{prefix}"
        ctx.log(f"s3: uploaded {artifact.role} folder ({len(files)} files) to {where}")
        return where

    @staticmethod
    def _write_local(artifact: ArtifactFile, settings: Settings, ctx: RunContext) -> str:
        """A local target is the `file` sink's job: one atomic write, the same everywhere."""
        from skitflow.steps.sinks import FileSink

        sink = FileSink()
        local = sink.Settings(path=settings.uri, format=settings.format,
                              overwrite=settings.overwrite)
        return sink.run(artifact, local, ctx)


def _scratch_root(ctx: RunContext) -> str | None:
    """The task's folder when writable (a converted copy stays next to the data), else /tmp."""
    folder = ctx.workdir
    return folder if folder and os.path.isdir(folder) and os.access(folder, os.W_OK) else None


def _content_type(file_format: str, key: str) -> str:
    if file_format in _CONTENT_TYPES:
        return _CONTENT_TYPES[file_format]
    import mimetypes  # it reads the system's type tables; validating never gets here

    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


class S3ObjectsSource(SourceStep):
    """Read CSV or Parquet objects from S3 or an S3-compatible store: one object, a prefix or a glob.

    `s3://bucket/data.csv` reads one object, `s3://bucket/data/` every object under the prefix
    (skipping `_*` and `.*` names such as _SUCCESS), `s3://bucket/data/*.csv` those matching the
    glob (`*` stays within a folder, `**` crosses folders); several objects are concatenated in
    key order and must have the same columns. Each object is fetched once; with `limit` the read
    stops as soon as enough rows are in. With `columns`, exactly those are kept, in that order,
    and a missing one stops the run. Endpoint and credentials come from the environment.
    """

    name = "s3"
    paths = ("uri",)
    cacheable = False  # objects may change between runs without skitflow noticing
    example: ClassVar[Mapping[str, Any]] = {
        "uri": "s3://my-bucket/calls/2024-*.csv",
        "columns": ["call_id", "utterance", "intent", "duration"],
        "dtype": {"call_id": "str"},
    }

    class Settings(TableReadSettings):
        """Which objects and how to read them."""

        uri: str = Field(
            min_length=1,
            description="s3://bucket/key for one object, s3://bucket/prefix/ for all under it, or "
            "a glob such as s3://bucket/dir/*.csv.",
        )
        format: Literal["auto", "csv", "parquet"] = Field(
            "auto", description="`auto`: from each object's extension (.csv, .tsv, .parquet, "
            "optionally .gz/.bz2/.zst)."
        )
        sep: str | None = Field(
            None, description="CSV field separator, one character; `,` (tab for .tsv) if omitted."
        )

        @field_validator("uri")
        @classmethod
        def _s3_only(cls, uri: str) -> str:
            if not is_s3_uri(uri):
                raise ValueError("s3 reads s3:// URIs; use the csv source for local files")
            return _check_s3_uri(uri)

        @field_validator("sep")
        @classmethod
        def _one_character(cls, sep: str | None) -> str | None:
            if sep is None:
                return None
            sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)
            if len(sep) != 1:
                raise ValueError(f"`sep` must be one character, not `{sep}`")
            return sep

    def run(self, settings: Settings, ctx: RunContext) -> pd.DataFrame:
        from skitflow.connectors.s3_tables import read_table
        from skitflow.steps.columns import convert_column

        hints = dict(settings.dtype or {})
        table = read_table(
            settings.uri,
            format=settings.format,
            columns=settings.columns,
            text_columns=list(hints),
            limit=settings.limit,
            sep=settings.sep,
            encoding=settings.encoding,
            directory=_scratch_root(ctx),
            environ=ctx.environ,
            log=lambda message: ctx.log(f"s3: {message}"),
        )
        frame = table.to_pandas()
        del table
        unread = [c for c in hints if c not in frame.columns]
        if unread:
            raise StepFailed(
                f"s3: dtype given for `{unread[0]}`, which {settings.uri} does not have",
                hint=did_you_mean(unread[0], [str(c) for c in frame.columns]),
            )
        converted = {c: convert_column(frame[c], to, c, "s3") for c, to in hints.items()}
        if converted:
            frame = frame.assign(**converted)
        ctx.log(f"s3: read {len(frame)} rows, {len(frame.columns)} columns from "
                f"{settings.uri}")
        return frame


S3_STEPS: list[type[SinkStep] | type[SourceStep]] = [S3ObjectsSource, S3Sink]
