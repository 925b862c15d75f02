"""`skitflow serve` for tests and benchmarks: the real app on uvicorn, on a free 127.0.0.1 port,
in a background thread, in front of the KFP test server; and a recorder standing in for Slack's
response_url. Nothing here is mocked: requests go over real sockets."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECIPE = """\
apiVersion: skitflow/v1
name: {name}
description: Scores tickets for the service tests.
parameters:
  since: {{type: str, description: First day to read.}}
  test_size: {{type: float, default: 0.25, description: Share of rows held out.}}
  max_depth: {{type: int, default: 3, description: Depth of the trees.}}
  label: {{type: str, default: demo}}
  channels: {{type: list, default: [email, chat]}}
source:
  csv: {{path: data/rows.csv}}
split:
  train_test: {{test_size: "{{{{ params.test_size }}}}", stratify: label}}
trainer:
  xgboost: {{target: label, params: {{max_depth: "{{{{ params.max_depth }}}}"}}}}
evaluator:
  classification: {{target: label}}
  gate: {{metric: accuracy, min: 0.5}}
sinks:
  - file: {{path: out/model.json}}
    input: model
"""


def write_recipes(folder: Path, names: tuple[str, ...] = ("scores",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.yaml").write_text(RECIPE.format(name=name))
    (folder / "broken.yaml").write_text("apiVersion: skitflow/v1\nname: Broken Name\n")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class RunningService:
    url: str
    token: str
    slack_secret: str
    settings: Any
    server: Any

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}


@contextlib.contextmanager
def running_service(kfp_url: str, recipes: Path, **overrides: Any) -> Iterator[RunningService]:
    import uvicorn

    from skitflow.serve.app import create_app
    from skitflow.serve.server import uvicorn_config
    from skitflow.serve.settings import ServeSettings

    token = secrets.token_urlsafe(24)
    slack_secret = secrets.token_hex(16)
    options: dict[str, Any] = {"kfp_timeout": 5.0, "slack_poll_interval": 0.2,
                               "slack_response_hosts": ("127.0.0.1",)}
    options.update(overrides)
    settings = ServeSettings(recipes=recipes, token=token, kfp_host=kfp_url,
                             slack_secret=slack_secret, **options)
    port = free_port()
    config = uvicorn_config(settings, "127.0.0.1", port, app=create_app(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="skitflow-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("skitflow serve did not start")
        time.sleep(0.02)
    try:
        yield RunningService(f"http://127.0.0.1:{port}", token, slack_secret, settings, server)
    finally:
        server.should_exit = True
        thread.join(15)


class SlackRecorder:
    """An HTTP server standing in for Slack's response_url: keeps every JSON message posted."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                with recorder.lock:
                    recorder.messages.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/commands/T1/1/abc"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SlackRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)
