"""What goes wrong talking to S3, in words a user can act on, without a secret in them.

botocore and s3transfer raise a handful of exception types whose codes say little to someone
who only wrote a recipe; :class:`ErrorTranslator` turns each into a :class:`RemoteError` that
names the endpoint, bucket or key and the environment variable to check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from skitflow.errors import RemoteError, StepFailed
from skitflow.util.redact import redact

if TYPE_CHECKING:
    from skitflow.connectors.s3 import S3Uri

__all__ = ["CREDENTIAL_VARIABLES", "ErrorTranslator", "error_code", "exists_error", "with_code"]

CREDENTIAL_VARIABLES = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if used)"


def _scrub(text: str, environ: Mapping[str, str]) -> str:
    """Should a server ever echo a credential back: this connector's and the process's."""
    return redact(text, environ={**os.environ, **environ})


def error_code(error: BaseException) -> str:
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


class ErrorTranslator:
    """Turns botocore / s3transfer exceptions into RemoteError messages a user can act on."""

    def __init__(self, endpoint: str, attempts: int, environ: Mapping[str, str]) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.environ = environ

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
        text = _scrub(f"{type(error).__name__}: {error}", self.environ)
        return RemoteError(f"s3: {action} {uri} failed: {text}")

    def _client_error(self, error: Any, action: str, uri: S3Uri | str, where: str,
                      tries: str) -> RemoteError:
        code = error_code(error)
        bucket = str(getattr(uri, "bucket", uri))  # an S3Uri, or a bucket name as text
        message = _scrub(str((error.response.get("Error") or {}).get("Message") or ""),
                         self.environ)
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
                hint="the service is overloaded or down; SKITFLOW_RETRY_ATTEMPTS (or AWS_MAX_ATTEMPTS) "
                "raises the retries",
            )
        detail = f"{code}: {message}" if message else code or type(error).__name__
        return RemoteError(f"s3: {action} {uri} failed: {detail}")


def with_code(exc: Any, code: str) -> Any:
    """A HEAD error carries only its HTTP status; give it the code it stands for."""
    exc.response.setdefault("Error", {})["Code"] = code
    return exc
