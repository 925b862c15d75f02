"""The HTTP routes of `skitflow serve` (Starlette on uvicorn).

    GET  /health                 no auth; 200 {"status": "ok"}
    GET  /recipes                the recipes of the folder with their parameters
    POST /recipes/{name}/runs    {"params": {...}, "experiment": "..."} -> 201 run id and link;
                                 400 with every problem; `Idempotency-Key` returns the first run
    GET  /runs/{id}              state, tasks, error; when finished the gate verdict and the
                                 metrics (null with `metrics_note` when they cannot be read)
    POST /slack/command          Slack's slash command (signature instead of the token)

Every answer is JSON. Bodies over `max_body_bytes` get 413, bodies slower than `body_timeout`
408, Kubeflow slower than `kfp_timeout` 504, Kubeflow failing 502; the message says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skitflow.errors import ParameterError, SkitflowError, did_you_mean
from skitflow.recipe.parameters import resolve_parameters
from skitflow.serve import messages, slack
from skitflow.serve.catalog import Catalog, Entry, describe
from skitflow.serve.idempotency import MAX_KEY_LENGTH, IdempotencyStore, KeyReused
from skitflow.serve.kubeflow import Gateway, UpstreamTimeout
from skitflow.serve.metrics import MetricsResult
from skitflow.serve.security import bearer_matches, slack_request_problem
from skitflow.serve.settings import ServeSettings
from skitflow.submit.reconcile import FINAL_STATES, Submission

log = logging.getLogger("skitflow.serve")
OPEN_PATHS = frozenset({"/health", "/slack/command"})
#: Slack commands followed at once; more are submitted but their end is not posted
MAX_FOLLOWED = 200
#: finished runs whose metrics the service keeps, so polling one does not read them again
MAX_REMEMBERED_METRICS = 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None,
                 problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.hint, self.problems = status, message, hint, problems

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.problems is not None:
            body["problems"] = self.problems
        return JSONResponse(body, status_code=self.status)


class Guard:
    """ASGI middleware: the bearer token on every route but the open ones, and one access-log
    line per request (method, path without its query, status, milliseconds; never a header)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        path = scope["path"]
        try:
            if path not in OPEN_PATHS:
                headers = dict(scope["headers"])
                raw = headers.get(b"authorization", b"").decode("latin-1")
                if not bearer_matches(raw, self.token):
                    response = JSONResponse(
                        {"error": "missing or wrong bearer token",
                         "hint": "send `Authorization: Bearer <SKITFLOW_SERVE_TOKEN>`"},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                    await response(scope, receive, sending)
                    return
            await self.app(scope, receive, sending)
        finally:
            log.info("%s %s %s %.0fms", scope["method"], path, status["code"],
                     (time.perf_counter() - started) * 1000)


def create_app(settings: ServeSettings, gateway: Gateway | None = None) -> Starlette:
    """The service; `gateway` (Kubeflow) can be given, e.g. to share one across apps."""
    service = _Service(settings, gateway or Gateway(settings.kfp_host, settings.namespace,
                                                    settings.kfp_timeout, settings.kfp_workers))
    routes = [
        Route("/health", service.health, methods=["GET"]),
        Route("/recipes", service.recipes, methods=["GET"]),
        Route("/recipes/{name}/runs", service.start_run, methods=["POST"]),
        Route("/runs/{run_id}", service.run_status, methods=["GET"]),
        Route("/slack/command", service.slack_command, methods=["POST"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.service = service
    app.add_middleware(Guard, token=settings.token)
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"{request.method} is not allowed on {request.url.path}"},
                        status_code=405)


def _handled(handler: Callable[[Any, Request], Awaitable[Response]]) -> Callable[..., Any]:
    """HttpError -> its JSON answer; anything unexpected -> 500 without details."""

    async def wrapper(self: Any, request: Request) -> Response:
        try:
            return await handler(self, request)
        except HttpError as exc:
            return exc.response()
        except UpstreamTimeout as exc:
            return _timeout(exc).response()
        except SkitflowError as exc:  # from the Kubeflow boundary: translated, secrets scrubbed
            return _upstream(exc).response()
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return HttpError(500, "internal error; see the service log").response()

    return wrapper


def _timeout(exc: UpstreamTimeout) -> HttpError:
    if exc.started:
        return HttpError(504, f"Kubeflow did not answer within {exc.seconds:g}s while {exc.what}",
                         hint="the request reached Kubeflow and may still take effect; repeat it "
                         "with the same Idempotency-Key to get its outcome instead of a new run")
    return HttpError(504, f"Kubeflow is busy: {exc.what} did not start within {exc.seconds:g}s; "
                     "nothing was sent", hint="try again later")


def _upstream(exc: SkitflowError) -> HttpError:
    hint = exc.problems[0].hint if exc.problems else None
    return HttpError(502, f"Kubeflow failed: {exc}", hint=hint)


class _Service:
    def __init__(self, settings: ServeSettings, gateway: Gateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self.catalog = Catalog(settings.recipes)
        self.keys = IdempotencyStore(settings.idempotency_ttl, settings.idempotency_capacity)
        self.followers: set[asyncio.Task[None]] = set()
        self._finished_metrics: dict[tuple[str, str], MetricsResult] = {}

    def close(self) -> None:
        for task in self.followers:
            task.cancel()
        self.gateway.close()

    # -- routes ---------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @_handled
    async def recipes(self, request: Request) -> Response:
        entries = await asyncio.to_thread(self.catalog.entries)
        return JSONResponse({"recipes": [describe(e) for e in entries]})

    @_handled
    async def start_run(self, request: Request) -> Response:
        body = await self._json_body(request)
        entry = await self._recipe(request.path_params["name"])
        unknown = sorted(set(body) - {"params", "experiment"})
        problems = [{"message": f"unknown field `{k}`", "hint": "send `params` and `experiment`"}
                    for k in unknown]
        params = body.get("params", {})
        experiment = body.get("experiment") or self.settings.experiment
        if not isinstance(params, dict):
            problems.append({"message": "`params` must be an object of NAME: VALUE"})
            params = {}
        if not isinstance(experiment, str) or len(experiment) > 256:
            problems.append({"message": "`experiment` must be a name (a string)"})
        arguments = self._arguments(entry, params, problems)
        if problems:
            raise HttpError(400, f"the run request for `{entry.name}` has {len(problems)} "
                            "problem(s)", problems=problems)
        submission = await self._submission(entry, arguments, experiment)
        key = request.headers.get("idempotency-key")
        if key is None:
            result = await self.gateway.call(f"starting `{entry.name}`", self._submit, submission)
            return JSONResponse(self._started(submission, result, False), status_code=201)
        return await self._idempotent(key, submission, experiment, params)

    @_handled
    async def run_status(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if len(run_id) > 128:
            raise HttpError(400, "that is not a run id")
        try:
            run = await self.gateway.call("checking the run", self.gateway.get_run, run_id)
        except SkitflowError as exc:
            if "(404)" in str(exc):
                raise HttpError(404, f"no run `{run_id}` on Kubeflow") from None
            raise _upstream(exc) from None
        plan = await self._plan_of(run)
        metrics = await self._metrics(run, plan) if str(run.state or "") in FINAL_STATES else None
        return JSONResponse(messages.run_view(run, self.gateway.link(run_id), plan, metrics))

    @_handled
    async def slack_command(self, request: Request) -> Response:
        secret = self.settings.slack_secret
        if not secret:
            raise HttpError(404, "the Slack command is not configured",
                            hint="set SLACK_SIGNING_SECRET where the service runs")
        body = await self._body(request)
        problem = slack_request_problem(secret, request.headers.get("x-slack-request-timestamp"),
                                        request.headers.get("x-slack-signature"), body)
        if problem is not None:
            raise HttpError(401, f"not a valid Slack request: {problem}")
        if request.headers.get("x-slack-retry-num"):  # Slack re-sent a command we acknowledged
            return JSONResponse(slack.ephemeral("already on it"))
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        try:
            name, params = slack.parse_command(form.get("text", ""))
        except ValueError as exc:
            return JSONResponse(slack.ephemeral(str(exc)))
        response_url = form.get("response_url", "")
        if not slack.response_url_allowed(response_url, self.settings.slack_response_hosts):
            raise HttpError(400, "the response_url is not a Slack URL")
        entry = self.catalog.find(name)
        if entry is None:
            names = [e.name for e in await asyncio.to_thread(self.catalog.entries)]
            hint = did_you_mean(name, names) or f"recipes: {', '.join(names) or 'none'}"
            return JSONResponse(slack.ephemeral(f"no recipe `{name}`; {hint}"))
        problems: list[dict[str, Any]] = []
        arguments = self._arguments(entry, params, problems)
        if problems:
            lines = "\n".join(f"• {p['message']}" + (f" ({p['hint']})" if p.get("hint") else "")
                              for p in problems)
            return JSONResponse(slack.ephemeral(f"`{name}` was not started:\n{lines}"))
        if len(self.followers) >= MAX_FOLLOWED:
            return JSONResponse(slack.ephemeral("too many runs are being followed; try later"))
        task = asyncio.create_task(self._follow(entry, arguments, params, response_url))
        self.followers.add(task)
        task.add_done_callback(self.followers.discard)
        return JSONResponse(slack.ephemeral(f"starting `{name}`; the link follows here"))

    # -- helpers --------------------------------------------------------------------------

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise HttpError(413, f"the request body is over {limit} bytes")

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HttpError(413, f"the request body is over {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await asyncio.wait_for(read(), self.settings.body_timeout)
        except TimeoutError:
            raise HttpError(408, f"the request body did not arrive within "
                            f"{self.settings.body_timeout:g}s") from None

    async def _json_body(self, request: Request) -> dict[str, Any]:
        raw = await self._body(request)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise HttpError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body

    async def _recipe(self, name: str) -> Entry:
        entry = await asyncio.to_thread(self.catalog.find, name)
        if entry is None:
            names = [e.name for e in await asyncio.to_thread(self.catalog.entries)]
            raise HttpError(404, f"no recipe `{name}` in the service's folder",
                            hint=did_you_mean(name, names) or f"recipes: {', '.join(names)}")
        return entry

    def _arguments(self, entry: Entry, params: dict[str, Any],
                   problems: list[dict[str, Any]]) -> dict[str, Any]:
        """Exactly `skitflow submit`'s check: every problem is added to `problems`."""
        assert entry.loaded is not None
        try:
            return resolve_parameters(entry.loaded.recipe.parameters, params, for_kubeflow=True)
        except ParameterError as exc:
            problems += [{"message": p.message, "hint": p.hint} for p in exc.problems]
            return {}

    async def _submission(self, entry: Entry, arguments: dict[str, Any],
                          experiment: str) -> Submission:
        try:
            package, version = await asyncio.to_thread(self.catalog.package, entry)
        except SkitflowError as exc:
            raise HttpError(422, f"recipe `{entry.name}` does not compile: {exc}") from None
        return Submission(package, version, experiment, self.settings.namespace, arguments)

    def _submit(self, submission: Submission) -> Any:
        return self.gateway.submit(submission)

    def _started(self, submission: Submission, result: Any, replayed: bool) -> dict[str, Any]:
        return {"run_id": result.run_id, "run_name": result.run_name,
                "link": self.gateway.link(result.run_id), "recipe": submission.recipe,
                "version": submission.version, "experiment": submission.experiment,
                "params": submission.arguments, "replayed": replayed}

    async def _idempotent(self, key: str, submission: Submission, experiment: str,
                          params: dict[str, Any]) -> Response:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise HttpError(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        fingerprint = hashlib.sha256(json.dumps(
            [submission.recipe, experiment, params], sort_keys=True, default=str).encode()
        ).hexdigest()
        try:
            entry, first = self.keys.claim(key, fingerprint)
        except KeyReused:
            raise HttpError(422, "this Idempotency-Key was used for another request (another "
                            "recipe, experiment or parameters)", hint="use a new key") from None
        if first:
            job = self.gateway.start(self._submit, submission)

            def settle(done: Any) -> None:
                failed = done.cancelled() or done.exception() is not None
                if failed:
                    self.keys.forget(key, entry)  # a retry with this key may try again
                if done.cancelled():
                    entry.result.cancel()
                elif done.exception() is not None:
                    entry.result.set_exception(done.exception())
                else:
                    entry.result.set_result(done.result())

            job.add_done_callback(settle)
            waiting: Any = job
        else:
            waiting = entry.result  # the first request's submission, never cancelled from here
        try:
            result = await self.gateway.wait(waiting, f"starting `{submission.recipe}`",
                                             cancel=first)
        except SkitflowError as exc:
            raise _upstream(exc) from None
        except asyncio.CancelledError:
            if not waiting.cancelled():
                raise  # this request itself was cancelled
            raise HttpError(504, "the first request with this Idempotency-Key was not started "
                            "in time; nothing was sent", hint="try again") from None
        return JSONResponse(self._started(submission, result, not first),
                            status_code=201 if first else 200)

    async def _plan_of(self, run: Any) -> Any:
        name = messages.recipe_of(run)
        entry = await asyncio.to_thread(self.catalog.find, name) if name else None
        if entry is None:
            return None
        try:
            package, _ = await asyncio.to_thread(self.catalog.package, entry)
        except SkitflowError:
            return None
        return package.plan

    async def _metrics(self, run: Any, plan: Any) -> MetricsResult:
        """A finished run's metrics, read once per run end (a retried run ends again) when read
        whole; a failure is answered as a note and tried again on the next request."""
        key = (str(run.run_id), str(run.finished_at))
        known = self._finished_metrics.get(key)
        if known is not None:
            return known
        try:
            result = await self.gateway.call("reading the run's metrics", self.gateway.run_metrics,
                                             run, plan)
        except UpstreamTimeout as exc:
            return MetricsResult(None, f"the metrics were not read within {exc.seconds:g}s")
        if result.metrics is not None:
            if len(self._finished_metrics) >= MAX_REMEMBERED_METRICS:
                self._finished_metrics.pop(next(iter(self._finished_metrics)))
            self._finished_metrics[key] = result
        return result

    async def _follow(self, entry: Entry, arguments: dict[str, Any], params: dict[str, Any],
                      response_url: str) -> None:
        """Submit, post the link, poll until the run ends (bounded), post the outcome."""
        post = self._poster(response_url)
        try:
            submission = await self._submission(entry, arguments, self.settings.experiment)
            result = await self.gateway.call(f"starting `{entry.name}`", self._submit, submission)
        except (HttpError, SkitflowError, UpstreamTimeout) as exc:
            text = exc.message if isinstance(exc, HttpError) else (
                _timeout(exc).message if isinstance(exc, UpstreamTimeout) else str(exc))
            await post(slack.ephemeral(f"`{entry.name}` was not started: {text}"))
            return
        link = self.gateway.link(result.run_id)
        await post(slack.in_channel(messages.started_text(entry.name, result.run_id, link,
                                                          params)))
        deadline = time.monotonic() + self.settings.slack_wait
        plan = submission.package.plan
        while time.monotonic() < deadline:
            await asyncio.sleep(min(self.settings.slack_poll_interval,
                                    max(0.0, deadline - time.monotonic())))
            try:
                run = await self.gateway.call("checking the run", self.gateway.get_run,
                                              result.run_id)
            except (SkitflowError, UpstreamTimeout):
                continue  # Kubeflow hiccup: the next poll may do
            view = messages.run_view(run, link, plan)
            if view["state"] in FINAL_STATES:
                await post(messages.outcome_payload(view))
                return
        await post(slack.in_channel(f"*{entry.name}* run {result.run_id} still runs after "
                                    f"{self.settings.slack_wait:g}s; <{link}|follow it here>"))

    def _poster(self, url: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def post(payload: dict[str, Any]) -> None:
            try:
                await asyncio.to_thread(slack.post, url, payload)
            except Exception as exc:  # noqa: BLE001 - Slack unreachable: log, go on
                log.warning("posting to Slack failed: %s", type(exc).__name__)

        return post
