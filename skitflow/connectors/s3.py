"""S3 and S3-compatible object stores (SeaweedFS, MinIO, Ceph) for sources and sinks.

Where and who come from the environment at run time only, never from a recipe: the standard
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` / ``AWS_DEFAULT_REGION``
(or any other credential boto3 finds: a profile, a web identity on Kubernetes), and
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` / ``S3_ENDPOINT_URL`` for a server that is not AWS,
which is then addressed path-style. ``AWS_MAX_ATTEMPTS`` bounds the retries of transient faults
(default 5, with botocore's "standard" exponential backoff).

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
import csv
import dataclasses
import hashlib
import io
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from skitflow.errors import RemoteError, StepFailed, did_you_mean
from skitflow.util.redact import redact

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "S3",
    "ObjectInfo",
    "S3Uri",
    "UploadResult",
    "endpoint_from_env",
    "fetch_all",
    "is_s3_uri",
    "open_for_read",
    "parse_uri",
    "read_table",
    "upload",
]

MiB = 1024 * 1024
DEFAULT_MAX_ATTEMPTS = 5
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
DEFAULT_CONCURRENCY = 10
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")
CREDENTIAL_VARIABLES = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if used)"
_GLOB_CHARACTERS = "*?["
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
_CSV_EXTENSIONS = (".csv", ".tsv", ".txt")
_PARQUET_EXTENSIONS = (".parquet", ".pq")


# -- addresses ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``; a key ending in ``/`` (or empty) is a prefix, one with * ? [ a glob."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    @property
    def is_glob(self) -> bool:
        return any(c in self.key for c in _GLOB_CHARACTERS)

    def with_key(self, key: str) -> S3Uri:
        return S3Uri(self.bucket, key)


def is_s3_uri(text: str) -> bool:
    return text[:5].lower() == "s3://"


def parse_uri(uri: str) -> S3Uri:
    """Split ``s3://bucket/key``; raises ValueError (a settings error) when it is not one."""
    if not is_s3_uri(uri):
        raise ValueError(f"`{uri}` is not an s3:// URI; write s3://bucket/key")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"`{uri}` names no bucket; write s3://bucket/key")
    if "{{" not in bucket and not _BUCKET_NAME.match(bucket):
        raise ValueError(
            f"`{bucket}` is not a valid bucket name (3-63 lowercase letters, digits, dots and "
            "hyphens)"
        )
    return S3Uri(bucket, key)


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


def _max_attempts(environ: Mapping[str, str]) -> int:
    try:
        return max(1, int(environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS))
    except ValueError:
        return DEFAULT_MAX_ATTEMPTS


# -- errors -------------------------------------------------------------------------------------


def _error_code(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code") or "")
    if not code:
        code = str((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or "")
    return code


def exists_error(uri: S3Uri | str) -> StepFailed:
    return StepFailed(
        f"s3: {uri} already exists and `overwrite` is false",
        hint="change the uri (e.g. add {{ run.id }}) or set `overwrite: true`",
    )


class _Translator:
    """Turns botocore / s3transfer exceptions into RemoteError messages a user can act on."""

    def __init__(self, endpoint: str, attempts: int, environ: Mapping[str, str]) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.environ = environ

    def _redact(self, text: str) -> str:
        """Should a server ever echo a credential back: this connector's and the process's."""
        return redact(text, environ={**os.environ, **self.environ})

    def __call__(self, error: BaseException, action: str, uri: S3Uri | str) -> RemoteError:
        from botocore import exceptions as bx

        last = getattr(error, "last_exception", None)  # s3transfer: retries of a download ran out
        if isinstance(last, BaseException):
            error = last
        where = f"while {action} {uri}"
        tries = f"after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        endpoint_hint = (
            "check that the server runs and that AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) "
            "points at it"
        )
        # `skitflow run` shows a failed step's message, not its hint: the message says what to do.
        if isinstance(error, bx.NoCredentialsError | bx.PartialCredentialsError):
            return RemoteError(
                f"s3: no usable credentials {where}; set {CREDENTIAL_VARIABLES}",
                hint="or AWS_PROFILE, or run where boto3 finds credentials (a web identity)",
            )
        if isinstance(error, bx.ConnectionError):
            return RemoteError(
                f"s3: cannot reach the S3 endpoint {self.endpoint} {where} ({tries}); "
                "is the server running, and does AWS_ENDPOINT_URL point at it?",
                hint=endpoint_hint,
            )
        if isinstance(error, bx.ReadTimeoutError | bx.ConnectionClosedError | bx.HTTPClientError):
            return RemoteError(
                f"s3: the connection to {self.endpoint} broke off {where} ({tries}: "
                f"{type(error).__name__}); nothing was written under the key",
                hint=endpoint_hint,
            )
        if isinstance(error, bx.ClientError):
            return self._client_error(error, action, uri, where, tries)
        if isinstance(error, OSError):
            return RemoteError(f"s3: local file error {where}: {error}")
        text = self._redact(f"{type(error).__name__}: {error}")
        return RemoteError(f"s3: {action} {uri} failed: {text}")

    def _client_error(self, error: Any, action: str, uri: S3Uri | str, where: str,
                      tries: str) -> RemoteError:
        code = _error_code(error)
        bucket = uri.bucket if isinstance(uri, S3Uri) else str(uri)
        message = self._redact(str((error.response.get("Error") or {}).get("Message") or ""))
        if code in ("NoSuchBucket",):
            return RemoteError(
                f"s3: bucket `{bucket}` does not exist at {self.endpoint} ({where}); create it "
                "or fix the bucket name in `uri`",
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return RemoteError(f"s3: no object {uri} ({where})")
        if code == "InvalidAccessKeyId":
            return RemoteError(
                f"s3: the server does not know the access key id ({code}) {where}; check "
                "AWS_ACCESS_KEY_ID",
                hint=f"and AWS_SECRET_ACCESS_KEY, for the server at {self.endpoint}",
            )
        if code == "SignatureDoesNotMatch":
            return RemoteError(
                f"s3: the secret key does not match the access key id ({code}) {where}; check "
                "AWS_SECRET_ACCESS_KEY",
                hint=f"and AWS_ACCESS_KEY_ID, for the server at {self.endpoint}",
            )
        if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
            return RemoteError(
                f"s3: the session token was refused ({code}) {where}; refresh the credentials "
                "(AWS_SESSION_TOKEN)",
            )
        if code in ("AccessDenied", "403", "AllAccessDisabled", "Forbidden"):
            verb = "s3:PutObject" if action.startswith(("writ", "upload")) else "s3:GetObject"
            return RemoteError(
                f"s3: access denied {where} ({code}); the credentials in AWS_ACCESS_KEY_ID / "
                f"AWS_SECRET_ACCESS_KEY may lack {verb} on bucket `{bucket}`",
                hint="or s3:ListBucket, which a listing (prefix, glob, overwrite check) needs",
            )
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
            return RemoteError(
                f"s3: the data was damaged in transit {where} ({code}); nothing was written",
                hint="run again; if it persists, check proxies between here and the server",
            )
        if code in ("RequestTimeTooSkewed",):
            return RemoteError(f"s3: this machine's clock is off ({code}) {where}",
                               hint="synchronise the clock (NTP)")
        if code in ("SlowDown", "ServiceUnavailable", "InternalError", "500", "502", "503",
                    "504"):
            return RemoteError(
                f"s3: the server at {self.endpoint} kept failing {where} ({code}, {tries}); run "
                "again later",
                hint="the service is overloaded or down; AWS_MAX_ATTEMPTS raises the retries",
            )
        detail = f"{code}: {message}" if message else code or type(error).__name__
        return RemoteError(f"s3: {action} {uri} failed: {detail}")


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
        self.max_attempts = max_attempts or _max_attempts(env)
        self.concurrency = concurrency
        config = Config(
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
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
        self.error = _Translator(self.endpoint, self.max_attempts, env)

    # -- lookups ---------------------------------------------------------------------------

    def head(self, uri: S3Uri) -> dict[str, Any] | None:
        """The object's HEAD response (with its checksum), or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED")
        except ClientError as exc:
            code = _error_code(exc)
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
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise self.error(_with_code(exc, "NoSuchBucket"), action, uri) from None
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
            if _error_code(exc) in ("AccessDenied", "403"):
                return None
            return self.error(exc, action, uri)
        return None

    def list_objects(self, uri: S3Uri) -> list[ObjectInfo]:
        """Objects under a prefix or matching a glob, sorted by key.

        Folder markers (keys ending in /) are skipped, and so are names starting with `_` or
        `.` below a plain prefix (job markers such as _SUCCESS, hidden temporary files).
        """
        if uri.is_glob:
            prefix = uri.key[: min(uri.key.find(c) for c in _GLOB_CHARACTERS if c in uri.key)]
            pattern: re.Pattern[str] | None = _glob_pattern(uri.key)
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
            if not overwrite and _error_code(exc) == "PreconditionFailed":
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
            if _error_code(exc) in ("404", "NoSuchKey"):
                raise self._missing_object(obj.uri) from None
            raise self.error(exc, "reading", obj.uri) from None
        return path

    def open_stream(self, uri: S3Uri) -> Any:
        """The body of one GET, to read once front to back (e.g. the first rows of a sample)."""
        try:
            return self.client.get_object(Bucket=uri.bucket, Key=uri.key,
                                          ChecksumMode="ENABLED")["Body"]
        except Exception as exc:
            if _error_code(exc) in ("404", "NoSuchKey"):
                raise self._missing_object(uri) from None
            raise self.error(exc, "reading", uri) from None


def _if_none_match(params: dict[str, Any], **_: Any) -> None:
    params["IfNoneMatch"] = "*"


def _with_code(exc: Any, code: str) -> Any:
    """A HEAD error carries only its HTTP status; give it the code it stands for."""
    exc.response.setdefault("Error", {})["Code"] = code
    return exc


def _glob_pattern(pattern: str) -> re.Pattern[str]:
    """A glob over keys: * and ? stay within one folder level, ** crosses levels."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            inner = pattern[i + 1:end]
            inner = "^" + inner[1:] if inner.startswith("!") else inner
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


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


def parquet_to_csv(source: str, destination: str, batch_rows: int = 64 * 1024) -> int:
    """Convert Parquet to CSV batch by batch (bounded memory); returns the number of rows.

    Each batch becomes text with pyarrow compute kernels, vectorised, and is written as one
    buffer. The CSV is the one pandas writes (the `file` sink's) for text, integers, booleans,
    dates and timestamps, quoting only values that need it; floats carry the same values and
    stay floats (`1.0`, not `1`), though very large or small ones may use another notation.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    styles = _timestamp_styles(parquet, batch_rows)
    single = len(parquet.schema_arrow.names) == 1
    rows = 0
    with open(destination, "wb") as raw:
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(parquet.schema_arrow.names)
        raw.write(header.getvalue().encode("utf-8"))
        for batch in parquet.iter_batches(batch_size=batch_rows, use_pandas_metadata=False):
            if batch.num_rows:
                _write_text(raw, _csv_lines(batch, styles, single))
            rows += batch.num_rows
    return rows


def _csv_lines(batch: Any, styles: Mapping[str, str], single: bool) -> Any:
    """One string per row, `\n` included: the cells as pandas prints them, joined by commas."""
    import pyarrow.compute as pc

    cells = [_cell_text(column, field, styles.get(field.name))
             for field, column in zip(batch.schema, batch.columns, strict=True)]
    if single:  # Python's csv writes a lone empty field as "" so the line is not blank
        cells = [pc.if_else(pc.equal(cells[0], ""), '""', cells[0])]
    line = pc.binary_join_element_wise(*cells, ",") if len(cells) > 1 else cells[0]
    return pc.binary_join_element_wise(line, "", "\n")


def _cell_text(column: Any, field: Any, time_style: str | None) -> Any:
    """A column as CSV text: pandas' spelling of values, nulls empty, quotes where needed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = field.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_floating(kind):
        text = column.cast(pa.string())
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
        text = pc.replace_substring_regex(text, "e([+-])([0-9])$", "e\\10\\2")  # 1e-07
    elif pa.types.is_boolean(kind):
        text = pc.if_else(column, "True", "False")
    elif time_style is not None:
        text = _timestamp_text(column, time_style)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = column
    else:
        try:
            text = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise StepFailed(
                f"s3: column `{field.name}` ({kind}) cannot be written as CSV",
                hint="write the dataset as parquet, or drop or cast the column first",
            ) from None
    text = text.cast(pa.string())  # one text type for the kernels below (a batch is < 2 GiB)
    needs_quotes = pc.match_substring_regex(text, '[,"\r\n]')
    if pc.any(needs_quotes).as_py():
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        text = pc.if_else(needs_quotes, quoted, text)
    return pc.fill_null(text, "")


def _write_text(raw: Any, lines: Any) -> None:
    """Write a string array's characters, which are the lines back to back, in one call."""
    import numpy as np
    import pyarrow as pa

    offsets_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=offsets_type)
    start, end = int(bounds[lines.offset]), int(bounds[lines.offset + len(lines)])
    raw.write(memoryview(data)[start:end])


_TIME_STYLES = ("date", "s", "ms", "us", "ns")  # coarsest first


def _timestamp_styles(parquet: Any, batch_rows: int) -> dict[str, str]:
    """How pandas prints each naive timestamp column: a date, or times to the finest unit used.

    pandas decides per column, so this reads the timestamp columns once beforehand (only
    them: Parquet stores columns apart); then every batch prints alike.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = parquet.schema_arrow
    names = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.tz is None]
    if not names or len(set(schema.names)) != len(schema.names):
        return {}
    styles = dict.fromkeys(names, 0)  # index into _TIME_STYLES
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=names):
        for name in names:
            column = batch.column(name)
            while styles[name] < len(_TIME_STYLES) - 1:
                style = _TIME_STYLES[styles[name]]
                coarse = pa.date32() if style == "date" else pa.timestamp(style)
                same = pc.equal(column.cast(coarse, safe=False).cast(column.type), column)
                if pc.all(same).as_py() is not False:  # None: only nulls
                    break
                styles[name] += 1
    return {name: _TIME_STYLES[index] for name, index in styles.items()}


def _timestamp_text(column: Any, style: str) -> Any:
    """`2024-01-01`, `2024-01-01 10:00:00` or `... 10:00:00.500`, as pandas prints them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if style == "date":
        return column.cast(pa.date32(), safe=False).cast(pa.string())
    return pc.strftime(column.cast(pa.timestamp(style), safe=False), format="%Y-%m-%d %H:%M:%S")


def csv_to_parquet(source: str, destination: str) -> int:
    """Convert CSV to Parquet with pyarrow (types inferred over the whole file, as pandas does)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    pq.write_table(table, destination, compression="snappy")
    return table.num_rows


# -- reading objects as tables --------------------------------------------------------------------


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


def _local_name(directory: str, obj: ObjectInfo) -> str:
    """A fresh local file named like the object (its extension tells pyarrow the compression)."""
    base = os.path.basename(obj.uri.key) or "object"
    handle, path = tempfile.mkstemp(prefix=".s3-", suffix="-" + base[-80:], dir=directory)
    os.close(handle)
    return path


@contextlib.contextmanager
def _scratch(directory: str | None) -> Iterator[str]:
    if directory:
        os.makedirs(directory, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=".skitflow-s3-", dir=directory or None)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fetch_all(uri: str, directory: str, *, environ: Mapping[str, str] | None = None,
              client: S3 | None = None) -> list[str]:
    """Download every object `uri` names (object, prefix or glob) into `directory`, in key order.

    The local files keep the objects' names (suffixed to stay unique), so their extensions still
    say how they are compressed. Raises StepFailed when nothing matches.
    """
    s3 = client or S3(environ)
    os.makedirs(directory, exist_ok=True)
    return [s3.download(obj, _local_name(directory, obj)) for obj in s3.resolve(parse_uri(uri))]


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
    return s3.download(objects[0], _local_name(folder, objects[0]))


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
        local = s3.download(obj, _local_name(scratch, obj))
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
        head = _Head(stream).lines(1)
    schema = _parse_csv(head, obj, sep, encoding, {}).schema
    _missing(obj, wanted, schema.names)
    types = _temporal_as_text(schema, [c for c in text_columns if c in schema.names])
    table = pacsv.read_csv(local, *_csv_options(sep, encoding, types, wanted))
    return _text_for_late_temporals(table)


class _Head:
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
        head, lines = _Head(stream, first_read=256 * 1024), limit
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


def human_rate(size: int, seconds: float) -> str:
    """`12.3 MiB in 0.45s (27.3 MiB/s)` for log lines."""
    rate = size / MiB / seconds if seconds > 0 else math.inf
    return f"{size / MiB:.1f} MiB in {seconds:.2f}s ({rate:.1f} MiB/s)"
