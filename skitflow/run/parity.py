"""What `skitflow run` ignores or imitates of what the package asks of Kubernetes.

A local run executes the same package as Kubeflow, but a laptop has no scheduler: requests,
limits, node placement, timeouts and retries are not enforced, and Kubernetes secrets are
imitated by the environment. `parity_lines` says so, one line per thing, before the run starts
and in summary.json, so that "it worked locally" is never mistaken for "it will fit on the
cluster". Secret values are never read into the text: only whether each variable is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from skitflow.plan.planner import Plan, Task
from skitflow.recipe.models import TaskOptions
from skitflow.util.notify import LOCAL_RUN_ENV


def parity_lines(plan: Plan, environ: Mapping[str, str]) -> list[str]:
    """One line per Kubernetes setting the local run ignores or imitates (none: empty list)."""
    lines: list[str] = []
    checks: list[tuple[str, Callable[[TaskOptions], Any], str]] = [
        ("GPU request", _gpu, "not reserved: the task runs on this machine's CPU unless the step "
         "finds a local GPU"),
        ("resource requests", _requests, "not reserved: the task takes what this machine has"),
        ("resource limits", _limits, "not enforced: a task that would be OOM-killed or "
         "throttled on the cluster can succeed here"),
        ("node selector", _node_selector, "ignored: every task runs on this machine"),
        ("tolerations", _tolerations, "ignored: every task runs on this machine"),
        ("timeout", _timeout, "not enforced: a local task may run longer"),
        ("retries", _retries, "not retried: a failed task fails the local run at once"),
        ("volume", _volumes, "imitated: the local run reads and writes that path on this machine"),
    ]
    for label, read, effect in checks:
        groups = _group(plan.tasks, read)
        for value, tasks in groups.items():
            lines.append(f"{label} {value} ({_tasks(tasks)}): {effect}")
    for (secret, key, env), tasks in _secret_env(plan.tasks).items():
        state = "set locally" if environ.get(env) else "NOT set locally"
        lines.append(f"secret `{secret}` key `{key}` -> ${env} ({_tasks(tasks)}): imitated by the "
                     f"environment; {env} is {state}")
    for entry in plan.notify:
        target = entry.target
        env = target.env_name()
        state = "set locally" if environ.get(env) else "NOT set locally: it will not be sent"
        via = f" (secret `{target.secret}` on Kubeflow)" if target.secret else ""
        lines.append(f"notify {entry.kind} ${env}{via}: sent by `skitflow run` when the run ends, "
                     f"not by the exit task `notify` (it sees {LOCAL_RUN_ENV} and leaves it to the "
                     f"CLI, so it is sent once); {env} is {state}")
    return lines


def _group(tasks: tuple[Task, ...], read: Callable[[TaskOptions], Any]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for task in tasks:
        value = read(task.options)
        if value:
            groups.setdefault(value, []).append(task.id)
    return groups


def _tasks(ids: list[str]) -> str:
    shown = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
    return f"task{'s' if len(ids) > 1 else ''} {shown}"


def _gpu(options: TaskOptions) -> str | None:
    gpu = options.resources.gpu if options.resources else None
    return f"{gpu.count} x {gpu.type}" if gpu else None


def _requests(options: TaskOptions) -> str | None:
    r = options.resources
    parts = [f"{name}={value}" for name, value in (("cpu", r.cpu), ("memory", r.memory))
             if value is not None] if r else []
    return ", ".join(parts) or None


def _limits(options: TaskOptions) -> str | None:
    r = options.resources
    parts = [f"{name}={value}" for name, value in (("cpu", r.cpu_limit), ("memory", r.memory_limit))
             if value is not None] if r else []
    return ", ".join(parts) or None


def _node_selector(options: TaskOptions) -> str | None:
    selector = options.node_selector or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(selector.items())) or None


def _tolerations(options: TaskOptions) -> str | None:
    shown = [f"{t.key or '*'}{'=' + t.value if t.value else ''}:{t.effect or 'any'}"
             for t in options.tolerations or []]
    return ", ".join(shown) or None


def _timeout(options: TaskOptions) -> str | None:
    return str(options.timeout) if options.timeout else None


def _retries(options: TaskOptions) -> str | None:
    r = options.retries
    return f"{r.count} x, backoff {r.backoff}" if r and r.count else None


def _volumes(options: TaskOptions) -> str | None:
    return ", ".join(f"pvc {v.pvc} at {v.mount}" for v in options.volumes or []) or None


def _secret_env(tasks: tuple[Task, ...]) -> dict[tuple[str, str, str], list[str]]:
    found: dict[tuple[str, str, str], list[str]] = {}
    for task in tasks:
        for secret in task.options.secrets or []:
            for env, key in sorted(secret.env.items()):
                found.setdefault((secret.secret, key, env), []).append(task.id)
    return found
