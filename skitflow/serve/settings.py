"""The service's settings: where the recipes are, Kubeflow, secrets (from the environment only),
limits and timeouts. Every wait has a bound, so every request gets an answer in time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from skitflow.errors import SkitflowError

TOKEN_ENV = "SKITFLOW_SERVE_TOKEN"
SLACK_SECRET_ENV = "SLACK_SIGNING_SECRET"


@dataclass(frozen=True)
class ServeSettings:
    """What `skitflow serve` runs with. Secrets are here only to check requests and scrub logs."""

    recipes: Path
    token: str
    kfp_host: str
    namespace: str | None = None
    experiment: str = "Default"
    slack_secret: str | None = None
    #: the longest a request waits for Kubeflow (submit or status) before a 504
    kfp_timeout: float = 30.0
    #: the longest the service reads one request body before a 408
    body_timeout: float = 10.0
    max_body_bytes: int = 64 * 1024
    idempotency_ttl: float = 24 * 3600
    idempotency_capacity: int = 10_000
    #: threads that talk to Kubeflow at once; more requests wait (within kfp_timeout) for one
    kfp_workers: int = 16
    #: how long a Slack command's run is followed before its result is posted (Slack keeps a
    #: response_url for 30 minutes)
    slack_wait: float = 1800.0
    slack_poll_interval: float = 10.0
    #: hosts a Slack response_url may point at (https only, except loopback for tests)
    slack_response_hosts: tuple[str, ...] = ("hooks.slack.com",)


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SkitflowError(f"{name} must be a number of seconds, not `{raw}`") from None
    if value <= 0:
        raise SkitflowError(f"{name} must be more than 0")
    return value


def settings_from_env(recipes: Path, kfp_host: str, namespace: str | None, experiment: str,
                      environ: Mapping[str, str] | None = None) -> ServeSettings:
    """Secrets and limits from the environment; a missing token is an input error (exit 2)."""
    environ = os.environ if environ is None else environ
    token = (environ.get(TOKEN_ENV) or "").strip()
    if len(token) < 16:
        raise SkitflowError(
            f"{TOKEN_ENV} must hold the bearer token clients send (16 characters or more)",
            hint=f"export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if not recipes.is_dir():
        raise SkitflowError(f"recipes folder `{recipes}` does not exist")
    hosts = tuple(h.strip() for h in (environ.get("SKITFLOW_SERVE_SLACK_RESPONSE_HOSTS") or
                                      "hooks.slack.com").split(",") if h.strip())
    return ServeSettings(
        recipes=recipes, token=token, kfp_host=kfp_host, namespace=namespace,
        experiment=experiment, slack_secret=(environ.get(SLACK_SECRET_ENV) or "").strip() or None,
        kfp_timeout=_number(environ, "SKITFLOW_SERVE_KFP_TIMEOUT", 30.0),
        body_timeout=_number(environ, "SKITFLOW_SERVE_BODY_TIMEOUT", 10.0),
        max_body_bytes=int(_number(environ, "SKITFLOW_SERVE_MAX_BODY", 64 * 1024)),
        slack_wait=_number(environ, "SKITFLOW_SERVE_SLACK_WAIT", 1800.0),
        slack_poll_interval=_number(environ, "SKITFLOW_SERVE_SLACK_POLL", 10.0),
        slack_response_hosts=hosts,
    )
