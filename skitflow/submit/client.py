"""The one boundary between skitflow and a Kubeflow Pipelines host.

Everything skitflow asks of Kubeflow goes through :meth:`Kfp.call`, which

- builds the real ``kfp.Client`` (lazily, inside the boundary, since construction already talks
  to the host) with the user's credentials: bearer token, session cookie or the in-cluster
  service-account token file;
- retries transient faults (429, 502, 503, 504, dropped connections, timeouts) under the shared
  :class:`~skitflow.util.retry.RetryPolicy` (bounded exponential backoff, Retry-After, deadline);
  the operation passed in is a find-or-create closure, so a retry after a
  lost response re-checks before creating again and never duplicates anything;
- translates ``kfp_server_api.ApiException`` and urllib3 errors into a :class:`RemoteError` that
  says what failed, which credential kind was used and what to check, and never carries a token,
  a cookie or a traceback.

kfp and urllib3 are imported inside the functions that need them: `skitflow validate` stays fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from skitflow.compile import kfp_compat
from skitflow.errors import RemoteError, SkitflowError
from skitflow.util.redact import redact
from skitflow.util.retry import RetryPolicy

__all__ = ["Credentials", "Kfp", "RetryPolicy", "Target", "credentials_from", "kfp_policy", "redact"]

T = TypeVar("T")

#: Where a Kubeflow pod finds its projected service-account token when the variable is unset.
DEFAULT_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


# -- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """How requests authenticate; `kind` is safe to print, the values never are."""

    token: str | None = None
    cookie: str | None = None
    sa_token_path: str | None = None

    @property
    def kind(self) -> str:
        kinds = [k for k, v in (("bearer", self.token), ("cookie", self.cookie)) if v]
        if not kinds and self.sa_token_path:
            kinds = ["sa-token"]
        return "+".join(kinds) or "none"

    def describe(self) -> str:
        """The credential kind in words, with where it came from, for error messages."""
        parts = []
        if self.token:
            parts.append("a bearer token (--token / KFP_TOKEN)")
        if self.cookie:
            parts.append("a session cookie (--cookie / KFP_COOKIE)")
        if not parts and self.sa_token_path:
            parts.append(f"the service-account token file {self.sa_token_path}")
        return " and ".join(parts) or "no credentials"

    def secrets(self) -> list[str]:
        """Values to scrub from any text shown to the user."""
        values = [self.token or ""]
        if self.cookie:
            values.append(self.cookie)
            values += [part.partition("=")[2].strip() for part in self.cookie.split(";")]
        if self.sa_token_path:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                values.append(Path(self.sa_token_path).read_text(encoding="utf-8").strip())
        return [v for v in values if len(v) >= 4]


def credentials_from(
    token: str | None = None,
    cookie: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Flags > KFP_TOKEN / KFP_COOKIE > the service-account token file (only when neither is given).

    kfp.Client reads KF_PIPELINES_SA_TOKEN_PATH only when it has no host and finds an in-cluster
    Kubernetes config; skitflow always passes a host, so it hands the file to kfp itself.
    """
    environ = os.environ if environ is None else environ
    token = (token or environ.get("KFP_TOKEN") or "").strip() or None
    cookie = (cookie or environ.get("KFP_COOKIE") or "").strip() or None
    if token and token.lower().startswith("bearer "):
        token = token[7:].strip()
    if cookie is not None:
        pairs = [p.strip() for p in cookie.split(";") if p.strip()]
        if not pairs or not all("=" in p and p.partition("=")[0].strip() for p in pairs):
            raise SkitflowError(
                "the session cookie must be NAME=VALUE",
                hint="copy the cookie from your browser, e.g. `authservice_session=...` (Dex) or "
                "`oauth2_proxy_kubeflow=...` (oauth2-proxy)",
            )
    sa_path = None
    if not token and not cookie:
        wanted = environ.get(SA_TOKEN_ENV, "").strip()
        if wanted:
            if not Path(wanted).is_file():
                raise SkitflowError(
                    f"{SA_TOKEN_ENV} points to `{wanted}`, which is not a file",
                    hint="mount the projected service-account token there, or unset the variable",
                )
            sa_path = wanted
        elif Path(DEFAULT_SA_TOKEN_PATH).is_file():
            sa_path = DEFAULT_SA_TOKEN_PATH
    return Credentials(token, cookie, sa_path)


# -- retry policy --------------------------------------------------------------------------------


def kfp_policy(environ: Mapping[str, str] | None = None) -> RetryPolicy:
    """The shared retry policy; SKITFLOW_KFP_TIMEOUT still sets the request timeout."""
    return RetryPolicy.from_env(environ, extra={"SKITFLOW_KFP_TIMEOUT": "timeout"})


# -- failures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, in skitflow's terms."""

    kind: str  # status, refused, dns, tls, timeout, dropped, other
    status: int | None = None
    message: str = ""
    location: str | None = None  # where a redirect pointed (query stripped)
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        if self.kind == "status":
            return self.status in TRANSIENT_STATUSES or self.status == 409
        return self.kind in ("timeout", "dropped")

    def short(self) -> str:
        if self.kind == "status" and self.status is not None:
            return f"{self.status} {_REASONS.get(self.status, 'error')}"
        return {"timeout": "timed out", "dropped": "connection dropped", "refused": "connection refused",
                "dns": "host name not found", "tls": "TLS failure"}.get(self.kind, self.kind)


def classify(exc: BaseException) -> Failure | None:
    """An ApiException or urllib3/socket error -> Failure; None for anything else (a bug)."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    if isinstance(exc, ApiException):
        if exc.status in (0, None):
            reason = str(exc.reason or "")
            kind = "tls" if "SSL" in reason or "certificate" in reason.lower() else "other"
            return Failure(kind, message=reason.splitlines()[-1] if reason else "")
        headers = exc.headers or {}
        return Failure(
            "status",
            status=int(exc.status),
            message=_server_message(exc.body),
            location=_strip_query(headers.get("Location") or headers.get("location")),
            retry_after=_seconds(headers.get("Retry-After") or headers.get("retry-after")),
        )
    cause: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    errors = urllib3.exceptions
    if isinstance(cause, errors.SSLError) or "SSL" in type(cause).__name__:
        return Failure("tls", message=_last_line(cause))
    if isinstance(cause, errors.NameResolutionError):
        return Failure("dns", message=_last_line(cause))
    # NewConnectionError subclasses ConnectTimeoutError in urllib3: test it first.
    if isinstance(cause, errors.NewConnectionError | ConnectionRefusedError):
        reason = _last_line(cause).rpartition("new connection: ")[2]
        return Failure("refused", message=reason)
    if isinstance(cause, errors.ConnectTimeoutError | errors.ReadTimeoutError | TimeoutError):
        return Failure("timeout", message=_last_line(cause))
    if isinstance(cause, errors.ProtocolError | ConnectionError):
        return Failure("dropped", message=_last_line(cause))
    if isinstance(cause, errors.HTTPError):  # e.g. a host URL urllib3 cannot parse
        return Failure("other", message=_last_line(cause))
    return None


def _server_message(body: Any) -> str:
    """The human part of an error body: grpc-gateway `message` or the upload API's fields."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        text = str(body).strip()
        return "" if text.lstrip().startswith("<") else text[:300]
    if not isinstance(data, dict):
        return str(data)[:300]
    message = str(data.get("message") or data.get("error_message") or data.get("error") or "")
    details = str(data.get("error_details") or "")
    if details and details != message:
        message = f"{message}: {details}" if message else details
    return message[:500]


def _strip_query(url: str | None) -> str | None:
    return url.split("?", 1)[0] if url else None


def _seconds(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


# -- the client ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where and as whom to talk to Kubeflow."""

    host: str
    namespace: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    ca_cert: str | None = None

    def run_link(self, run_id: str) -> str:
        return f"{self.host}/#/runs/details/{run_id}"


@dataclass
class CallStats:
    """Counted for the benchmark and for tests: attempts made, retries spent."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0


class Kfp:
    """A kfp.Client behind skitflow's retry policy and error translation."""

    def __init__(
        self,
        target: Target,
        policy: RetryPolicy | None = None,
        on_retry: Callable[[str, Failure, int, float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.policy = policy or kfp_policy()
        self.on_retry = on_retry
        self.sleep = sleep
        self.stats = CallStats()
        self._client: Any = None

    def connect(self) -> None:
        """Build the client (kfp asks healthz unless a namespace is set); refuse a multi-user
        install without a namespace, where every list call would fail anyway."""
        if self._client is not None:
            return
        client = self.call("connecting", lambda client: client)
        healthz = kfp_compat.client_healthz(client)
        # In a pod, kfp picks up the pod's own namespace; that one will do.
        found = self.target.namespace or client.get_user_namespace()
        if healthz is not None and healthz.multi_user and not found:
            raise SkitflowError(
                f"Kubeflow at {self.target.host} is a multi-user install: a namespace is needed",
                hint="pass --namespace (or set KFP_NAMESPACE, or `namespace` in [tool.skitflow])",
            )

    def backend_version(self) -> str | None:
        """The `tag_name` the host's healthz reports (None when it reports none)."""
        self.connect()

        tag = self.call("reading the Kubeflow Pipelines version",
                        kfp_compat.client_healthz_raw).get("tag_name")
        return str(tag) if tag is not None else None

    def get_artifact(self, artifact_id: str) -> dict[str, Any]:
        """`GET /apis/v2beta1/artifacts/{id}` (ArtifactService, KFP 2.1+): the artifact's `uri`,
        type and storage fields, the metadata where the server has them (newer backends)."""
        path = f"/apis/v2beta1/artifacts/{urllib.parse.quote(str(artifact_id), safe='')}"
        answer = self.call("reading an output artifact",
                           lambda client: kfp_compat.client_get_json(client, path))
        if not isinstance(answer, dict):
            raise RemoteError("Kubeflow answered an artifact that is not a JSON object")
        return answer

    def call(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run `operation(client)`, retrying transient faults; `what` names it in messages.

        `operation` must be safe to repeat: find before create. A 409 is retried at once, since it
        means what we wanted to create exists now and the operation's find step will see it.
        """
        self.stats.calls += 1
        backoff = self.policy.start()
        while True:
            backoff.tried()
            self.stats.attempts += 1
            try:
                with _quiet():
                    return operation(self._connect())
            except SkitflowError:
                raise
            except Exception as exc:  # the boundary: every kfp/urllib3 error is translated here
                failure = classify(exc)
                if failure is None:
                    detail = redact(f"{type(exc).__name__}: {exc}", self.target.credentials.secrets())
                    raise RemoteError(f"unexpected error while {what}: {detail}") from exc
            wait = None
            if failure.transient:
                wait = backoff.next_wait(failure.retry_after, immediately=failure.status == 409)
            if wait is None:
                raise self._error(what, failure, backoff.tries, backoff.elapsed)
            self.stats.retries += 1
            if self.on_retry is not None:
                self.on_retry(what, failure, backoff.tries, wait)
            self.sleep(wait)

    def _connect(self) -> Any:
        """Build the kfp.Client on first use (its construction may call healthz)."""
        if self._client is None:
            credentials = self.target.credentials
            extra: dict[str, Any] = {}
            if credentials.sa_token_path and not (credentials.token or credentials.cookie):
                # Re-read on every request, so the kubelet's token rotation is picked up.
                extra["credentials"] = kfp_compat.service_account_credentials(
                    credentials.sa_token_path)
            if self.target.namespace:
                extra["namespace"] = self.target.namespace
            client = kfp_compat.client_class(self.policy.timeout)(
                host=self.target.host,
                existing_token=credentials.token,
                cookies=credentials.cookie,
                ssl_ca_cert=self.target.ca_cert,
                **extra,
            )
            kfp_compat.set_request_timeout(client)
            self._client = client
        return self._client

    def _error(self, what: str, failure: Failure, attempts: int, seconds: float) -> RemoteError:
        """The message a user can act on; secrets scrubbed, retries counted."""
        host, credentials = self.target.host, self.target.credentials
        tried = f" (gave up after {attempts} attempts over {seconds:.1f}s)" if attempts > 1 else ""
        server = f": {failure.message}" if failure.message and failure.kind == "status" else ""
        status = failure.status
        namespace = self.target.namespace
        if failure.kind == "refused":
            message = f"cannot reach Kubeflow Pipelines at {host} while {what}: {failure.message}"
            hint = ("check --host / KFP_HOST and that the API answers there "
                    "(e.g. `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80` and "
                    "--host http://localhost:8080)")
        elif failure.kind == "dns":
            message = f"cannot resolve the host name of {host} while {what}"
            hint = "check the spelling of --host / KFP_HOST, and your VPN or DNS"
        elif failure.kind == "tls":
            message = f"TLS failure talking to {host} while {what}: {failure.message}"
            hint = ("if the cluster uses a private CA, pass --ca-cert FILE; if the endpoint is "
                    "plain HTTP (e.g. a port-forward), use an http:// host")
        elif failure.kind == "timeout":
            message = f"Kubeflow Pipelines at {host} did not answer in time while {what}{tried}"
            hint = (f"each request waits {self.policy.timeout:g}s (SKITFLOW_KFP_TIMEOUT); the API "
                    "server may be overloaded or restarting: try again later")
        elif failure.kind == "dropped":
            message = f"the connection to {host} was dropped while {what}{tried}"
            hint = ("a proxy or the API server closed the connection; check the ml-pipeline pods "
                    "(`kubectl -n kubeflow get pods`) and try again")
        elif status == 401:
            message = (f"Kubeflow at {host} refused the credentials (401 Unauthorized) while {what}; "
                       f"sent: {credentials.describe()}")
            hint = _auth_hint(credentials)
        elif status == 403:
            where = f"namespace `{namespace}`" if namespace else "this resource"
            message = f"Kubeflow denied access to {where} (403 Forbidden) while {what}{server}"
            hint = (f"sent {credentials.describe()}; check that this identity is a contributor of "
                    f"the namespace (its Kubeflow Profile), or pass the right --namespace")
        elif status is not None and 300 <= status < 400:
            to = f" to {failure.location}" if failure.location else ""
            message = f"Kubeflow at {host} redirected the API request{to} ({status}) while {what}"
            hint = ("this host is behind a login proxy (Dex / oauth2-proxy): pass --cookie "
                    "NAME=VALUE from a logged-in browser session, or --token; "
                    f"sent: {credentials.describe()}")
        elif status == 404:
            message = f"not found (404) while {what}{server}"
            hint = ("check --host points at the Kubeflow Pipelines API (not the dashboard) and that "
                    "the namespace and experiment exist")
        elif status == 409:
            message = f"conflict (409) while {what}{server}{tried}"
            hint = "another submit of this recipe may be running at the same time; try again"
        elif status is not None and status >= 500:
            message = f"Kubeflow at {host} failed ({failure.short()}) while {what}{server}{tried}"
            hint = ("the API server or a proxy in front of it is unavailable; check the ml-pipeline "
                    "pods (`kubectl -n kubeflow get pods`) and try again")
        elif status is not None:
            message = f"Kubeflow refused the request ({failure.short()}) while {what}{server}"
            hint = None
            if status == 400 and "namespace" in failure.message.lower() and not namespace:
                hint = "this looks like a multi-user install: pass --namespace (or set KFP_NAMESPACE)"
        else:
            message = f"talking to {host} failed while {what}: {failure.message}"
            hint = None
        secrets = credentials.secrets()
        return RemoteError(redact(message, secrets), redact(hint, secrets) if hint else None)


def _auth_hint(credentials: Credentials) -> str:
    kind = credentials.kind
    if kind == "none":
        return ("this host needs credentials: pass --token (or KFP_TOKEN), --cookie NAME=VALUE "
                "(or KFP_COOKIE) behind Dex/oauth2-proxy, or run in-cluster with "
                f"{SA_TOKEN_ENV}")
    if kind == "sa-token":
        return (f"check the token file {credentials.sa_token_path}: projected for audience "
                "pipelines.kubeflow.org, not expired, and the pod's service account has access")
    if "cookie" in kind and "bearer" not in kind:
        return "the session cookie may have expired: log in again and copy a fresh one"
    return "the token may be expired, revoked or for another audience: get a fresh one"


_QUIET_LOCK = threading.Lock()
_quiet_state: dict[str, Any] = {"depth": 0, "saved": None}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """kfp.Client prints links and warns about versions; skitflow prints its own output.

    Calls may run in several threads at once (`skitflow serve`): stdout is swapped once, when the
    first call starts, and put back when the last one ends. Nested `redirect_stdout`s in threads
    would restore each other's stand-ins and leave stdout lost for good.
    """
    with _QUIET_LOCK:
        if _quiet_state["depth"] == 0:
            _quiet_state["saved"] = sys.stdout
            sys.stdout = io.StringIO()
        _quiet_state["depth"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        with _QUIET_LOCK:
            _quiet_state["depth"] -= 1
            if _quiet_state["depth"] == 0:
                sys.stdout = _quiet_state["saved"]
                _quiet_state["saved"] = None
