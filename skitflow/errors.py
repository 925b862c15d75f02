"""Errors a user can act on.

Every problem in user input becomes a :class:`Problem` (what, where, how to fix it). A
:class:`SkitflowError` carries one or more problems; the CLI prints them without a traceback and
exits with the error's ``exit_code``. Third-party exceptions are translated into these at the
boundary where they happen, so nothing downstream has to know about yaml, pydantic or jinja.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EXIT_INVALID_INPUT = 2
EXIT_FAILURE = 1
#: `skitflow run`: every task ran, but the gate refused the model (it was not published).
EXIT_GATE_FAILED = 3


@dataclass(frozen=True, order=True)
class Location:
    """A position in a file, 1-based like every editor shows it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is, and what to do about it."""

    message: str
    location: Location | None = None
    hint: str | None = None
    width: int = 1  # how many characters to underline at `location`

    def sort_key(self) -> tuple:
        loc = self.location
        return (loc.file, loc.line, loc.column, self.message) if loc else ("", 0, 0, self.message)


class SkitflowError(Exception):
    """An error caused by input the user can fix; printed without a traceback."""

    #: Keep only the first problem found at each location (see RecipeError).
    one_per_location = False

    def __init__(
        self,
        message: str | None = None,
        location: Location | None = None,
        hint: str | None = None,
        *,
        problems: Sequence[Problem] | None = None,
        exit_code: int = EXIT_INVALID_INPUT,
    ) -> None:
        found = list(problems or [])
        if message is not None:
            found.insert(0, Problem(message, location, hint))
        if self.one_per_location:
            found = first_per_location(found)
        self.problems = sorted(found, key=Problem.sort_key)
        self.exit_code = exit_code
        super().__init__(self.summary())

    def summary(self) -> str:
        parts = []
        for p in self.problems:
            where = f"{p.location}: " if p.location else ""
            parts.append(f"{where}{p.message}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.summary()


class RecipeError(SkitflowError):
    """A recipe is invalid (syntax, schema, steps, columns or templates).

    One mistake gives one error: of several problems found at the same place, only the first
    found is kept, because later checks see the consequence of the first (a template that failed
    to render is not also "not a number").
    """

    one_per_location = True


def first_per_location(problems: Iterable[Problem]) -> list[Problem]:
    """The problems in their order, without later ones at a location already reported."""
    seen: set[Location] = set()
    kept = []
    for problem in problems:
        if problem.location is not None:
            if problem.location in seen:
                continue
            seen.add(problem.location)
        kept.append(problem)
    return kept


class ParameterError(SkitflowError):
    """A run-time parameter value does not match the recipe's declaration."""


class StepFailed(SkitflowError):
    """A step raised while running; carries the recipe location of the step."""

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None):
        super().__init__(message, location, hint, exit_code=EXIT_FAILURE)


class RemoteError(SkitflowError):
    """A remote service (object store, database, annotation tool, Kubeflow) refused or failed."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, None, hint, exit_code=EXIT_FAILURE)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A "did you mean `x`?" hint for the closest candidate, or None when nothing is close."""
    import difflib  # only for a wrong name: most runs never pay for it

    matches = difflib.get_close_matches(str(word), sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


def render(error: SkitflowError, sources: dict[str, str] | None = None) -> str:
    """Render every problem like a compiler does: location, numbered lines, a caret, a hint."""
    sources = sources or {}
    blocks = []
    for problem in error.problems:
        lines = [f"error: {problem.message}"]
        loc = problem.location
        if loc is not None:
            lines.append(f"  --> {loc}")
            text = sources.get(loc.file)
            if text is not None:
                lines.extend(_excerpt(text, loc, problem.width))
        if problem.hint:
            lines.append(f"  = hint: {problem.hint}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _excerpt(text: str, loc: Location, width: int) -> list[str]:
    """The offending line with one line of context either side, numbered, and a caret under it."""
    all_lines = text.splitlines()
    first, last = max(1, loc.line - 1), min(len(all_lines), loc.line + 1)
    gutter = len(str(last))
    out = [f"{' ' * gutter} |"]
    for number in range(first, last + 1):
        out.append(f"{number:>{gutter}} | {all_lines[number - 1]}")
        if number == loc.line:
            out.append(f"{' ' * gutter} | {' ' * (loc.column - 1)}{'^' * max(1, width)}")
    return out
