"""The Slack slash command `/run <recipe> key=value ...`: parse, acknowledge, follow, post back.

Slack wants an answer within 3 seconds, so the command is acknowledged at once (ephemeral, only
the caller sees it) once its recipe and parameters are checked; the submit and the wait happen in
the background and their results are posted to the command's `response_url`, which Slack keeps
valid for 30 minutes (so the wait is bounded by that). A `response_url` must be an https URL on
one of the allowed hosts (hooks.slack.com), so a forged form cannot make the service post
elsewhere.
"""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_command(text: str) -> tuple[str, dict[str, str]]:
    """`recipe a=1 b="x y"` -> ("recipe", {"a": "1", "b": "x y"}); ValueError when malformed."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot read the command: {exc}") from None
    if not words:
        raise ValueError("usage: /run <recipe> key=value ...")
    recipe, params = words[0], {}
    for word in words[1:]:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise ValueError(f"`{word}` is not key=value")
        params[name] = value
    return recipe, params


def response_url_allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """https on an allowed host; plain http only to a loopback host that is allowed (tests)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host not in hosts:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK)


def ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}


def in_channel(text: str) -> dict[str, Any]:
    return {"response_type": "in_channel", "text": text}


def post(url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
    """POST a message to a response_url (one try; Slack answers fast or not at all)."""
    import requests

    requests.post(url, json=payload, timeout=timeout, allow_redirects=False)
