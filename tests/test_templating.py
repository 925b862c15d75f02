"""Recipe templates: every documented reach works, every known escape is refused (exit 2 at its
location), every limit holds, and no secret from the environment reaches a package, the output or
an error. Through the real CLI (typer's CliRunner) with real secrets in the process environment.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest

from skitflow.recipe.loader import load_recipe_text
from skitflow.recipe.templating import (
    LIMITS,
    MAX_ITEMS,
    MAX_LOOP_ITERATIONS,
    MAX_RENDERED_TOTAL,
    MAX_STRING_LENGTH,
    MAX_TEMPLATE_LENGTH,
    ParamRef,
)

#: Real secret values, in the process environment for every test here.
SECRETS = {
    "DATABASE_URL": "postgresql://app:Pw-9f3kQ7zR2m@db.internal:5432/app",
    "AWS_SECRET_ACCESS_KEY": "k7Qz2R9vXw4Lp0Tn8Ys3Bd6Hf1Jm5Gc+a9Ue",
    "API_TOKEN": "tok-4b9c1e7d2a8f6b3c",
    "PLAIN_LOOKING": "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",  # a token shape, ordinary name
    "BLOB": "Xq3bKz9LmN0pQrStUvWx12Yz",  # random-looking, ordinary name
    "SESSION_JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVl",
    "COPY_OF_KEY": "prefix-k7Qz2R9vXw4Lp0Tn8Ys3Bd6Hf1Jm5Gc+a9Ue",  # holds another secret
}
NEEDLES = ("Pw-9f3kQ7zR2m", "k7Qz2R9vXw4Lp0Tn8Ys3Bd6Hf1Jm5Gc", "tok-4b9c1e7d2a8f6b3c",
           "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "Xq3bKz9LmN0pQrStUvWx12Yz",
           "c2lnbmF0dXJlLXZhbHVl")
PLAIN = {"DATA_DIR": "/data/in", "REGION": "eu-west-1"}
LOCATION = ":8:11"  # where `path:` holds the template in recipe() below


def recipe(template: str, description: str = "Intent data") -> str:
    return (
        "apiVersion: skitflow/v1\nname: demo\n"
        f"description: {json.dumps(description)}\n"
        "parameters:\n  day: {type: str, default: mon}\n"
        "source:\n  csv:\n"
        f"    path: {json.dumps(template)}\n"
    )


@pytest.fixture(autouse=True)
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SECRETS, **PLAIN}.items():
        monkeypatch.setenv(name, value)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for needle in NEEDLES:
            assert needle not in text


DOCUMENTED = [
    ("{{ params.day }}", ParamRef("day")),
    ("data/{{ params.day }}.csv", "data/{{ params.day }}.csv"),
    ("{{ env.DATA_DIR }}/x.csv", "/data/in/x.csv"),
    ("{{ env['DATA_DIR'] }}/x.csv", "/data/in/x.csv"),
    ("out/{{ run.id }}/{{ run.date }}/{{ run.name }}", "out/{{ run.id }}/{{ run.date }}/{{ run.name }}"),
    ("{{ recipe.name }}.csv", "demo.csv"),
    ("{{ recipe.description }}", "Intent data"),
    ("{{ recipe['name'] | upper }}.csv", "DEMO.csv"),
    ("{{ env.REGION | replace('-', '_') | title }}", "Eu_West_1"),
    ("{% if env.REGION == 'eu-west-1' %}eu{% else %}other{% endif %}.csv", "eu.csv"),
    ("{% for part in ['a', 'b'] %}{{ part }}/{% endfor %}x", "a/b/x"),
    ("{{ 2 ** 10 }}-{{ 'ab' ~ 'cd' }}-{{ [1, 2] | join('+') }}", "1024-abcd-1+2"),
    ("{{ env.DATA_DIR if recipe.name in ['demo'] else 'no' }}", "/data/in"),
]


@pytest.mark.parametrize(("template", "expected"), DOCUMENTED)
def test_documented_reaches_work(template: str, expected: object) -> None:
    loaded = load_recipe_text(recipe(template), "r.yaml", {**SECRETS, **PLAIN})
    assert loaded.recipe.source["csv"]["path"] == expected


def test_a_package_compiled_from_every_documented_reach_holds_no_secret(cli, tmp_path: Path) -> None:
    templates = [t for t, _ in DOCUMENTED]
    text = recipe("data.csv") + "sinks:\n" + "".join(
        f"  - file: {{path: {json.dumps(t + '/out.csv')}}}\n" for t in templates[1:])
    (tmp_path / "r.yaml").write_text(text)
    result = cli("compile", tmp_path / "r.yaml", "--target", "local", "-o", tmp_path / "r.package.yaml")
    assert result.exit_code == 0, result.output
    package = (tmp_path / "r.package.yaml").read_text()
    assert "/data/in/x.csv" in package and "Eu_West_1" in package
    assert_no_secret(package, result.output)


ESCAPES = [
    # secret values, by name and by what they look like
    "{{ env.DATABASE_URL }}", "{{ env['DATABASE_URL'] }}", "{{ env.DATABASE_URL | lower }}",
    "{{ env.DATABASE_URL[0:60] }}", "{{ env.AWS_SECRET_ACCESS_KEY }}", "{{ env.API_TOKEN }}",
    "{{ env.PLAIN_LOOKING }}", "{{ env.BLOB }}", "{{ env.SESSION_JWT }}", "{{ env.COPY_OF_KEY }}",
    # the environment object itself
    "{{ env._environ }}", "{{ env.__dict__ }}", "{{ env['_environ'] }}", "{{ env['__dict__'] }}",
    "{{ env.__class__ }}", "{{ env.__getattr__ }}", "{{ env }}", "{{ env | string }}",
    "{{ env | list }}", "{{ env ~ '' }}", "{% for k in env %}{{ k }}{% endfor %}",
    "{{ 'DATABASE_URL' in env }}",
    # filters that reach attributes or dump objects
    "{{ env | attr('_environ') }}", "{{ [env] | map(attribute='_environ') | list }}",
    "{{ [env] | map('attr', '_environ') | list }}", "{{ env | pprint }}", "{{ env | tojson }}",
    "{{ env | dictsort }}", "{{ env | items }}", "{{ [env] | selectattr('_environ') | list }}",
    "{{ [env] | sort(attribute='_environ') }}", "{{ env | format }}",
    # dunders and the other namespaces
    "{{ recipe.__class__ }}", "{{ params.__class__ }}", "{{ params.__class__.__init__.__globals__ }}",
    "{{ run.__dict__ }}", "{{ recipe._resolve }}", "{{ params['__class__'] }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ env.DATA_DIR.__class__ }}",
    "{{ env.DATA_DIR.upper() }}", "{{ (1).__class__ }}",
    # jinja's globals and special names
    "{{ self }}", "{{ self._TemplateReference__context }}", "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].environ }}", "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ joiner.__init__.__globals__ }}", "{{ namespace.__init__.__globals__ }}",
    "{{ range.__self__ }}", "{{ range(3) | list }}", "{{ dict(a=1) }}", "{{ loop }}",
    "{{ config }}", "{{ request }}", "{{ caller }}", "{{ varargs }}", "{{ kwargs }}",
    # string format tricks
    "{{ '{0.__class__}'.format(env) }}", "{{ '%s' % env }}", "{{ '%(DATABASE_URL)s' % env }}",
    "{{ '%999999999s' % 'a' }}", "{{ 'x'.format_map(env) }}",
    # statements that load, define or call
    "{% include '/etc/passwd' %}", "{% import 'os' as os %}", "{% from 'x' import y %}",
    "{% extends 'base' %}", "{% macro m() %}{% endmacro %}", "{% set ns = namespace() %}",
    "{% call m() %}{% endcall %}", "{% filter upper %}x{% endfilter %}",
    "{% with e = env %}{{ e }}{% endwith %}", "{% set x %}{{ env }}{% endset %}",
    "{% for x in [1] recursive %}{{ loop([]) }}{% endfor %}", "{{ 1 is sameas 1 }}",
    # a forged run-time marker (NUL characters)
    "{{ '' }}\x00params.e\x00",
]


@pytest.mark.parametrize("command", ["validate", "compile"])
@pytest.mark.parametrize("template", ESCAPES)
def test_known_escapes_are_refused_at_their_location(
    cli, tmp_path: Path, command: str, template: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(recipe(template))
    out = tmp_path / "out"
    args = ("compile", path, "--target", "local", "-o", out) if command == "compile" else ("validate", path)
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert f"r.yaml{LOCATION}" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing is written
    assert_no_secret(result.stdout, result.stderr)


def test_a_secret_url_is_refused_with_a_hint_to_use_secrets(cli, tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(recipe("{{ env.DATABASE_URL }}"))
    result = cli("validate", tmp_path / "r.yaml")
    assert result.exit_code == 2
    assert "`env.DATABASE_URL` holds what looks like a password in a URL" in result.stderr
    assert "`secrets:`" in result.stderr


def test_secrets_quoted_from_the_recipe_in_an_error_are_masked(cli, tmp_path: Path) -> None:
    text = recipe("data.csv") + "nmae: x  # postgresql://app:Pw-9f3kQ7zR2m@db.internal:5432/app\n"
    (tmp_path / "r.yaml").write_text(text)
    result = cli("validate", tmp_path / "r.yaml")
    assert result.exit_code == 2
    assert "postgresql://app:***@db.internal" in result.stderr
    assert_no_secret(result.stderr)


OVER_LIMITS = [
    ("{{ 9**(9**9) }}", "integer size"),
    ("{{ 'a' * 10**10 }}", "string length"),
    ("{{ [1] * 10**9 }}", "items"),
    ("{{ (2**4000) * (2**4000) }}", "integer size"),
    ("{% for x in 'a' * 100000 %}{% endfor %}", "loop iterations"),
    ("{% for x in 'a' * 1000 %}{% for y in 'b' * 1000 %}{% endfor %}{% endfor %}", "loop iterations"),
    ("{% set s = 'a' * 100000 %}{{ s ~ s }}", "string length"),
    ("{% set s = 'a' * 100000 %}{{ s + s }}", "string length"),
    ("{% set s = 'a' * 60000 %}{{ s }}{{ s }}", "string length"),
    ("{% for x in 'a' * 9000 %}{{ 'b' * 100 }}{% endfor %}", "string length"),
    ("{{ 'a' | replace('', 'b' * 1000) | replace('b', 'c' * 1000) }}", "string length"),
    ("{% set a = ['x'] * 1000 %}{{ [a, a] | length }}", "items"),
    ("{% set a = ['x'] * 1000 %}{% for i in 'y' * 9000 %}{{ a | length }}{% endfor %}", "work"),
    ("{% set a = 'x' * 100000 %}{% set b = 'x' * 100000 %}"
     "{% for i in 'y' * 9000 %}{{ a == b }}{% endfor %}", "work"),
    ("{{ " + "(" * 100 + "1" + ")" * 100 + " }}", "template nesting"),
    ("{{ " + "[" * 100 + "]" * 100 + " }}", "template nesting"),
    ("{{ 1 }}" + "x" * MAX_TEMPLATE_LENGTH, "template length"),
    ("{{ " + "-" * 3000 + "1 }}", "nests too deeply"),
]


@pytest.mark.parametrize(("template", "limit"), OVER_LIMITS)
def test_going_over_a_limit_is_exit_2_at_the_location_quickly(
    cli, tmp_path: Path, template: str, limit: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(recipe(template))
    cli("validate", tmp_path / "absent.yaml")  # imports done before the clock starts
    started = time.perf_counter()
    tracemalloc.start()
    try:
        result = cli("validate", path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    assert result.exit_code == 2, result.output
    assert f"r.yaml{LOCATION}" in result.stderr
    assert limit in result.stderr
    assert "Traceback" not in result.output
    assert peak < 200 * 2**20
    assert seconds < 2.0  # well under 1 s without tracemalloc; the table in the notes


def test_the_recipe_wide_output_limit_counts_every_value(cli, tmp_path: Path) -> None:
    description = "d" * (MAX_RENDERED_TOTAL // 10)
    text = recipe("data.csv", description) + "sinks:\n" + "".join(
        f"  - file: {{path: '{{{{ recipe.description }}}}/{i}.csv'}}\n" for i in range(12))
    (tmp_path / "r.yaml").write_text(text)
    result = cli("validate", tmp_path / "r.yaml")
    assert result.exit_code == 2
    assert "recipe output limit" in result.stderr


def many_templates(count: int) -> str:
    """A recipe with `count` distinct templates that need the sandbox (a filter each)."""
    return recipe("data.csv") + "sinks:\n" + "".join(
        f"  - file: {{path: \"{{{{ recipe.name | upper }}}}/{i}.csv\"}}\n" for i in range(count))


def test_fifty_distinct_sandboxed_templates_fit_in_a_recipe() -> None:
    loaded = load_recipe_text(many_templates(50), "r.yaml", {})
    assert loaded.recipe.sinks[49] == {"file": {"path": "DEMO/49.csv"}}


def test_compiling_too_many_distinct_templates_is_over_the_work_limit(cli, tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(many_templates(400))
    started = time.perf_counter()
    result = cli("validate", tmp_path / "r.yaml")
    assert result.exit_code == 2
    assert "work limit" in result.stderr and "r.yaml:" in result.stderr
    assert time.perf_counter() - started < 2.0


def test_limits_are_within_the_documented_bounds() -> None:
    assert MAX_STRING_LENGTH >= 10_000 and MAX_LOOP_ITERATIONS >= 1_000 and MAX_ITEMS >= 100
    assert set(LIMITS) == {"template length", "template nesting", "string length", "items",
                           "integer size", "loop iterations", "work", "recipe output"}
