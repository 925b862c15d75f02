"""Pieces shared by the server modules: the error answer, the request record, time and JSON helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from typing import Any

from .faults import Fault

_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 6, 412: 9, 500: 13, 503: 14}


class ApiError(Exception):
    """An error answer; ``upload`` selects the upload endpoints' JSON shape."""

    def __init__(
        self, status: int, message: str, *, upload: bool = False, details: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.upload = upload
        self.details = details or message

    def body(self) -> dict[str, Any]:
        """The JSON body the real server sends for this error."""
        if self.upload:
            # pipeline_upload_server.go writes its own apiError struct.
            return {"error_message": self.message, "error_details": self.details}
        # grpc-gateway's google.rpc.Status rendering.
        return {
            "error": self.message,
            "code": _GRPC_CODES.get(self.status, 2),
            "message": self.message,
            "details": [],
        }


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``status`` is None for a dropped connection."""

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes = b""
    status: int | None = None
    fault: Fault | None = None

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name)

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header, e.g. ``"Bearer <token>"``."""
        return self.header("Authorization")

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header parsed into name -> value."""
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.header("Cookie") or "")
        except CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}

    def json(self) -> Any:
        """The request body decoded as JSON."""
        return json.loads(self.body)


def now() -> str:
    """Current UTC time in RFC 3339, as the API returns timestamps."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def public(resource: dict[str, Any]) -> dict[str, Any]:
    """Drop unset top-level fields, as protojson does for default values.

    Clients therefore see ``None`` for empty fields, as against the real server.
    """
    return {key: value for key, value in resource.items() if value not in (None, "", [], {}, False)}
