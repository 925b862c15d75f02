"""Mutations of real recipes, the way a hostile user or a slipping editor breaks them.

One implementation serves the property test (tests/test_loader.py, driven by hypothesis through a
`random.Random`) and the fuzz benchmark (benchmarks/fuzz_validate.py, driven by a seeded one).
Standard library only, so the benchmark can measure an older skitflow with the same mutants.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def seed_recipes(root: Path = REPO) -> list[Path]:
    """The real recipes: golden valid ones, shipped ones and the examples."""
    found = [p for p in sorted((root / "tests/recipes/valid").glob("*.yaml"))
             if not p.name.endswith(".package.yaml")]
    found += sorted((root / "recipes").glob("*.yaml"))
    found += sorted((root / "examples").rglob("*.yaml"))
    return found


#: Values that break types, templates, numbers, dates and resources in a recipe.
SCALARS = [
    "", "~", "null", "yes", "no", "on", "-1", "0", "3.5", "1e999", "-.inf", ".nan", "0x_", "0b2",
    "2024-13-45", "2024-01-01", "12:30:00", "[]", "{}", "[1, 2]", "{a: 1}", "'{{ params.nope }}'",
    '"{{ env.HOME }}"', '"{{ params.x | upper }}"', '"{{ 1 + }}"', '"{% if %}"', "2Gx", "lots",
    "500m", "-", "?", ":", "|", ">", "*", "&", "!", "%", "@", "`", "'unclosed", '"unclosed',
    "x" * 300, "é\u202e", "\\", '"\\0"', '"\\x00{{ params.e }}\\x00"', "'\t'", "=", "<<",
]
TAGS = [
    "!!int ", "!!float ", "!!bool ", "!!str ", "!!null ", "!!timestamp ", "!!binary ", "!!map ",
    "!!seq ", "!!set ", "!!omap ", "!!python/object:os.system ", "!!python/name:os.system ",
    "!custom ", "! ", "!<tag:yaml.org,2002:int> ",
]
LINES = [
    "x: 1", "- a", "steps:", "  - dropna: {}", "  - nope: {}", "---", "...", "%YAML 1.1", "? [a]",
    "trainer:", "split: {train_test: {}}", "sinks: [{file: {path: out.csv}, input: model}]",
    "parameters: {a: {type: int, default: 1}, b: {type: int}}", "name: x", "{", "]", "\t- a",
    "defaults: {resources: {memory: 2Gx, cpu: lots}}", "<<: *nowhere", "a: &A\n  t: *A",
    "lol: &l0 [x, x, x, x, x, x, x, x, x]\nl1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n"
    "l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\n"
    "l3: [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]",
    "description: " + "[" * 150 + "]" * 150,
]
_VALUE = re.compile(r"(:[ ]+|- )(?P<value>[^\s#{}\[\],][^#\n]*)")


def _lines(text: str) -> list[str]:
    return text.split("\n")


def edit_line(text: str, rng: random.Random) -> str:
    """Delete, duplicate, swap or insert a line."""
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    action = rng.randrange(4)
    if action == 0:
        del lines[i]
    elif action == 1:
        lines.insert(i, lines[i])
    elif action == 2:
        lines[i], lines[j] = lines[j], lines[i]
    else:
        indent = re.match(r"[ ]*", lines[i]).group()  # type: ignore[union-attr]
        lines.insert(i, indent * rng.randrange(2) + rng.choice(LINES))
    return "\n".join(lines)


def indent(text: str, rng: random.Random) -> str:
    """Shift a line by one or two columns, or indent it with a tab."""
    lines = _lines(text)
    i = rng.randrange(len(lines))
    action = rng.randrange(4)
    if action == 0:
        lines[i] = " " * rng.choice((1, 2)) + lines[i]
    elif action == 1:
        lines[i] = lines[i][rng.choice((1, 2)):] if lines[i].startswith(" ") else lines[i]
    elif action == 2:
        lines[i] = re.sub(r"^[ ]+", "\t", lines[i])
    else:
        lines[i] = "\t" + lines[i]
    return "\n".join(lines)


def swap_scalar(text: str, rng: random.Random) -> str:
    """Replace one value (after `key:` or `- `) with a troublesome one or another real one."""
    matches = list(_VALUE.finditer(text))
    if not matches:
        return text
    match = rng.choice(matches)
    other = rng.choice(matches).group("value")
    new = rng.choice([*SCALARS, other])
    return text[: match.start("value")] + new + text[match.end("value"):]


def truncate(text: str, rng: random.Random) -> str:
    return text[: rng.randrange(len(text) + 1)]


def tag(text: str, rng: random.Random) -> str:
    """Put a YAML tag before a value, a key, or a flow list or mapping."""
    spots = [m.start("value") for m in _VALUE.finditer(text)]
    spots += [m.start(1) for m in re.finditer(r"(?m)^[ ]*(?:- )?(\w)", text)]
    spots += [m.start() for m in re.finditer(r"[\[{]", text)]
    if not spots:
        return text
    at = rng.choice(spots)
    return text[:at] + rng.choice(TAGS) + text[at:]


def alias(text: str, rng: random.Random) -> str:
    """Anchor a value and repeat it elsewhere, alias an undefined or enclosing anchor, or merge."""
    matches = list(_VALUE.finditer(text))
    if not matches:
        return text
    first, second = rng.choice(matches), rng.choice(matches)
    name = rng.choice(("a", "b", "A"))
    action = rng.randrange(3)
    if action == 0 and first.start() != second.start():  # anchor one value, use it at another
        (low, low_text), (high, high_text) = sorted(
            [(first.start("value"), f"&{name} "), (second.start("value"), f"*{name} #")])
        return text[:low] + low_text + text[low:high] + high_text + text[high:]
    if action == 1:  # an alias to an anchor never defined, or to the value that holds it
        at = second.start("value")
        return text[:at] + rng.choice((f"*{name} #", f"&{name} [*{name}] #")) + text[at:]
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines.insert(i, re.match(r"[ ]*", lines[i]).group() + f"<<: *{name}")  # type: ignore[union-attr]
    return "\n".join(lines)


TEXT_MUTATIONS: list[Callable[[str, random.Random], str]] = [
    edit_line, indent, swap_scalar, truncate, tag, alias]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    """Change one to three bytes: bit flips, NUL, a stray UTF-8 lead byte."""
    if not data:
        return data
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(buffer))
        buffer[i] = rng.choice((buffer[i] ^ (1 << rng.randrange(8)), 0, 0xC3, 0xFF, 0x09))
    return bytes(buffer)


def mutate(text: str, rng: random.Random) -> bytes:
    """One to three mutations of a recipe's text; sometimes a byte flip on the encoded result."""
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(TEXT_MUTATIONS)(text, rng)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.15:
        data = flip_bytes(data, rng)
    return data
