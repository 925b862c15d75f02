"""Jinja templating of recipe values, in a sandbox.

Two kinds of names exist in a template:

* compile-time names — ``env.NAME`` and ``recipe.name`` — are rendered now, into the package;
* run-time names — ``params.NAME`` (KFP pipeline parameters) and ``run.id`` / ``run.date`` — stay
  symbolic. A value that is exactly ``{{ params.NAME }}`` becomes a typed :class:`ParamRef`; a
  longer string keeps its ``{{ params.NAME }}`` text and is rendered by the runtime.

The sandbox has StrictUndefined, no loader (so no ``include``/``import`` of files) and no access
to Python internals: a recipe can neither read files nor run code at compile time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skitflow.errors import did_you_mean

RUN_NAMES = ("id", "date", "name")
_MARKER = "\x00{}.{}\x00"
_MARKER_RE = re.compile("\x00(params|run)\\.([A-Za-z_][A-Za-z0-9_]*)\x00")
RUNTIME_TEMPLATE_RE = re.compile(r"\{\{\s*(params|run)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "PRIVATE")


@dataclass(frozen=True)
class ParamRef:
    """A whole value that is a pipeline parameter, resolved at run time with its declared type."""

    name: str

    def to_json(self) -> dict[str, str]:
        return {"$param": self.name}


class TemplateProblem(Exception):
    """A template cannot be rendered; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class _Namespace:
    """Attribute access for `params.X` / `run.X` that yields a marker, or a clear error."""

    def __init__(self, kind: str, names: tuple[str, ...]) -> None:
        self._kind = kind
        self._names = names

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._names:
            declared = ", ".join(f"`{n}`" for n in self._names) or "none"
            hint = did_you_mean(name, self._names) or (
                f"declare it under `parameters:` (declared: {declared})"
                if self._kind == "params"
                else f"available: {declared}"
            )
            raise TemplateProblem(f"unknown name `{self._kind}.{name}`", hint)
        return _MARKER.format(self._kind, name)

    __getitem__ = __getattr__


class _Environment:
    """`env.NAME` at compile time; refuses names that look like secrets."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        if any(word in name.upper() for word in SECRET_WORDS):
            raise TemplateProblem(
                f"`env.{name}` looks like a secret and would be written into the package",
                "reference a Kubernetes secret under `secrets:` instead; values are read at run time",
            )
        if name not in self._environ:
            raise TemplateProblem(
                f"environment variable `{name}` is not set",
                f"set it before compiling (export {name}=...) or use `{{{{ params.{name.lower()} }}}}`",
            )
        return self._environ[name]

    __getitem__ = __getattr__


class Renderer:
    """Renders recipe strings; one instance per recipe."""

    def __init__(
        self, recipe: Mapping[str, Any], param_names: tuple[str, ...], environ: Mapping[str, str]
    ) -> None:
        self._jinja: Any = None  # created on the first template that needs more than names
        self._recipe = dict(recipe)
        self._context: dict[str, Any] = {
            "params": _Namespace("params", param_names),
            "run": _Namespace("run", RUN_NAMES),
            "env": _Environment(environ),
            "recipe": self._recipe,
        }

    def _plain_references(self, text: str) -> str | None:
        """Render a template made only of `{{ ns.name }}` references without Jinja (most are).

        The same namespaces answer, so unknown names fail exactly as under Jinja; anything else
        (filters, expressions, statements) returns None and goes to the sandbox.
        """
        rest = _PLAIN_REFERENCE.sub("", text)
        if "{{" in rest or "{%" in rest or "{#" in rest:
            return None

        def lookup(match: re.Match[str]) -> str:
            namespace, name = match.group(1), match.group(2)
            if namespace == "recipe":
                if name not in self._recipe:
                    raise TemplateProblem(f"template error: 'dict object' has no attribute '{name}'",
                                          "available names: params.*, env.*, recipe.name, "
                                          "recipe.description, run.id, run.date")
                return str(self._recipe[name])
            return str(getattr(self._context[namespace], name))

        return _PLAIN_REFERENCE.sub(lookup, text)

    def render(self, text: str) -> Any:
        """Render `text`; returns a str or a ParamRef. Raises TemplateProblem."""
        if "{{" not in text and "{%" not in text:
            return text
        plain = self._plain_references(text)
        rendered = plain if plain is not None else self._render_in_sandbox(text)
        whole = _MARKER_RE.fullmatch(rendered)
        if whole and whole.group(1) == "params":
            return ParamRef(whole.group(2))
        if "\x00" in _MARKER_RE.sub("", rendered):
            raise TemplateProblem(
                "`params.*` and `run.*` are only known at run time and cannot be transformed here",
                "use them as plain `{{ params.NAME }}` inside the string",
            )
        return _MARKER_RE.sub(lambda m: "{{ " + m.group(1) + "." + m.group(2) + " }}", rendered)

    def _render_in_sandbox(self, text: str) -> str:
        from jinja2 import StrictUndefined, TemplateError, UndefinedError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        if self._jinja is None:
            self._jinja = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        try:
            return str(self._jinja.from_string(text).render(self._context))
        except TemplateProblem:
            raise
        except UndefinedError as exc:
            raise TemplateProblem(
                f"template error: {exc.message}",
                "available names: params.*, env.*, recipe.name, recipe.description, run.id, run.date",
            ) from None
        except TemplateError as exc:
            raise TemplateProblem(f"template error: {exc.message or exc}") from None
        except Exception as exc:  # the sandbox refuses unsafe operations with SecurityError etc.
            raise TemplateProblem(f"template error: {exc}") from None


_PLAIN_REFERENCE = re.compile(r"\{\{\s*(params|run|env|recipe)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def referenced_params(value: Any) -> set[str]:
    """Names of every pipeline parameter a (nested) value refers to."""
    return _referenced(value, "params")


def referenced_run_names(value: Any) -> set[str]:
    """The `run.*` names (id, date, name) a (nested) value refers to: the task needs them as inputs."""
    return _referenced(value, "run")


def _referenced(value: Any, namespace: str) -> set[str]:
    found: set[str] = set()
    if isinstance(value, ParamRef):
        if namespace == "params":
            found.add(value.name)
    elif isinstance(value, str):
        found.update(m.group(2) for m in RUNTIME_TEMPLATE_RE.finditer(value) if m.group(1) == namespace)
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= _referenced(item, namespace)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= _referenced(item, namespace)
    return found


def resolve_runtime(value: Any, params: Mapping[str, Any], run: Mapping[str, Any]) -> Any:
    """Replace ParamRef markers (``{"$param": name}``) and runtime templates with real values."""
    if isinstance(value, dict):
        if set(value) == {"$param"}:
            return params[value["$param"]]
        return {k: resolve_runtime(v, params, run) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_runtime(v, params, run) for v in value]
    if isinstance(value, str) and "{{" in value:
        sources = {"params": params, "run": run}
        return RUNTIME_TEMPLATE_RE.sub(lambda m: str(sources[m.group(1)][m.group(2)]), value)
    return value
