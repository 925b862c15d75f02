"""Imports point down the stages: cli -> api -> run/submit -> compile -> plan -> recipe -> steps
-> connectors -> core (errors, expressions, util). A module may import its own package and
anything below it, never above. This reads every import statement in the package, function-level
imports included, so a lazy import cannot hide an upward edge.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import skitflow

PACKAGE = Path(skitflow.__file__).parent

#: top-level part of the package -> its layer; a lower number sits higher up.
LAYERS: dict[str, int] = {
    "cli": 0, "__main__": 0,
    "api": 1, "__init__": 1,
    "run": 2, "submit": 2, "docs": 2, "serve": 2,
    "compile": 3,
    "plan": 4,
    "recipe": 5,
    "steps": 6,
    "connectors": 7,
    "errors": 8, "expressions": 8, "util": 8,
}
#: parts of one layer that must not import each other either
SIBLINGS_APART = {("run", "submit"), ("submit", "run"), ("serve", "run"), ("run", "serve")}


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "skitflow":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("skitflow", *path.relative_to(PACKAGE).with_suffix("").parts))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "skitflow":  # `from skitflow import x`: x is a part
                found += [(node.lineno, "skitflow" if alias.name == "__version__"
                           else f"skitflow.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _part(".".join(("skitflow", *path.relative_to(PACKAGE).with_suffix("").parts)))
        assert own in LAYERS, f"{path}: add its package `{own}` to LAYERS in {__file__}"
        for line, module in _imports(path):
            target = _part(module)
            if target is None or target == own or module == "skitflow":  # the version constant
                continue
            if target not in LAYERS:
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: unknown part `{module}`")
            elif LAYERS[target] < LAYERS[own] or (own, target) in SIBLINGS_APART:
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: `{own}` imports `{module}`, "
                                f"which sits above it")
    return problems


def test_imports_point_down_the_stages():
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself can fail: a core module importing the CLI is reported."""
    fake = tmp_path / "skitflow"
    (fake / "util").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "util" / "__init__.py").write_text("")
    (fake / "util" / "bad.py").write_text("def f():\n    from skitflow.cli import main\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert violations() == ["util/bad.py:2: `util` imports `skitflow.cli`, which sits above it"]
