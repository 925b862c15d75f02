"""A test server speaking the KFP v2beta1 REST contract on 127.0.0.1.

It lets the real ``kfp.Client`` (kfp 2.17.3) run against HTTP without a
cluster: stdlib ``ThreadingHTTPServer``, in-memory state (``state.py``),
strict package parsing (``specs.py``), the client's filter/paging semantics
(``listing.py``), scripted faults (``faults.py``), a request log that keeps
every request's headers, and optional authentication.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .common import ApiError, RecordedRequest
from .faults import FaultInjector
from .messages import check_fields, proto_names
from .state import ServerState

API_PREFIX = "/apis/v2beta1"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

AuthCheck = Callable[[RecordedRequest], bool]
"""Decides whether a request is authenticated; see :func:`bearer_token` and :func:`session_cookie`."""


def bearer_token(token: str) -> AuthCheck:
    """Accept only requests carrying ``Authorization: Bearer <token>`` (``Client(existing_token=...)``)."""
    return lambda request: request.authorization == f"Bearer {token}"


def session_cookie(name: str, value: str) -> AuthCheck:
    """Accept only requests carrying cookie ``name=value`` (``Client(cookies=...)``, e.g. authservice_session)."""
    return lambda request: request.cookies.get(name) == value


@dataclass
class _Call:
    """What a route handler gets: path parameters, query, raw body and headers."""

    params: dict[str, str]
    query: dict[str, str]
    body: bytes
    headers: Message

    def json(self, message: str) -> dict[str, Any]:
        """The JSON body as the request `message` (empty = ``{}``); malformed JSON or an
        unknown field is a 400, as grpc-gateway answers (see ``messages.py``)."""
        if not self.body.strip():
            return {}
        try:
            document = json.loads(self.body)
        except json.JSONDecodeError as error:
            raise ApiError(
                400, f"Invalid input error: request body is not valid JSON: {error}"
            ) from error
        if not isinstance(document, dict):
            raise ApiError(400, "Invalid input error: request body must be a JSON object")
        check_fields(self.body, message)
        return proto_names(document, message)

    def upload(self, failure: str) -> tuple[str, bytes]:
        """The multipart ``uploadfile`` part as (filename, content)."""
        boundary = self.headers.get_boundary()
        if not boundary:
            raise ApiError(400, failure, upload=True, details="request is not multipart/form-data")
        for part in self.body.split(b"--" + boundary.encode())[1:]:
            if part.startswith(b"--"):
                break
            head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            part_headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
            if part_headers.get_param("name", header="content-disposition") == "uploadfile":
                return part_headers.get_filename() or "", content.removesuffix(b"\r\n")
        raise ApiError(
            400, failure, upload=True, details="no uploadfile part in the multipart body"
        )


Handler = Callable[[ServerState, _Call], Any]


def _routes() -> list[tuple[str, re.Pattern[str], Handler]]:
    """The v2beta1 endpoints kfp.Client uses (plus their siblings), most specific first."""
    ident = r"(?P<{}>[^/:]+)"
    pipeline, version = ident.format("pipeline_id"), ident.format("version_id")
    experiment, run, job = (
        ident.format("experiment_id"),
        ident.format("run_id"),
        ident.format("job_id"),
    )
    table: list[tuple[str, str, Handler]] = [
        (
            "GET",
            "/healthz",
            # As the real API server writes it (backend/src/apiserver/main.go): the version
            # fields are not in the v2beta1 proto, so kfp_server_api's model drops them.
            lambda s, c: {"commit_sha": s.commit_sha, "tag_name": s.tag_name,
                          "multi_user": s.multi_user, "pipeline_store": "database"},
        ),
        (
            "POST",
            "/pipelines/upload",
            lambda s, c: s.upload_pipeline(
                c.query, *c.upload("Failed to create a pipeline and a pipeline version")
            ),
        ),
        (
            "POST",
            "/pipelines/upload_version",
            lambda s, c: s.upload_pipeline_version(
                c.query, *c.upload("Failed to create a pipeline version")
            ),
        ),
        ("POST", "/pipelines/create", lambda s, c: s.create_pipeline_and_version(c.json("V2beta1CreatePipelineAndVersionRequest"))),
        (
            "GET",
            "/pipelines/names/(?P<name>[^/]+)",
            lambda s, c: s.get_pipeline_by_name(c.params["name"], c.query.get("namespace", "")),
        ),
        ("GET", "/pipelines", lambda s, c: s.list_pipelines(c.query)),
        ("POST", "/pipelines", lambda s, c: s.create_pipeline(c.json("V2beta1Pipeline"))),
        ("GET", f"/pipelines/{pipeline}", lambda s, c: s.get_pipeline(c.params["pipeline_id"])),
        (
            "DELETE",
            f"/pipelines/{pipeline}",
            lambda s, c: s.delete_pipeline(
                c.params["pipeline_id"], c.query.get("cascade", "").lower() == "true"
            ),
        ),
        (
            "GET",
            f"/pipelines/{pipeline}/versions",
            lambda s, c: s.list_pipeline_versions(c.params["pipeline_id"], c.query),
        ),
        (
            "POST",
            f"/pipelines/{pipeline}/versions",
            lambda s, c: s.create_pipeline_version(c.params["pipeline_id"], c.json("V2beta1PipelineVersion")),
        ),
        (
            "GET",
            f"/pipelines/{pipeline}/versions/{version}",
            lambda s, c: s.get_pipeline_version(c.params["pipeline_id"], c.params["version_id"]),
        ),
        (
            "DELETE",
            f"/pipelines/{pipeline}/versions/{version}",
            lambda s, c: s.delete_pipeline_version(c.params["pipeline_id"], c.params["version_id"]),
        ),
        ("GET", "/experiments", lambda s, c: s.list_experiments(c.query)),
        ("POST", "/experiments", lambda s, c: s.create_experiment(c.json("V2beta1Experiment"))),
        (
            "GET",
            f"/experiments/{experiment}",
            lambda s, c: s.get_experiment(c.params["experiment_id"]),
        ),
        (
            "DELETE",
            f"/experiments/{experiment}",
            lambda s, c: s.delete_experiment(c.params["experiment_id"]),
        ),
        (
            "POST",
            f"/experiments/{experiment}:archive",
            lambda s, c: s.set_experiment_storage(c.params["experiment_id"], "ARCHIVED"),
        ),
        (
            "POST",
            f"/experiments/{experiment}:unarchive",
            lambda s, c: s.set_experiment_storage(c.params["experiment_id"], "AVAILABLE"),
        ),
        ("GET", "/runs", lambda s, c: s.list_runs(c.query)),
        ("POST", "/runs", lambda s, c: s.create_run(c.json("V2beta1Run"))),
        ("GET", f"/runs/{run}", lambda s, c: s.get_run(c.params["run_id"])),
        ("DELETE", f"/runs/{run}", lambda s, c: s.change_run(c.params["run_id"], "delete")),
        (
            "POST",
            f"/runs/{run}:(?P<action>archive|unarchive|terminate|retry)",
            lambda s, c: s.change_run(c.params["run_id"], c.params["action"]),
        ),
        (
            "GET",
            "/artifacts/(?P<artifact_id>[^/:]+)",
            lambda s, c: s.get_artifact(c.params["artifact_id"], c.query.get("view", "")),
        ),
        ("GET", "/recurringruns", lambda s, c: s.list_recurring_runs(c.query)),
        ("POST", "/recurringruns", lambda s, c: s.create_recurring_run(c.json("V2beta1RecurringRun"))),
        ("GET", f"/recurringruns/{job}", lambda s, c: s.get_recurring_run(c.params["job_id"])),
        (
            "DELETE",
            f"/recurringruns/{job}",
            lambda s, c: s.change_recurring_run(c.params["job_id"], "delete"),
        ),
        (
            "POST",
            f"/recurringruns/{job}:(?P<action>enable|disable)",
            lambda s, c: s.change_recurring_run(c.params["job_id"], c.params["action"]),
        ),
    ]
    return [
        (method, re.compile(f"^{re.escape(API_PREFIX)}{path}$"), handler)
        for method, path, handler in table
    ]


_ROUTES = _routes()


def dispatch(state: ServerState, method: str, path: str, call: _Call) -> Any:
    """Route one request to the state; unknown paths are 404, known paths with another method 405."""
    path_known = False
    for route_method, pattern, handler in _ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        path_known = True
        if route_method == method:
            call.params = {key: unquote(value) for key, value in match.groupdict().items()}
            return handler(state, call)
    if path_known:
        raise ApiError(405, f"Method {method} not allowed on {path}")
    raise ApiError(404, "Not Found")


class _HttpServer(ThreadingHTTPServer):
    """The socket server, holding the app and its open connections (closed on stop)."""

    daemon_threads = True
    app: KfpTestServer

    def __init__(self, address: tuple[str, int], app: KfpTestServer) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    """Records, applies faults and auth, then dispatches; keep-alive like a real server."""

    protocol_version = "HTTP/1.1"
    server_version = "kfp-test-server/2.17"
    timeout = 30  # idle keep-alive connections must not pin handler threads forever
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if self.server.app.log_requests:
            sys.stderr.write(f"kfp-test-server: {format % args}\n")

    def _serve(self) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        query = {
            key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()
        }
        record = RecordedRequest(self.command, split.path, query, self.headers, self._read_body())
        app.state.record(record)

        fault = app.faults.take(self.command, split.path)
        record.fault = fault
        if fault is not None:
            if fault.delay > 0:
                app.sleep(fault.delay)
            if fault.drop:
                self._drop_connection()
                return
            if fault.status is not None:
                error = ApiError(fault.status, fault.message)
                self._respond(record, fault.status, error.body())
                return

        if app.require_auth is not None and not app.require_auth(record):
            error = ApiError(
                401,
                "Unauthenticated: missing or invalid credentials (Authorization header or session cookie)",
            )
            self._respond(record, 401, error.body())
            return

        call = _Call({}, query, record.body, self.headers)
        try:
            status, payload = 200, dispatch(app.state, self.command, split.path, call)
        except ApiError as error:
            status, payload = error.status, error.body()
        except Exception as error:  # a server bug must surface as a 500, not a hung client
            traceback.print_exc()
            status, payload = (
                500,
                ApiError(500, f"Internal error in the KFP test server: {error!r}").body(),
            )
        self._respond(record, status, payload)

    def _read_body(self) -> bytes:
        """Read the whole body (Content-Length or chunked) so faults never leave it half-read."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _respond(self, record: RecordedRequest, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop_connection(self) -> None:
        """Close the socket without a status line: the client sees a reset/disconnect."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class KfpTestServer:
    """The KFP v2beta1 test server.

    Options:
        port: TCP port on 127.0.0.1; 0 picks a free one (see ``url``).
        require_auth: an :data:`AuthCheck` (:func:`bearer_token`, :func:`session_cookie`, or any
            callable on :class:`RecordedRequest`); failing requests get 401, healthz included,
            as behind the Kubeflow auth proxy.
        forbidden_namespaces: namespaces answered with 403 (400 on the upload endpoints, as the
            real server does).
        multi_user: reported by healthz; list calls then need a namespace and no Default
            experiment exists.
        run_polls: how many ``GET /runs/{id}`` polls a run takes to finish (default 1: the
            first poll sees the final state); see ``state.script_runs`` for failures.
        default_experiment: create the "Default" experiment as single-user KFP does.
        log_requests: echo the access log to stderr.
        backend_version: the `tag_name` healthz reports ("unknown" as a dev build does).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        require_auth: AuthCheck | None = None,
        forbidden_namespaces: tuple[str, ...] | list[str] | set[str] = (),
        multi_user: bool = False,
        run_polls: int = 1,
        default_experiment: bool = True,
        log_requests: bool = False,
        backend_version: str = "2.14.3",
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the KFP test server only binds to loopback, not {host!r}")
        self.state = ServerState(
            run_polls=run_polls,
            multi_user=multi_user,
            forbidden_namespaces=forbidden_namespaces,
            default_experiment=default_experiment,
        )
        # healthz `tag_name` (the backend version) and `commit_sha`
        self.state.tag_name, self.state.commit_sha = backend_version, "0123456789abcdef"
        self.faults = FaultInjector()
        self.require_auth = require_auth
        self.log_requests = log_requests
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._httpd = _HttpServer(("127.0.0.1", port), self)

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to pass as ``kfp.Client(host=...)``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KfpTestServer:
        """Serve from a background daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kfp-test-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (used by ``python -m tests.kfp_server``)."""
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving, abort pending fault delays, close client connections and the socket."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        with self._httpd.connections_lock:
            connections = list(self._httpd.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def sleep(self, seconds: float) -> None:
        """Sleep for a delay fault, returning early when the server stops."""
        self._stopping.wait(seconds)

    def __enter__(self) -> KfpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
