"""Recipes are parsed with libyaml where it reads a text as PyYAML's own parser does.

`skitflow.recipe.sourcemap.reads_alike` decides; these tests compare the two parsers on every
recipe in the repository and on generated documents made of the constructs where they are known
to differ (tabs, `{a: }`, `|#`, `?`, tags). The pure-Python path is what
`parse_yaml` does without libyaml (`_CSafeLoader = None`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skitflow.errors import RecipeError
from skitflow.recipe import sourcemap

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted(p for folder in ("recipes", "examples", "benchmarks/recipes", "tests/recipes")
                 for p in (REPO / folder).rglob("*.yaml"))

pytestmark = pytest.mark.skipif(sourcemap._CSafeLoader is None, reason="PyYAML without libyaml")


def outcome(text: str) -> tuple:
    """What parse_yaml gives: the value and every recorded position, or the error text."""
    try:
        value, source_map = sourcemap.parse_yaml(text, "recipe.yaml")
    except RecipeError as exc:
        return ("error", str(exc))
    return ("ok", repr(value), sorted(source_map.values.items()), sorted(source_map.keys.items()))


def both(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, tuple]:
    fast = outcome(text)
    with monkeypatch.context() as patch:
        patch.setattr(sourcemap, "_CSafeLoader", None)
        pure = outcome(text)
    return fast, pure


def test_the_repository_recipes_are_found() -> None:
    assert len(RECIPES) >= 30
    assert REPO / "recipes" / "seed-workflow.yaml" in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_repository_recipe_parses_the_same_with_either_parser(path: Path, monkeypatch) -> None:
    text = path.read_text(encoding="utf-8")
    fast, pure = both(text, monkeypatch)
    assert fast == pure


def test_the_shipped_recipes_take_the_libyaml_path() -> None:
    for name in ("recipes/seed-workflow.yaml", "examples/tickets.yaml"):
        assert sourcemap.reads_alike((REPO / name).read_text(encoding="utf-8")), name


@pytest.mark.parametrize("text", [
    "a: x\tb\n",  # PyYAML refuses a tab inside this plain value, libyaml keeps it
    "k: {a: }\n",  # the empty value is placed one column apart
    "k: [a: , b]\n",
    "k: >#\n  x\n",  # PyYAML wants a space before the comment
    "k: [a ? b]\n",  # PyYAML refuses `?` here
    "- !...x\n",  # a tag handle PyYAML refuses and libyaml reads
    "\ufeffk: v\n",
    "k: v",  # no final line break: block collections end at different marks
])
def test_texts_where_the_parsers_differ_take_the_pure_python_path(text: str, monkeypatch) -> None:
    assert not sourcemap.reads_alike(text)
    fast, pure = both(text, monkeypatch)
    assert fast == pure


PIECES = ["a", "b", "1", " ", ":", ": ", "-", "- ", "\n", "\n  ", "\n- ", "  - ", "[", "]", "{",
          "}", ", ", "#", "&a ", "*a", "!!str ", "|", ">", "|-\n", ">#", "'", '"', '"a b"', "?",
          "? ", "~", "null", "0x1", "2024-01-01", "<<: ", "---", "...", "\t", "\r", "\r\n", "é",
          "\U0001f600", "k: v\n", "{a: }", "[x, ]", "{k: v, ", "\\n", "%", "!...", "\ufeff", "\x85",
          "\u2028"]


@settings(max_examples=1500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=30).map("".join))
def test_generated_documents_parse_the_same_with_either_parser(text: str) -> None:
    """Wherever libyaml is used, the result equals PyYAML's; elsewhere PyYAML decides alone."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, pure = both(text + "\n", monkeypatch)
    assert fast == pure
