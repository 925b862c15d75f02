"""Content digests of files and folders: what the local cache keys on and verifies against.

SHA-256 read in 1 MiB chunks (constant memory). It was chosen over
BLAKE2b because OpenSSL's SHA-256 uses the CPU's SHA extensions: about 1.2 GB/s against 0.5 GB/s
for BLAKE2b on the machines this was measured on.
"""

from __future__ import annotations

import hashlib
import os

_CHUNK = 1024 * 1024


def file_digest(path: str | os.PathLike[str]) -> str:
    """`sha256:<hex>` of a file's bytes, read in chunks so big files cost no memory."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def tree_digest(path: str | os.PathLike[str]) -> str:
    """A digest of a file, or of a folder: every file's relative path and content, in order."""
    if not os.path.isdir(path):
        return file_digest(path)
    whole = hashlib.sha256()
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            whole.update(os.path.relpath(full, path).encode() + b"\0")
            whole.update(file_digest(full).encode() + b"\n")
    return "sha256:" + whole.hexdigest()
