"""A small client for Label Studio's REST API, with errors a user can act on.

Where and who: the base URL comes from ``LABEL_STUDIO_URL`` and the token from
``LABEL_STUDIO_API_KEY`` (or ``LABEL_STUDIO_TOKEN``). Two kinds of token exist and are told apart by
their shape: a legacy token (40 hex characters) is sent as ``Authorization: Token <token>``; a
personal access token is a JWT *refresh* token, exchanged at ``POST /api/token/refresh`` for an
access token that lives a few minutes and is sent as ``Bearer``; it is refreshed when it runs out.

Every call has a timeout. Retries follow the shared :class:`~skitflow.util.retry.RetryPolicy`
(SKITFLOW_RETRY_*): connection failures are retried for every method (the request never left);
timeouts, 5xx and 429 are retried for idempotent methods through urllib3's ``Retry`` built from
that policy, and a POST refused with 429 is sent again after the wait the server asks for. Failures become
:class:`~skitflow.errors.RemoteError` naming the server and the variable to check, never the token.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from skitflow.errors import RemoteError, did_you_mean
from skitflow.util.redact import redact
from skitflow.util.retry import RetryPolicy

if TYPE_CHECKING:
    import requests

__all__ = [
    "TOKEN_ENVS",
    "URL_ENV",
    "LabelStudioClient",
    "token_kind",
]

URL_ENV = "LABEL_STUDIO_URL"
TOKEN_ENVS = ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_TOKEN")
RETRY_STATUSES = (429, 500, 502, 503, 504)
ExportType = Literal["JSON", "JSON_MIN"]
TokenKind = Literal["legacy", "refresh", "access"]


def token_kind(token: str) -> TokenKind:
    """`legacy` for a classic API token; `refresh`/`access` for a JWT (personal access token)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return "legacy"
    try:
        header = json.loads(_b64decode(parts[0]))
        payload = json.loads(_b64decode(parts[1]))
    except ValueError:
        return "legacy"
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return "legacy"
    return "access" if payload.get("token_type") == "access" else "refresh"


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _jwt_expiry(token: str) -> float | None:
    try:
        expiry = json.loads(_b64decode(token.split(".")[1])).get("exp")
    except (ValueError, IndexError, AttributeError):
        return None
    return float(expiry) if isinstance(expiry, int | float) else None


class LabelStudioClient:
    """Projects, task import, task listing and export of one Label Studio server."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        token_env: str = TOKEN_ENVS[0],
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        retries: int | None = None,
        backoff: float | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        if not re.match(r"https?://[^/\s]+", url or ""):
            raise RemoteError(
                f"labelstudio: `{URL_ENV}` must be an http:// or https:// URL",
                hint=f"e.g. export {URL_ENV}=http://localhost:8080",
            )
        if not token or not token.strip():
            raise RemoteError(f"labelstudio: the API token in `{token_env}` is empty")
        self.url = url.rstrip("/")
        self.token_env = token_env
        policy = policy or RetryPolicy.from_env()
        if retries is not None:
            policy = policy.with_attempts(retries + 1)
        if backoff is not None:
            policy = dataclasses.replace(policy, backoff=backoff)
        if timeout is not None:
            policy = dataclasses.replace(policy, timeout=timeout)
        self.policy = policy
        self.timeout = policy.timeout
        self.connect_timeout = connect_timeout
        self.retries = policy.attempts - 1
        self._token = token.strip()
        self.kind: TokenKind = token_kind(self._token)
        self._access: str | None = self._token if self.kind == "access" else None
        self._access_expiry = _jwt_expiry(self._token) if self.kind == "access" else None
        # POST is not idempotent: only retried when the connection failed (nothing was sent)
        retry = policy.urllib3_retry(RETRY_STATUSES)
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> LabelStudioClient:
        """A client for the server and token named by the environment."""
        environ = os.environ if environ is None else environ
        url = (environ.get(URL_ENV) or "").strip()
        if not url:
            raise RemoteError(
                f"labelstudio: `{URL_ENV}` is not set",
                hint=f"export {URL_ENV}=http://HOST:8080 (the address of your Label Studio)",
            )
        for name in TOKEN_ENVS:
            token = (environ.get(name) or "").strip()
            if token:
                options.setdefault("policy", RetryPolicy.from_env(environ))
                return cls(url, token, token_env=name, **options)
        raise RemoteError(
            f"labelstudio: no API token: set `{TOKEN_ENVS[0]}` (or `{TOKEN_ENVS[1]}`)",
            hint="copy a personal access token (or a legacy token) from Account & Settings in "
            "Label Studio",
        )

    def __repr__(self) -> str:  # never the token
        return f"LabelStudioClient({self.url!r}, token from {self.token_env}, {self.kind})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
        ok: Sequence[int] = (),
    ) -> requests.Response:
        """One authenticated call; a failure raises RemoteError saying `what` failed.

        Status codes in `ok` are returned to the caller instead of raising.
        """
        refreshed = False
        busy = self.policy.start()  # a POST refused with 429 was not handled: send it again
        while True:
            busy.tried()
            response = self._send(method, path, what, params, json_body, timeout)
            if response.status_code == 401 and self.kind == "refresh" and not refreshed:
                self._access = None  # the access token ran out early: get a new one, once
                refreshed = True
                continue
            if response.status_code == 429 and method == "POST":
                wait = busy.next_wait(_retry_after(response))
                if wait is not None:
                    time.sleep(wait)
                    continue
            if response.status_code < 400 or response.status_code in ok:
                return response
            raise self._http_error(response, what)

    def _send(self, method: str, path: str, what: str, params: Mapping[str, Any] | None,
              json_body: Any, timeout: float | None) -> requests.Response:
        import requests

        headers = {"Authorization": self._authorization(), "Accept": "application/json"}
        read_timeout = timeout or self.timeout
        try:
            return self._session.request(method, self.url + path, params=params, json=json_body,
                                         headers=headers, timeout=(self.connect_timeout, read_timeout))
        except (requests.Timeout, requests.ConnectionError) as exc:
            if _timed_out(exc):
                raise RemoteError(
                    f"labelstudio: Label Studio at {self.url} did not answer within "
                    f"{read_timeout:g}s while {what}",
                    hint="the server may be overloaded; try again later or with a smaller "
                    "batch_size",
                ) from None
            raise RemoteError(
                f"labelstudio: cannot reach Label Studio at {self.url} ({self._redact(_reason(exc))})",
                hint=f"check `{URL_ENV}` and that Label Studio is running there",
            ) from None
        except requests.RequestException as exc:
            raise RemoteError(
                f"labelstudio: request to {self.url} failed while {what}: {self._redact(_reason(exc))}"
            ) from None

    def _redact(self, text: str) -> str:
        """What the server or the HTTP library said, without this client's tokens."""
        return redact(text, (self._token, self._access))

    def _authorization(self) -> str:
        if self.kind == "legacy":
            return f"Token {self._token}"
        fresh = self._access_expiry is None or self._access_expiry - time.time() > 30
        if self._access is None or (self.kind == "refresh" and not fresh):
            self._access = self._refresh()
            self._access_expiry = _jwt_expiry(self._access)
        return f"Bearer {self._access}"

    def _refresh(self) -> str:
        """Exchange the personal access token (a refresh token) for a short-lived access token."""
        import requests

        try:
            response = self._session.post(
                self.url + "/api/token/refresh/", json={"refresh": self._token},
                timeout=(self.connect_timeout, self.timeout),
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            if _timed_out(exc):
                raise RemoteError(f"labelstudio: Label Studio at {self.url} did not answer the "
                                  "token refresh in time") from None
            raise RemoteError(
                f"labelstudio: cannot reach Label Studio at {self.url} ({self._redact(_reason(exc))})",
                hint=f"check `{URL_ENV}` and that Label Studio is running there",
            ) from None
        if response.status_code in (400, 401, 403):
            raise RemoteError(
                f"labelstudio: Label Studio at {self.url} refused the personal access token in "
                f"`{self.token_env}` ({response.status_code}: {self._redact(_detail(response))})",
                hint=f"check `{self.token_env}`: the token may be revoked or expired, or personal "
                "access tokens may be turned off for the organization",
            )
        if response.status_code >= 400:
            raise self._http_error(response, "refreshing the access token")
        try:
            access = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"labelstudio: {self.url} answered the token refresh without an "
                              "access token; is it a Label Studio server?") from None
        return str(access)

    def _http_error(self, response: requests.Response, what: str) -> RemoteError:
        status, detail = response.status_code, self._redact(_detail(response))
        if status in (401, 403):
            refused = "refused" if status == 401 else "does not allow"
            return RemoteError(
                f"labelstudio: Label Studio at {self.url} {refused} the {self._kind_name()} in "
                f"`{self.token_env}` while {what} ({status}: {detail})",
                hint=f"check `{self.token_env}`: copy the token again from Account & Settings "
                "(legacy tokens must be enabled for the organization)",
            )
        if status == 404:
            return RemoteError(f"labelstudio: not found while {what} ({detail})",
                               hint=f"check `{URL_ENV}` ({self.url}) and the project")
        if status >= 500 or status == 429:
            tries = f" after {self.retries + 1} attempts" if response.request.method != "POST" else ""
            return RemoteError(
                f"labelstudio: Label Studio at {self.url} failed while {what} "
                f"({status}{tries}): {detail}",
                hint="the Label Studio server log says why; try again later",
            )
        return RemoteError(f"labelstudio: Label Studio refused {what} ({status}): {detail}")

    def _kind_name(self) -> str:
        return {"legacy": "legacy API token", "refresh": "personal access token",
                "access": "JWT access token"}[self.kind]

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "?")
            raise RemoteError(
                f"labelstudio: Label Studio at {self.url} answered {what} with something that is "
                f"not JSON ({kind}): {response.text[:120]!r}",
                hint=f"is `{URL_ENV}` the address of Label Studio itself (not a proxy or login "
                "page)?",
            ) from None

    # -- projects --------------------------------------------------------------------------
    def get_project(self, project_id: int) -> dict[str, Any]:
        response = self.request("GET", f"/api/projects/{int(project_id)}/",
                                what=f"reading project {project_id}", ok=(404,))
        if response.status_code == 404:
            projects = self.list_projects()
            listed = ", ".join(f"{p['id']} `{p.get('title', '')}`" for p in projects[:10])
            raise RemoteError(
                f"labelstudio: project {project_id} not found at {self.url}; "
                + (f"projects there: {listed}" if listed else "it has no projects yet"),
                hint="name an existing project by id or title; a title creates the project when "
                "sending tasks",
            )
        return _mapping(self._json(response, f"reading project {project_id}"), self.url)

    def list_projects(self, title: str | None = None) -> list[dict[str, Any]]:
        """All projects (or those whose title contains `title`), following pagination."""
        projects: list[dict[str, Any]] = []
        page = 1
        while True:
            params: dict[str, Any] = {"page": page, "page_size": 100}
            if title:
                params["title"] = title
            response = self.request("GET", "/api/projects/", params=params,
                                    what="listing projects", ok=(404,))
            if response.status_code == 404:  # past the last page
                break
            body = self._json(response, "listing projects")
            results = body.get("results") if isinstance(body, dict) else body
            if not isinstance(results, list):
                raise RemoteError(f"labelstudio: {self.url} answered the project list in an "
                                  "unexpected shape; is it Label Studio?")
            projects.extend(p for p in results if isinstance(p, dict))
            if not isinstance(body, dict) or not body.get("next") or not results:
                break
            page += 1
        return projects

    def find_project(self, ref: int | str) -> dict[str, Any]:
        """A project by id (an int, or a string of digits) or by exact title."""
        if isinstance(ref, int) or str(ref).isdigit():
            return self.get_project(int(ref))
        found = self.project_by_title(str(ref))
        if found is None:
            titles = [str(p.get("title", "")) for p in self.list_projects()]
            hint = did_you_mean(str(ref), titles)
            raise RemoteError(
                f"labelstudio: no project titled `{ref}` at {self.url}"
                + (f"; {hint}" if hint else ""),
                hint="projects there: " + ", ".join(f"`{t}`" for t in titles[:10])
                if titles else "that server has no projects yet",
            )
        return found

    def project_by_title(self, title: str) -> dict[str, Any] | None:
        matches = [p for p in self.list_projects(title=title) if p.get("title") == title]
        if len(matches) > 1:
            ids = ", ".join(str(p["id"]) for p in matches)
            raise RemoteError(f"labelstudio: several projects are titled `{title}` (ids {ids})",
                              hint="name the project by its id instead")
        return matches[0] if matches else None

    def create_project(self, title: str, label_config: str, description: str = "") -> dict[str, Any]:
        response = self.request(
            "POST", "/api/projects/", what=f"creating project `{title}`",
            json_body={"title": title, "label_config": label_config, "description": description},
        )
        return _mapping(self._json(response, f"creating project `{title}`"), self.url)

    def ensure_project(self, title: str, label_config: str,
                       description: str = "") -> tuple[dict[str, Any], bool]:
        """The project titled `title`, created with `label_config` if missing; (project, created)."""
        found = self.project_by_title(title)
        if found is not None:
            return found, False
        return self.create_project(title, label_config, description), True

    # -- tasks -----------------------------------------------------------------------------
    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> int:
        """Create tasks (each `{"data": {...}, "predictions": [...]}`); returns how many."""
        what = f"importing {len(tasks)} tasks into project {project_id}"
        response = self.request("POST", f"/api/projects/{project_id}/import",
                                json_body=list(tasks), what=what, timeout=max(self.timeout, 300))
        body = _mapping(self._json(response, what), self.url)
        if "task_count" in body:
            return int(body["task_count"])
        if "import" in body:  # editions that import in the background: wait for it
            return self._wait_for_import(project_id, body["import"], what)
        raise RemoteError(f"labelstudio: {self.url} answered {what} without a task count")

    def _wait_for_import(self, project_id: int, import_id: Any, what: str,
                         limit_s: float = 600.0) -> int:
        deadline = time.monotonic() + limit_s
        delay = 0.5
        while time.monotonic() < deadline:
            response = self.request("GET", f"/api/projects/{project_id}/imports/{import_id}/",
                                    what=what)
            body = _mapping(self._json(response, what), self.url)
            status = str(body.get("status", "")).lower()
            if status == "completed":
                return int(body.get("task_count") or len(body.get("tasks") or []))
            if status == "failed":
                raise RemoteError(f"labelstudio: {what} failed: {body.get('error') or body}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise RemoteError(f"labelstudio: {what} did not finish within {limit_s:.0f}s")

    def iter_tasks(self, project_id: int, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every task of a project (id, data, ...), a page at a time."""
        page, seen = 1, 0
        while True:
            what = f"listing tasks of project {project_id} (page {page})"
            response = self.request(
                "GET", "/api/tasks/", what=what, ok=(404,),
                params={"project": project_id, "page": page, "page_size": page_size,
                        "fields": "task_only", "resolve_uri": "false"},
            )
            if response.status_code == 404:  # "Invalid page": past the last one
                return
            body = self._json(response, what)
            tasks = body.get("tasks") if isinstance(body, dict) else body
            if not isinstance(tasks, list):
                raise RemoteError(f"labelstudio: {self.url} answered {what} in an unexpected shape")
            yield from (t for t in tasks if isinstance(t, dict))
            seen += len(tasks)
            total = body.get("total") if isinstance(body, dict) else None
            if not tasks or len(tasks) < page_size or (isinstance(total, int) and seen >= total):
                return
            page += 1

    def export(self, project_id: int, export_type: ExportType = "JSON",
               download_all_tasks: bool = False) -> list[dict[str, Any]]:
        """The project's tasks with their annotations, as Label Studio exports them.

        JSON: one item per task with `data` and `annotations`. JSON_MIN: one flat item per
        annotation, the task data and each control's value side by side.
        """
        what = f"exporting project {project_id} as {export_type}"
        response = self.request(
            "GET", f"/api/projects/{project_id}/export", what=what, timeout=max(self.timeout, 300),
            params={"exportType": export_type,
                    "download_all_tasks": "true" if download_all_tasks else "false"},
        )
        try:
            items = response.json()
        except ValueError:
            raise self._malformed(project_id, export_type, "it is not JSON "
                                  f"({response.headers.get('content-type', '?')}): "
                                  f"{response.text[:80]!r}") from None
        if not isinstance(items, list):
            raise self._malformed(project_id, export_type, f"expected a list of tasks, got "
                                  f"{type(items).__name__}")
        for index, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item:
                raise self._malformed(project_id, export_type, f"item {index} is not a task")
            if export_type == "JSON" and (not isinstance(item.get("data"), dict)
                                          or not isinstance(item.get("annotations", []), list)):
                raise self._malformed(project_id, export_type,
                                      f"task {item['id']} has no `data` mapping or `annotations` list")
        return items

    def _malformed(self, project_id: int, export_type: str, why: str) -> RemoteError:
        return RemoteError(
            f"labelstudio: the {export_type} export of project {project_id} from {self.url} is "
            f"malformed: {why}",
            hint=f"check that `{URL_ENV}` points at Label Studio itself; try the export in its UI",
        )

    def create_annotation(self, task_id: int, result: list[dict[str, Any]],
                          was_cancelled: bool = False) -> dict[str, Any]:
        """Annotate a task (a result list as in the JSON export)."""
        what = f"annotating task {task_id}"
        response = self.request("POST", f"/api/tasks/{task_id}/annotations/", what=what,
                                json_body={"result": result, "was_cancelled": was_cancelled})
        return _mapping(self._json(response, what), self.url)


def _mapping(value: Any, url: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RemoteError(f"labelstudio: {url} answered with {type(value).__name__} where an "
                          "object was expected; is it Label Studio?")
    return value


def _detail(response: requests.Response) -> str:
    """The useful part of an error response: its `detail` or validation errors, shortened."""
    try:
        body = response.json()
    except ValueError:
        text = re.sub(r"\s+", " ", response.text or "").strip()
        return (text[:200] or response.reason or "no detail")
    if isinstance(body, dict):
        for key in ("validation_errors", "detail", "error", "message"):
            if body.get(key):
                value = body[key]
                return (value if isinstance(value, str) else json.dumps(value))[:300]
    return json.dumps(body)[:300]


def _retry_after(response: requests.Response) -> float | None:
    """The server's Retry-After in seconds, if it sent one as a number."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _timed_out(exc: Exception) -> bool:
    """A timeout, also when urllib3 gave up retrying one (requests calls that a ConnectionError)."""
    import requests
    from urllib3.exceptions import ReadTimeoutError

    if isinstance(exc, requests.ConnectTimeout):
        return False  # nothing answered at all: reported as unreachable
    if isinstance(exc, requests.Timeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ReadTimeoutError)


def _reason(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    for known in ("Connection refused", "Name or service not known", "timed out",
                  "Connection reset", "Remote end closed connection"):
        if known.lower() in text.lower():
            return known
    return text.splitlines()[0][:200] if text else type(exc).__name__
