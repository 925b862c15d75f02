"""Files a reader can trust: whole or not there at all.

Every file skitflow writes for a person or a later task (packages, schemas, run logs, summaries,
datasets, sink outputs) goes through here. The content is written to a hidden temporary file in
the target's own folder (a rename across file systems is not atomic), flushed to disk with fsync,
renamed onto the target in one step, and the folder is fsynced so the rename itself survives a
crash. A reader therefore sees the old file or the new one, never half of one.

Temporary names carry the writer's process id (`.<name>.<pid>.<random>.tmp`), so a later run can
tell the leftovers of a killed process from a write in progress: `sweep_stale_temps` removes the
ones whose owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_folder", "atomic_path", "sweep_stale_temps", "write_bytes", "write_text"]

_TEMP_NAME = re.compile(r"^\..+?\.(\d+)(?:\.[0-9a-f]{8})?\.tmp$")
_MAX_NAME = 200  # keeps `.<name>.<pid>.<random>.tmp` under NAME_MAX (255)


def temp_name(target: str | os.PathLike[str]) -> Path:
    """A fresh hidden temporary path beside `target`, tagged with this process's id."""
    path = Path(target)
    return path.with_name(f".{path.name[:_MAX_NAME]}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where the file system cannot do it)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _publish(temporary: Path, target: Path, overwrite: bool) -> None:
    """Move `temporary` onto `target`; without `overwrite`, never replace an existing target.

    A hard link publishes without replacing (it fails if the target appeared meanwhile); a file
    system without hard links falls back to check-then-rename.
    """
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise FileExistsError(f"{target} exists") from None
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists") from None
        os.replace(temporary, target)
        return
    os.unlink(temporary)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write (for libraries that write paths: pandas, pyarrow, ...);
    when the block ends without an error, the file is fsynced and renamed onto `target`.

    The temporary file already exists (empty) and has the usual permissions (0666 less the
    umask), so the result is readable like any file the user writes. On an error, it is removed
    and `target` is left as it was. Without `overwrite`, an existing target raises
    FileExistsError and is kept.
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temp_name(final)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temporary
        _fsync_file(temporary)
        _publish(temporary, final, overwrite)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(final.parent)


def write_bytes(target: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> Path:
    """Write `data` to `target` atomically; returns the target path."""
    with atomic_path(target, overwrite=overwrite) as temporary:
        temporary.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str, *, overwrite: bool = True,
               encoding: str = "utf-8") -> Path:
    """Write `text` to `target` atomically; returns the target path."""
    return write_bytes(target, text.encode(encoding), overwrite=overwrite)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder path (not yet created) to fill; then swap it in for `target`.

    The old folder (or file) is moved aside, the new one renamed into place, and the old one
    deleted; if anything fails, the old one is put back. Without `overwrite`, an existing target
    raises FileExistsError.
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temp_name(final)
    old: Path | None = None
    try:
        yield temporary
        if os.path.lexists(final):
            if not overwrite:
                raise FileExistsError(f"{final} exists")
            old = temp_name(final)
            os.replace(final, old)
        os.replace(temporary, final)
    except BaseException:
        _remove(temporary)
        if old is not None and not os.path.lexists(final):
            os.replace(old, final)
        raise
    _fsync_folder(final.parent)
    if old is not None:
        _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale_temps(root: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files and folders under `root` whose writing process has died.

    Only names this module (or a task writing through it) makes are touched, and only when the
    process id in the name no longer runs; a write in progress is left alone. Returns what was
    removed.
    """
    removed: list[Path] = []
    if not os.path.isdir(root):
        return removed
    for folder, dirs, files in os.walk(root):
        for name in [*files, *dirs]:
            match = _TEMP_NAME.match(name)
            if not match or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
                continue
            path = Path(folder, name)
            with contextlib.suppress(OSError):
                _remove(path)
                removed.append(path)
        dirs[:] = [d for d in dirs if not _TEMP_NAME.match(d)]
    return removed
