"""Running the service: uvicorn on 127.0.0.1 by default, logs scrubbed of every secret.

uvicorn's own access log is off (it would print query strings); the service logs one line per
request itself (method, path, status, time). A filter on every handler replaces the token and
the Slack signing secret with *** wherever they might appear.
"""

from __future__ import annotations

import logging
from typing import Any

from skitflow.serve.security import RedactingFilter
from skitflow.serve.settings import ServeSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: connections handled at once; past it uvicorn answers 503 at once instead of queueing
LIMIT_CONCURRENCY = 1000


def uvicorn_config(settings: ServeSettings, host: str, port: int, app: Any = None) -> Any:
    import uvicorn

    from skitflow.serve.app import create_app

    return uvicorn.Config(
        app if app is not None else create_app(settings), host=host, port=port,
        access_log=False, log_config=None, lifespan="on", limit_concurrency=LIMIT_CONCURRENCY,
        timeout_keep_alive=5, timeout_graceful_shutdown=5, h11_max_incomplete_event_size=16384,
        server_header=False,
    )


def configure_logging(settings: ServeSettings) -> None:
    """One handler on stderr for the service and uvicorn, with the secrets filter on it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter([settings.token, settings.slack_secret or ""]))
    for name in ("skitflow.serve", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve_forever(settings: ServeSettings, host: str, port: int) -> None:
    import uvicorn

    configure_logging(settings)
    if host not in LOOPBACK:
        logging.getLogger("skitflow.serve").warning(
            "listening on %s: reachable from other machines; put TLS in front of it", host)
    uvicorn.Server(uvicorn_config(settings, host, port)).run()
