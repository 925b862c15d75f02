"""Who may call the service: a bearer token, or Slack's request signature; and logs without secrets.

Both checks compare in constant time (`hmac.compare_digest`), so the time an answer takes says
nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable

#: Slack refuses to count on a request older than this (its docs: 5 minutes), against replays.
SLACK_MAX_AGE_SECONDS = 300


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries exactly `Bearer <token>`."""
    if not authorization or not token:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` keyed by the secret."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def slack_request_problem(secret: str, timestamp: str | None, signature: str | None, body: bytes,
                          now: Callable[[], float] = time.time) -> str | None:
    """None when the request is Slack's and fresh; otherwise why it is refused (for the 401)."""
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    try:
        sent = int(timestamp)
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number"
    if abs(now() - sent) > SLACK_MAX_AGE_SECONDS:
        return "the request is older than 5 minutes (or its clock is off): refused against replays"
    try:
        expected = slack_signature(secret, timestamp, body)
    except UnicodeEncodeError:
        return "X-Slack-Request-Timestamp is not ASCII"
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        return "the signature does not match the body"
    return None


class RedactingFilter(logging.Filter):
    """Replaces secret values in every log record (message and arguments) with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.scrub(record.getMessage())
            record.args = None
        return True
