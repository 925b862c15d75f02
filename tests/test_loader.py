"""Loading recipes: YAML, templates and schema errors, each located in the file."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skitflow.errors import SkitflowError, render
from skitflow.recipe.loader import LoadedRecipe, decode_recipe_bytes, load_recipe_text
from skitflow.recipe.templating import ParamRef
from tests.mutants import REPO, mutate, seed_recipes

MINIMAL = """\
apiVersion: skitflow/v1
name: demo
source:
  csv: {path: data.csv}
"""


def problems(text: str, environ=None) -> list[tuple[int, int, str]]:
    with pytest.raises(SkitflowError) as info:
        load_recipe_text(text, "r.yaml", environ or {})
    return [(p.location.line, p.location.column, p.message) for p in info.value.problems]


def test_minimal_recipe_loads() -> None:
    loaded = load_recipe_text(MINIMAL, "r.yaml")
    assert loaded.recipe.name == "demo"
    assert loaded.recipe.source == {"csv": {"path": "data.csv"}}
    assert loaded.recipe.split is None and loaded.recipe.trainer is None


def test_yaml_syntax_error_points_at_the_position() -> None:
    [(line, column, message)] = problems("apiVersion: skitflow/v1\nname: [unclosed\n")
    assert line == 3 and "YAML syntax error" in message


def test_duplicate_keys_are_errors_not_silently_merged() -> None:
    [(line, column, message)] = problems(MINIMAL + "name: other\n")
    assert (line, column) == (5, 1)
    assert "duplicate key `name` (first defined at line 2)" in message


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(SkitflowError) as info:
        load_recipe_text(MINIMAL + "paramters: {}\n", "r.yaml")
    [problem] = info.value.problems
    assert problem.message == "unknown key `paramters`"
    assert problem.hint == "did you mean `parameters`?"
    assert (problem.location.line, problem.location.column) == (5, 1)


def test_every_problem_is_reported_in_one_run() -> None:
    text = MINIMAL.replace("skitflow/v1", "skitflow/v9") + "description: [1]\nimage: {a: 1}\n"
    found = problems(text)
    assert [line for line, _, _ in found] == [1, 5, 6]


def test_param_reference_becomes_a_typed_ref_and_strings_keep_runtime_templates() -> None:
    text = MINIMAL.replace("data.csv", "'data/{{ params.day }}.csv'") + (
        "parameters:\n  day: {type: str, default: mon}\n  size: {type: float, default: 0.2}\n"
        "split:\n  train_test: {test_size: '{{ params.size }}'}\n"
    )
    loaded = load_recipe_text(text, "r.yaml")
    assert loaded.recipe.source["csv"]["path"] == "data/{{ params.day }}.csv"
    assert loaded.recipe.split == {"train_test": {"test_size": ParamRef("size")}}


def test_compile_time_names_are_rendered() -> None:
    text = MINIMAL.replace("data.csv", "'{{ env.DATA_DIR }}/{{ recipe.name }}.csv'")
    loaded = load_recipe_text(text, "r.yaml", {"DATA_DIR": "/data"})
    assert loaded.recipe.source["csv"]["path"] == "/data/demo.csv"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ params.nope }}", "unknown name `params.nope`"),
        ("{{ env.MISSING }}", "environment variable `MISSING` is not set"),
        ("{{ env.DB_PASSWORD }}", "`env.DB_PASSWORD` looks like a secret"),
        ("{{ ''.__class__.__mro__ }}", "template error"),
        ("{% include '/etc/passwd' %}", "template error"),
        ("{{ unclosed", "template error"),
        ("{{ params.day | upper }}", "only known at run time"),
    ],
)
def test_template_problems_are_located_errors(template: str, expected: str) -> None:
    text = MINIMAL.replace("data.csv", f'"{template}"') + "parameters:\n  day: {type: str}\n"
    [(line, column, message)] = problems(text)
    assert (line, column) == (4, 15)
    assert expected in message


def test_secret_values_never_reach_error_messages() -> None:
    text = MINIMAL.replace("data.csv", '"{{ env.S3_SECRET_KEY }}"')
    with pytest.raises(SkitflowError) as info:
        load_recipe_text(text, "r.yaml", {"S3_SECRET_KEY": "hunter2-very-secret"})
    assert "hunter2" not in render(info.value, {"r.yaml": text})


def test_rendered_error_shows_numbered_lines_and_a_caret() -> None:
    text = MINIMAL + "nmae: x\n"
    with pytest.raises(SkitflowError) as info:
        load_recipe_text(text, "r.yaml")
    assert render(info.value, {"r.yaml": text}) == (
        "error: unknown key `nmae`\n"
        "  --> r.yaml:5:1\n"
        "  |\n"
        "4 |   csv: {path: data.csv}\n"
        "5 | nmae: x\n"
        "  | ^^^^\n"
        "  = hint: did you mean `name`?"
    )


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=20))
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_yields_a_recipe_or_a_skitflow_error(text: str) -> None:
    try:
        assert isinstance(load_recipe_text(text, "r.yaml"), LoadedRecipe)
    except SkitflowError as exc:
        assert exc.problems and all(p.message for p in exc.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["apiVersion", "name", "source", "steps", "sinks", "split",
                                        "parameters", "trainer", "evaluator", "defaults", "x"]),
                       yaml_values, max_size=8))
def test_any_mutated_document_yields_a_recipe_or_a_skitflow_error(document: dict) -> None:
    import yaml

    text = MINIMAL + yaml.safe_dump(document)
    try:
        load_recipe_text(text, "r.yaml")
    except SkitflowError as exc:
        assert exc.problems


#: The mutation test runs 2,000 examples in CI (CI=true) and fewer on a laptop; both profiles
#: can be chosen by name with SKITFLOW_MUTANTS_PROFILE.
settings.register_profile("mutants-ci", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("mutants-dev", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
MUTANTS_PROFILE = os.environ.get(
    "SKITFLOW_MUTANTS_PROFILE", "mutants-ci" if os.environ.get("CI") == "true" else "mutants-dev")
SEEDS = [(p.relative_to(REPO).as_posix(), p.read_text(encoding="utf-8")) for p in seed_recipes()]


def test_the_mutation_test_starts_from_every_kind_of_real_recipe() -> None:
    folders = {name.split("/")[0] for name, _ in SEEDS}
    assert folders == {"tests", "recipes", "examples"} and len(SEEDS) >= 8


@settings(settings.get_profile(MUTANTS_PROFILE))
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False))
def test_mutated_real_recipes_yield_a_plan_or_a_located_error(seed, rng) -> None:
    """Line edits, indentation, scalar swaps, truncation, byte flips, aliases and tags.

    A mutant either validates, and then compiles, or fails with exit 2 and every problem located.
    """
    from skitflow.compile.build import compile_plan
    from skitflow.plan.planner import build_plan
    from skitflow.steps.registry import default_registry

    name, text = seed
    data = mutate(text, rng)
    try:
        loaded = load_recipe_text(decode_recipe_bytes(data, name), name, {"HOME": "/home/u"},
                                  partial=True)
        plan = build_plan(loaded, default_registry())
    except SkitflowError as exc:
        assert exc.exit_code == 2, exc.summary()
        assert exc.problems and all(p.location and p.message for p in exc.problems), exc.summary()
        return
    assert compile_plan(plan).text.startswith("#")  # a recipe that validates must compile
