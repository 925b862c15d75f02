"""Built-in sinks: where a recipe's artifacts end up.

`file` writes any artifact (a dataset, a model, metrics, a report) to a local path. Writes are
atomic (`skitflow.util.atomic`): the content goes to a hidden temporary file in the destination
folder, is fsynced, then replaces the destination in one rename, so a reader (or a crash half-way)
never sees a half-written file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from skitflow.errors import StepFailed
from skitflow.steps.base import ArtifactFile, RunContext, SinkStep, StepSettings
from skitflow.util.atomic import atomic_folder, atomic_path

__all__ = ["SINKS"]

_DATASET_FORMATS = ("parquet", "csv")
#: The file extension of each artifact format: a folder receives `<role><ext>` (report.html).
EXTENSIONS = {"parquet": ".parquet", "csv": ".csv", "skitflow-bundle": ".zip", "xgboost-json": ".json",
              "json": ".json", "html": ".html"}


def artifact_file_name(role: str, file_format: str) -> str:
    """The name an artifact gets in a folder: `dataset.parquet`, `model.zip`, `report.html`."""
    return role + EXTENSIONS.get(file_format, "")


def _local_path(path: str) -> str:
    """A plain local path for `path` or a file:// URL (raises ValueError for other URLs)."""
    parts = urlsplit(path)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URLs must be local, not on host `{parts.netloc}`")
        from urllib.request import url2pathname  # 8 ms of http/ssl imports: only for file:// URLs

        return url2pathname(parts.path)
    if len(scheme) > 1:  # one letter: a Windows drive such as C:
        raise ValueError(f"the file sink writes local paths or file:// URLs, not `{scheme}://`")
    return os.path.expanduser(path)


class WriteSettings(StepSettings):
    """What every sink that writes files or objects shares: the format and whether to replace."""

    format: Literal["auto", "parquet", "csv"] = Field(
        "auto",
        description="`auto` keeps the artifact's own format (always the case for models); "
        "`parquet` or `csv` converts a dataset.",
    )
    overwrite: bool = Field(
        True, description="Replace what is already there; false makes an existing target an error."
    )


class FileSink(SinkStep):
    """Write an artifact to a local file: a dataset as Parquet or CSV, anything else as is.

    A path ending in `/` (or naming an existing folder, for a file) receives the artifact as
    `<role>.<ext>` (`dataset.parquet`, `model.zip`, `report.html`); a folder artifact (format `dir`) replaces the folder at its path. The path may use templates such as `{{ recipe.name }}`; they are rendered before
    the sink runs. Parent folders are created. The write is atomic, and with `overwrite: false`
    an existing file is never replaced.
    """

    name = "file"
    paths = ("path",)
    example: ClassVar[Mapping[str, Any]] = {"path": "out/{{ recipe.name }}.csv", "format": "csv"}

    class Settings(WriteSettings):
        """Where to write and in which format."""

        path: str = Field(
            min_length=1,
            description="A local path or file:// URL. Ending in `/`: a folder that receives the "
            "artifact as `<role>.<ext>` (`report.html`, `model.zip`).",
        )

        @field_validator("path")
        @classmethod
        def _local(cls, path: str) -> str:
            _local_path(path)
            return path

    def run(self, artifact: ArtifactFile, settings: Settings, ctx: RunContext) -> str:
        source = artifact.path
        if not os.path.exists(source):
            raise StepFailed(f"file: the {artifact.role} to write is missing: {source}")
        convert = settings.format not in ("auto", artifact.format)
        if convert and artifact.format not in _DATASET_FORMATS:
            raise StepFailed(
                f"file: a {artifact.role} ({artifact.format}) cannot be written as "
                f"{settings.format}; only datasets can be converted",
                hint="use `format: auto` to write it as it is",
            )
        target = self._target(settings, source, artifact_file_name(
            artifact.role, settings.format if convert else artifact.format))
        if not settings.overwrite and os.path.lexists(target):
            raise _exists_error(target)
        if os.path.exists(target) and os.path.samefile(source, target):
            return target
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(source):
            _replace_folder(source, target, settings.overwrite)
        else:
            write = _converter(artifact.format, settings.format) if convert else _copier
            _write_atomically(
                target, lambda temporary: write(source, temporary), settings.overwrite
            )
        return target

    @staticmethod
    def _target(settings: Settings, source: str, name: str) -> str:
        """The file to write; a folder (an existing one, or a path ending in `/`) receives the
        artifact as `name` (`<role><ext>`, as the s3 sink names it), except that a folder
        artifact replaces a folder path not ending in `/`."""
        path = _local_path(settings.path)
        into = path.endswith(("/", os.sep)) or (os.path.isdir(path) and not os.path.isdir(source))
        if into:
            path = os.path.join(path, name)
        return os.path.abspath(path)


def _copier(source: str, destination: str) -> None:
    with open(source, "rb") as reader, open(destination, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1024 * 1024)


def _converter(source_format: str, target_format: str) -> Callable[[str, str], None]:
    """Read a dataset in one format and write it in the other (pandas only when needed)."""

    def convert(source: str, destination: str) -> None:
        import pandas as pd

        frame = pd.read_parquet(source) if source_format == "parquet" else pd.read_csv(source)
        if target_format == "parquet":
            frame.to_parquet(destination, index=False)
        else:
            frame.to_csv(destination, index=False)

    return convert


def _write_atomically(target: str, write: Callable[[str], None], overwrite: bool) -> None:
    """Write through `write(temporary_path)`, then publish onto `target` in one step
    (`util.atomic`); without `overwrite`, a target that exists or appears meanwhile is kept."""
    try:
        with atomic_path(target, overwrite=overwrite) as temporary:
            write(str(temporary))
    except FileExistsError:
        raise _exists_error(target) from None


def _exists_error(target: str) -> StepFailed:
    return StepFailed(
        f"file: {target} exists and `overwrite` is false",
        hint="change the path (e.g. add {{ run.id }}) or set `overwrite: true`",
    )


def _replace_folder(source: str, target: str, overwrite: bool) -> None:
    """Copy a folder artifact next to `target`, then swap it in with renames."""
    try:
        with atomic_folder(target, overwrite=overwrite) as temporary:
            shutil.copytree(source, temporary)
    except FileExistsError:
        raise _exists_error(target) from None


SINKS: list[type[SinkStep]] = [FileSink]
