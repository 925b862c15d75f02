"""S3 and S3-compatible object stores (SeaweedFS, MinIO, Ceph) for sources and sinks.

Where and who come from the environment at run time only, never from a recipe: the standard
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` / ``AWS_DEFAULT_REGION``
(or any other credential boto3 finds: a profile, a web identity on Kubernetes), and
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` / ``S3_ENDPOINT_URL`` for a server that is not AWS,
which is then addressed path-style. Transient faults are retried under the shared
:class:`~skitflow.util.retry.RetryPolicy` (SKITFLOW_RETRY_ATTEMPTS, or botocore's own
``AWS_MAX_ATTEMPTS``, counts the tries; the waits are botocore's "standard" exponential backoff).

Uploads go through boto3's managed transfer, so a big file goes up in parts, in parallel. An
object only becomes visible under its key once the whole upload completed (S3 never shows a
half-written object; an unfinished multipart upload is aborted), and every upload is checked
afterwards: the server stores the SHA-256 of what it received (``ChecksumAlgorithm=SHA256``;
for a multipart upload the SHA-256 of the parts' SHA-256s, suffixed ``-<parts>``), and that must
equal the checksum computed here from the local file. Errors become :class:`RemoteError` with a
message naming the endpoint, bucket or key and the environment variables to check; secret
values never appear in them.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from skitflow.connectors.s3_errors import ErrorTranslator, error_code, exists_error, with_code
from skitflow.connectors.s3_uri import S3Uri, is_s3_uri, parse_uri
from skitflow.errors import RemoteError, StepFailed, did_you_mean
from skitflow.util.globs import glob_pattern, glob_prefix
from skitflow.util.retry import RetryPolicy

__all__ = [
    "S3",
    "ObjectInfo",
    "S3Uri",
    "UploadResult",
    "endpoint_from_env",
    "fetch_all",
    "is_s3_uri",
    "local_name",
    "open_for_read",
    "parse_uri",
    "upload",
]

MiB = 1024 * 1024
CONNECT_TIMEOUT_S = 10
DEFAULT_CONCURRENCY = 10
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")


# -- objects ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """An object found by a listing or a HEAD."""

    uri: S3Uri
    size: int
    etag: str = ""


@dataclasses.dataclass(frozen=True)
class UploadResult:
    """What an upload wrote, and the checksum the server confirmed."""

    uri: S3Uri
    size: int
    checksum_sha256: str  # base64, "-<parts>" for a multipart upload
    parts: int
    seconds: float
    checksum_confirmed: bool = True  # False: the server returned no SHA-256, only the size matched


# -- environment --------------------------------------------------------------------------------


def endpoint_from_env(environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint URL set in the environment, or None for AWS itself."""
    for name in ENDPOINT_VARIABLES:
        value = (environ.get(name) or "").strip()
        if value:
            return value
    return None


def retry_policy(environ: Mapping[str, str]) -> RetryPolicy:
    """The shared retry policy; botocore's own AWS_MAX_ATTEMPTS sets the tries when given."""
    return RetryPolicy.from_env(environ, extra={"AWS_MAX_ATTEMPTS": "attempts"})


# -- the client ---------------------------------------------------------------------------------


class S3:
    """One boto3 S3 client configured from the environment, with errors translated.

    Credentials are not read here beyond handing them to boto3; nothing stores or prints them.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *,
                 max_attempts: int | None = None, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        import boto3
        from botocore.config import Config

        env = os.environ if environ is None else environ
        self.environ = env
        self.endpoint_url = endpoint_from_env(env)
        policy = retry_policy(env)
        if max_attempts:
            policy = policy.with_attempts(max_attempts)
        self.max_attempts = policy.attempts
        self.concurrency = concurrency
        config = Config(
            retries=policy.botocore_retries(),
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=policy.timeout,
            max_pool_connections=max(10, concurrency + 2),
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            signature_version="s3v4",
        )
        session_args: dict[str, Any] = {}
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            session_args = {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
                            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                            "aws_session_token": env.get("AWS_SESSION_TOKEN") or None}
        elif env.get("AWS_PROFILE"):
            session_args = {"profile_name": env["AWS_PROFILE"]}
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        if region is None and self.endpoint_url:
            region = "us-east-1"  # S3-compatible servers ignore it, but signing needs one
        try:
            session = boto3.session.Session(**session_args)
            self.client = session.client("s3", endpoint_url=self.endpoint_url,
                                         region_name=region, config=config)
        except ValueError as exc:  # a malformed endpoint URL
            raise RemoteError(f"s3: the endpoint URL is not valid: {exc}",
                              hint="fix AWS_ENDPOINT_URL (e.g. http://127.0.0.1:8333)") from None
        self.endpoint = str(self.client.meta.endpoint_url)
        self.error = ErrorTranslator(self.endpoint, self.max_attempts, env)

    # -- lookups ---------------------------------------------------------------------------

    def head(self, uri: S3Uri) -> dict[str, Any] | None:
        """The object's HEAD response (with its checksum), or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED")
        except ClientError as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            if code in ("403", "400"):  # a HEAD has no error body: ask again to learn why
                raise (self._explain(uri, "reading") or self.error(exc, "reading", uri)) from None
            raise self.error(exc, "reading", uri) from None
        except Exception as exc:
            raise self.error(exc, "reading", uri) from None

    def check_bucket(self, uri: S3Uri, action: str) -> None:
        """Fail clearly when the bucket is missing (some servers create one on a first PUT)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=uri.bucket)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise self.error(with_code(exc, "NoSuchBucket"), action, uri) from None
            if code in ("403", "400"):
                error = self._explain(uri, action)
                if error is None:
                    return  # may write but not list: let the write itself decide
                raise error from None
            raise self.error(exc, action, uri) from None
        except Exception as exc:
            raise self.error(exc, action, uri) from None

    def _explain(self, uri: S3Uri, action: str) -> RemoteError | None:
        """A HEAD's 403 has no body; a listing's error names the cause (a bad key, ...).

        None when the listing itself is merely forbidden (credentials are fine, permissions
        are narrow).
        """
        try:
            self.client.list_objects_v2(Bucket=uri.bucket, Prefix=uri.key, MaxKeys=1)
        except Exception as exc:
            if error_code(exc) in ("AccessDenied", "403"):
                return None
            return self.error(exc, action, uri)
        return None

    def list_objects(self, uri: S3Uri) -> list[ObjectInfo]:
        """Objects under a prefix or matching a glob, sorted by key.

        Folder markers (keys ending in /) are skipped, and so are names starting with `_` or
        `.` below a plain prefix (job markers such as _SUCCESS, hidden temporary files).
        """
        if uri.is_glob:
            prefix = glob_prefix(uri.key)
            pattern: re.Pattern[str] | None = glob_pattern(uri.key)
        else:
            prefix, pattern = uri.key, None
        found = []
        for item in self._list_prefix(uri, prefix):
            key = item["Key"]
            if key.endswith("/"):
                continue
            if pattern is not None:
                if not pattern.match(key):
                    continue
            elif os.path.basename(key).startswith(("_", ".")):
                continue
            found.append(ObjectInfo(uri.with_key(key), int(item.get("Size", 0)),
                                    str(item.get("ETag", ""))))
        return sorted(found, key=lambda o: o.uri.key)

    def _list_prefix(self, uri: S3Uri, prefix: str, limit: int | None = None) -> Iterator[dict]:
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            seen = 0
            for page in paginator.paginate(Bucket=uri.bucket, Prefix=prefix):
                for item in page.get("Contents", []) or []:
                    yield item
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
        except Exception as exc:
            raise self.error(exc, "listing", uri.with_key(prefix)) from None

    def resolve(self, uri: S3Uri) -> list[ObjectInfo]:
        """The objects a source URI names: one object, everything under a prefix, or a glob."""
        if uri.is_glob or uri.is_prefix:
            objects = self.list_objects(uri)
            if not objects:
                raise self._nothing_matches(uri)
            return objects
        head = self.head(uri)
        if head is None:
            raise self._missing_object(uri)
        return [ObjectInfo(uri, int(head.get("ContentLength", 0)), str(head.get("ETag", "")))]

    def _nothing_matches(self, uri: S3Uri) -> StepFailed:
        parent = uri.key[: uri.key.rfind("/") + 1] if "/" in uri.key else ""
        nearby = [i["Key"] for i in self._list_prefix(uri, parent, limit=8)]
        what = "matches" if uri.is_glob else "is under"
        hint = ("the bucket is empty there" if not nearby else
                "found nearby: " + ", ".join(nearby[:5]) + (" ..." if len(nearby) > 5 else ""))
        return StepFailed(f"s3: no object {what} {uri}", hint=hint)

    def _missing_object(self, uri: S3Uri) -> StepFailed:
        self.check_bucket(uri, "reading")
        inside = list(self._list_prefix(uri, uri.key + "/", limit=1))
        if inside:
            return StepFailed(f"s3: no object {uri}, but it is a folder",
                              hint=f"write {uri}/ to read every object in it")
        parent = uri.key[: uri.key.rfind("/") + 1] if "/" in uri.key else ""
        siblings = [i["Key"] for i in self._list_prefix(uri, parent, limit=200)]
        hint = did_you_mean(uri.key, siblings)
        if hint is None and siblings:
            hint = "found nearby: " + ", ".join(siblings[:5]) + (" ..." if len(siblings) > 5 else "")
        return StepFailed(f"s3: no object {uri}", hint=hint or f"`{parent or '/'}` is empty")

    # -- transfers -------------------------------------------------------------------------

    def _transfer_manager(self, threshold: int, part_size: int) -> Any:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=part_size,
                                max_concurrency=self.concurrency, use_threads=True,
                                preferred_transfer_client="classic")
        return create_transfer_manager(self.client, config)

    def upload(self, path: str, uri: S3Uri, *, overwrite: bool = True,
               content_type: str | None = None,
               multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
               part_size: int = DEFAULT_PART_SIZE,
               progress: Callable[[int], None] | None = None) -> UploadResult:
        """Upload one file; it becomes visible under `uri` only when complete and verified.

        Without `overwrite`, an existing object is refused twice over: a HEAD before, and a
        conditional write (If-None-Match: *) on the final request, which servers that support
        it use to refuse an object created meanwhile.
        """
        from s3transfer.utils import ChunksizeAdjuster

        started = time.perf_counter()
        size = os.path.getsize(path)
        part_size = ChunksizeAdjuster().adjust_chunksize(part_size, size)
        multipart = size >= multipart_threshold
        expected, parts = sha256_checksum(path, part_size if multipart else None)
        self.check_bucket(uri, "writing")
        if not overwrite and self.head(uri) is not None:
            raise exists_error(uri)
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
        if content_type:
            extra["ContentType"] = content_type
        subscribers = []
        if progress is not None:
            from boto3.s3.transfer import ProgressCallbackInvoker

            subscribers.append(ProgressCallbackInvoker(progress))
        events = self.client.meta.events
        guard = f"skitflow-if-none-match-{id(self)}-{time.monotonic_ns()}"
        if not overwrite:
            for operation in ("PutObject", "CompleteMultipartUpload"):
                events.register(f"before-parameter-build.s3.{operation}", _if_none_match,
                                unique_id=guard + operation)
        try:
            with self._transfer_manager(multipart_threshold, part_size) as manager:
                manager.upload(path, uri.bucket, uri.key, extra, subscribers).result()
        except Exception as exc:
            if not overwrite and error_code(exc) == "PreconditionFailed":
                raise exists_error(uri) from None
            raise self.error(exc, "writing", uri) from None
        finally:
            if not overwrite:
                for operation in ("PutObject", "CompleteMultipartUpload"):
                    events.unregister(f"before-parameter-build.s3.{operation}",
                                      unique_id=guard + operation)
        confirmed = self._verify(uri, size, expected)
        return UploadResult(uri, size, expected, parts, time.perf_counter() - started, confirmed)

    def _verify(self, uri: S3Uri, size: int, expected: str) -> bool:
        """Compare the server's size and SHA-256 with the local file's; remove a bad object.

        Returns whether the server reported a SHA-256 (a server without checksum support
        reports none, and only the size can be compared).
        """
        head = self.head(uri)
        problem = None
        if head is None:
            problem = "the object is missing right after its upload"
        elif int(head.get("ContentLength", -1)) != size:
            problem = f"the object holds {head.get('ContentLength')} bytes, not {size}"
        elif head.get("ChecksumSHA256") and head["ChecksumSHA256"] != expected:
            problem = (f"its SHA-256 checksum {head['ChecksumSHA256']} differs from the local "
                       f"file's {expected}")
        if problem is None:
            return bool(head and head.get("ChecksumSHA256"))
        with contextlib.suppress(Exception):
            self.client.delete_object(Bucket=uri.bucket, Key=uri.key)
        raise RemoteError(f"s3: verification of {uri} failed: {problem}; the object was removed",
                          hint="run again; if it persists, the server corrupts data")

    def download(self, obj: ObjectInfo, path: str, *, part_size: int = DEFAULT_PART_SIZE,
                 progress: Callable[[int], None] | None = None) -> str:
        """Download with parallel ranged GETs into `path` (written under a temporary name)."""
        subscribers = []
        if progress is not None:
            from boto3.s3.transfer import ProgressCallbackInvoker

            subscribers.append(ProgressCallbackInvoker(progress))
        try:
            with self._transfer_manager(part_size, part_size) as manager:
                manager.download(obj.uri.bucket, obj.uri.key, path, {"ChecksumMode": "ENABLED"},
                                 subscribers).result()
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey"):
                raise self._missing_object(obj.uri) from None
            raise self.error(exc, "reading", obj.uri) from None
        return path

    def open_stream(self, uri: S3Uri) -> Any:
        """The body of one GET, to read once front to back (e.g. the first rows of a sample)."""
        try:
            return self.client.get_object(Bucket=uri.bucket, Key=uri.key,
                                          ChecksumMode="ENABLED")["Body"]
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey"):
                raise self._missing_object(uri) from None
            raise self.error(exc, "reading", uri) from None


def _if_none_match(params: dict[str, Any], **_: Any) -> None:
    params["IfNoneMatch"] = "*"


def sha256_checksum(path: str, part_size: int | None) -> tuple[str, int]:
    """The checksum S3 reports for `path` uploaded whole (`part_size` None) or in parts.

    Whole: base64 SHA-256 of the content. In parts: base64 SHA-256 of the concatenated binary
    SHA-256s of the parts, then ``-<number of parts>`` (S3's "composite" checksum). One pass.
    Returns the checksum and the number of parts.
    """
    with open(path, "rb") as handle:
        if part_size is None:
            whole = hashlib.sha256()
            for chunk in iter(lambda: handle.read(8 * MiB), b""):
                whole.update(chunk)
            return base64.b64encode(whole.digest()).decode(), 1
        digests = [hashlib.sha256(chunk).digest()
                   for chunk in iter(lambda: handle.read(part_size), b"")]
    composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    return f"{composite}-{len(digests)}", len(digests)


# -- uploads of local files, with dataset conversion --------------------------------------------


def upload(path: str, uri: str, *, overwrite: bool = True, content_type: str | None = None,
           multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
           part_size: int = DEFAULT_PART_SIZE, environ: Mapping[str, str] | None = None,
           progress: Callable[[int], None] | None = None) -> UploadResult:
    """Upload a local file to an ``s3://`` URI (a client from the environment)."""
    return S3(environ).upload(path, parse_uri(uri), overwrite=overwrite,
                              content_type=content_type,
                              multipart_threshold=multipart_threshold, part_size=part_size,
                              progress=progress)


def local_name(directory: str, obj: ObjectInfo) -> str:
    """A fresh local file named like the object (its extension tells pyarrow the compression)."""
    base = os.path.basename(obj.uri.key) or "object"
    handle, path = tempfile.mkstemp(prefix=".s3-", suffix="-" + base[-80:], dir=directory)
    os.close(handle)
    return path


def fetch_all(uri: str, directory: str, *, environ: Mapping[str, str] | None = None,
              client: S3 | None = None) -> list[str]:
    """Download every object `uri` names (object, prefix or glob) into `directory`, in key order.

    The local files keep the objects' names (suffixed to stay unique), so their extensions still
    say how they are compressed. Raises StepFailed when nothing matches.
    """
    s3 = client or S3(environ)
    os.makedirs(directory, exist_ok=True)
    return [s3.download(obj, local_name(directory, obj)) for obj in s3.resolve(parse_uri(uri))]


def open_for_read(uri: str, directory: str | None = None, *,
                  environ: Mapping[str, str] | None = None) -> str:
    """Download the one object `uri` names and return its local path (for pandas and friends).

    A prefix or glob must match exactly one object; use :func:`fetch_all` for several. The file
    lives in `directory` (a new temporary folder if None); the caller removes it.
    """
    s3 = S3(environ)
    objects = s3.resolve(parse_uri(uri))
    if len(objects) != 1:
        shown = ", ".join(str(o.uri) for o in objects[:3]) + (" ..." if len(objects) > 3 else "")
        raise StepFailed(f"s3: {uri} matches {len(objects)} objects ({shown}); expected one")
    folder = directory or tempfile.mkdtemp(prefix="skitflow-s3-")
    os.makedirs(folder, exist_ok=True)
    return s3.download(objects[0], local_name(folder, objects[0]))


def open_if_present(uri: str, directory: str, *, environ: Mapping[str, str] | None = None) -> str | None:
    """Like :func:`open_for_read` for one object's key, but None when no object is there yet
    (a missing bucket or refused credentials are still errors)."""
    s3 = S3(environ)
    where = parse_uri(uri)
    head = s3.head(where)
    if head is None:
        s3.check_bucket(where, "reading")
        return None
    os.makedirs(directory, exist_ok=True)
    found = ObjectInfo(where, int(head.get("ContentLength", 0)), str(head.get("ETag", "")))
    return s3.download(found, local_name(directory, found))


def human_rate(size: int, seconds: float) -> str:
    """`12.3 MiB in 0.45s (27.3 MiB/s)` for log lines."""
    rate = size / MiB / seconds if seconds > 0 else math.inf
    return f"{size / MiB:.1f} MiB in {seconds:.2f}s ({rate:.1f} MiB/s)"
