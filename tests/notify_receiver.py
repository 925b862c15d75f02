"""A real HTTP receiver on 127.0.0.1 for notification tests: records every POST, answers from a
script of status codes (e.g. 503 then 200), the last one repeated."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=lambda: [200])
    posts: list[dict[str, Any]] = field(default_factory=list)  # {"path", "headers", "body"}
    attempts: int = 0

    def bodies(self, path: str) -> list[Any]:
        return [p["body"] for p in self.posts if p["path"] == path]


@contextmanager
def running_receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(url="", statuses=list(statuses or [200]))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                status = receiver.statuses[min(receiver.attempts, len(receiver.statuses) - 1)]
                receiver.attempts += 1
                if status == 200:
                    receiver.posts.append({"path": self.path, "headers": dict(self.headers),
                                           "body": json.loads(raw)})
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
