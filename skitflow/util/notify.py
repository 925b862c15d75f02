"""Run notifications: one message builder for Slack and a generic JSON webhook, and delivery.

The same code serves both places a run ends: the exit task of a Kubeflow run (it knows the final
status, the run's identity and the failing task's error, but not the metrics or the gate: an exit
task cannot consume outputs of the tasks it guards) and the end of `skitflow run` (which knows
everything). What each knows is in the `RunReport` it builds; a field it does not know is left out
of the message, never guessed.

URLs come only from the environment (on Kubeflow, a Kubernetes secret exposed as a variable). They
are never logged: every line that leaves here is redacted with them as extra secrets. Delivery is
retried with the one retry policy (`util.retry`) and never raises: a notification that cannot be
delivered is logged, and the run's own result and exit code stay what they were.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skitflow.util.redact import redact
from skitflow.util.retry import RetryPolicy

EVENTS = ("failure", "gate_failed", "success")
#: Set by `skitflow run` for its tasks: the exit task then leaves sending to the CLI, which knows
#: the metrics and the gate (so a local run notifies once, not twice).
LOCAL_RUN_ENV = "SKITFLOW_LOCAL_RUN"
#: The Kubeflow UI's address, where the exit task's pod has it: the message then links the run.
UI_URL_ENV = "SKITFLOW_UI_URL"
#: What a message from the exit handler cannot carry, said in the message itself.
EXIT_HANDLER_NOTE = ("metrics and the gate verdict are not in this message: the exit handler cannot "
                     "read the outputs of the tasks it guards; see the run")
#: How many lines of the failing task's output a message carries.
ERROR_LINES = 8


@dataclass
class RunReport:
    """What is known about a finished run, wherever it ran."""

    recipe: str
    status: str  # "succeeded" | "failed" | "interrupted"
    run_name: str = ""
    run_id: str = ""
    link: str | None = None  # the run in the Kubeflow UI, or the local run folder
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    #: {"passed": bool, "metric": str, "score": float, "min": ..., "max": ...}
    gate: dict[str, Any] | None = None
    #: {"task": str, "step": str | None, "location": str | None, "error": str, "log": [str]}
    failure: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what this report cannot know, said plainly

    @property
    def event(self) -> str:
        if self.status != "succeeded":
            return "failure"
        if self.gate is not None and not self.gate.get("passed", True):
            return "gate_failed"
        return "success"

    def gate_reason(self) -> str | None:
        """`f1_macro 0.62 < min 0.7`: why the gate decided as it did."""
        gate = self.gate
        if not gate or gate.get("score") is None:
            return None
        score, metric = float(gate["score"]), gate.get("metric") or "score"
        parts = []
        if gate.get("min") is not None:
            parts.append(f"{metric} {score:.4g} {'>=' if score >= float(gate['min']) else '<'} min {gate['min']}")
        if gate.get("max") is not None:
            parts.append(f"{metric} {score:.4g} {'<=' if score <= float(gate['max']) else '>'} max {gate['max']}")
        return "; ".join(parts) or f"{metric} {score:.4g}"


@dataclass(frozen=True)
class Target:
    """One notify entry of the recipe, as plain values (the recipe model writes them: to_target)."""

    kind: str  # "slack" | "webhook"
    env: str  # the variable holding the URL
    on: tuple[str, ...] = ("failure", "gate_failed")
    channel: str | None = None
    mention: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        return cls(kind=data["kind"], env=data["env"], on=tuple(data.get("on") or ()),
                   channel=data.get("channel"), mention=tuple(data.get("mention") or ()))


@dataclass(frozen=True)
class Delivery:
    target: Target
    outcome: str  # "sent" | "skipped" | "not sent" | "failed"
    detail: str = ""
    tries: int = 0


# --------------------------------------------------------------------------------- messages


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = int(round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m {secs}s" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"


_HEADLINES = {"success": "succeeded", "gate_failed": "finished, but the gate FAILED",
              "failure": "FAILED"}


def headline(report: RunReport) -> str:
    name = report.run_name or report.run_id or "a run"
    status = "was INTERRUPTED" if report.status == "interrupted" else _HEADLINES[report.event]
    return f"skitflow: {report.recipe} ({name}) {status}"


def _lines(report: RunReport) -> list[str]:
    """The message body as plain lines, shared by both payloads' text."""
    lines = []
    if report.run_id:
        lines.append(f"run id: {report.run_id}")
    if report.link:
        lines.append(f"run: {report.link}")
    lines.append(f"status: {report.status}")
    if (took := _duration(report.seconds)) is not None:
        lines.append(f"duration: {took}")
    if report.metrics:
        lines.append("metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in _key_metrics(report)))
    if report.gate is not None:
        verdict = "passed" if report.gate.get("passed") else "FAILED"
        reason = report.gate_reason()
        lines.append(f"gate: {verdict}" + (f" ({reason})" if reason else ""))
    if report.failure:
        failure = report.failure
        where = f"task `{failure.get('task') or '?'}`"
        if failure.get("step"):
            where += f", step `{failure['step']}`"
        if failure.get("location"):
            where += f" at {failure['location']}"
        lines.append(f"failed: {where}")
    lines += report.notes
    return lines


def _key_metrics(report: RunReport, limit: int = 6) -> list[tuple[str, float]]:
    """The gate's metric first, then the rest by name, at most `limit`."""
    first = (report.gate or {}).get("metric")
    names = sorted(report.metrics, key=lambda k: (k != first, k))[:limit]
    return [(name, report.metrics[name]) for name in names]


def error_tail(report: RunReport) -> str:
    """The failing task's error and its last lines of output, as one block."""
    failure = report.failure or {}
    lines = [str(line) for line in failure.get("log") or []][-ERROR_LINES:]
    if failure.get("error") and failure["error"] not in lines:
        lines.append(str(failure["error"]))
    return "\n".join(lines[-ERROR_LINES:])


def slack_payload(report: RunReport, target: Target) -> dict[str, Any]:
    """An incoming-webhook message: `text` (the notification's fallback) and `blocks`."""
    title = headline(report)
    mention = " ".join(target.mention) if report.event != "success" and target.mention else ""
    text = f"{mention} {title}".strip()
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(text)}*"}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "\n".join(_slack_escape(line) for line in _lines(report))}},
    ]
    tail = error_tail(report)
    if tail:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": f"```{_slack_escape(tail)[:2800]}```"}})
    payload: dict[str, Any] = {"text": text, "blocks": blocks}
    if target.channel:
        payload["channel"] = target.channel
    return payload


_MENTION = re.compile(r"(<[@!#][^<>\s]+>)")


def _slack_escape(text: str) -> str:
    """Slack's three control characters escaped; mentions like <@U123> and <!here> are kept."""
    parts = _MENTION.split(text.replace("&", "&amp;"))
    return "".join(p if _MENTION.fullmatch(p) else p.replace("<", "&lt;").replace(">", "&gt;")
                   for p in parts)


def webhook_payload(report: RunReport) -> dict[str, Any]:
    """The generic JSON body: every field the report knows, nothing it does not."""
    body: dict[str, Any] = {
        "source": "skitflow",
        "event": report.event,
        "recipe": report.recipe,
        "status": report.status,
        "run": {"name": report.run_name or None, "id": report.run_id or None, "link": report.link},
        "seconds": None if report.seconds is None else round(report.seconds, 3),
        "summary": headline(report),
    }
    if report.metrics:
        body["metrics"] = dict(report.metrics)
    if report.gate is not None:
        body["gate"] = {**report.gate, "reason": report.gate_reason()}
    if report.failure:
        body["failure"] = {k: report.failure.get(k) for k in ("task", "step", "location")} | {
            "error": error_tail(report)}
    if report.notes:
        body["notes"] = list(report.notes)
    return body


def payload(report: RunReport, target: Target) -> dict[str, Any]:
    return slack_payload(report, target) if target.kind == "slack" else webhook_payload(report)


# --------------------------------------------------------------------------------- delivery


class _Transient(Exception):
    """A reply worth another try (5xx, 429, a dropped connection)."""


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "skitflow-notify"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https only)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code}") from None
        raise ValueError(f"HTTP {exc.code}: the receiver refused the message") from None
    except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
        reason = getattr(exc, "reason", exc)
        raise _Transient(f"{type(reason).__name__}: {reason}") from None


def deliver(report: RunReport, targets: Sequence[Target], *, environ: Mapping[str, str],
            log: Callable[[str], None], policy: RetryPolicy | None = None,
            sleep: Callable[[float], None] | None = None) -> list[Delivery]:
    """Send the report to every target whose `on` includes its event. Never raises."""
    import time

    policy = policy or RetryPolicy.from_env(environ)
    urls = [environ.get(t.env) for t in targets]
    secrets = [u for u in urls if u]

    def say(message: str) -> None:
        log(redact(message, secrets, environ))

    done = []
    for target, url in zip(targets, urls, strict=True):
        name = f"{target.kind} ({target.env})"
        if report.event not in target.on:
            done.append(Delivery(target, "skipped", f"not sent on {report.event}"))
            continue
        if not url:
            say(f"notify: {name} not sent: the environment variable {target.env} is not set")
            done.append(Delivery(target, "not sent", f"{target.env} is not set"))
            continue
        if not url.lower().startswith(("http://", "https://")):
            say(f"notify: {name} not sent: {target.env} does not hold an http(s) URL")
            done.append(Delivery(target, "not sent", "not an http(s) URL"))
            continue
        body = json.dumps(payload(report, target)).encode()
        tries = {"n": 0}

        def attempt(url: str = url, body: bytes = body, tries: dict[str, int] = tries) -> int:
            tries["n"] += 1
            return _post(url, body, policy.timeout)

        def on_retry(retry: int, error: BaseException, wait: float, name: str = name) -> None:
            say(f"notify: {name} try {retry} failed ({error}); retrying in {wait:.1f}s")

        try:
            policy.run(attempt, transient=lambda e: isinstance(e, _Transient), on_retry=on_retry,
                       sleep=sleep or time.sleep)
        except Exception as exc:  # delivered or not, the run's result is not ours to change
            say(f"notify: {name} NOT delivered after {tries['n']} tries: {exc}")
            done.append(Delivery(target, "failed", redact(str(exc), secrets, environ), tries["n"]))
            continue
        say(f"notify: {report.event} sent to {name}")
        done.append(Delivery(target, "sent", "", tries["n"]))
    return done
