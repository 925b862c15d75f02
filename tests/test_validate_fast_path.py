"""`skitflow validate FILE...` skips typer: same output and exit codes, fewer imports.

Both sides run as real processes: the console script's `main()` (the fast path) and the typer
application itself (`skitflow.cli.app`), on valid, invalid, missing and mixed inputs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from skitflow.cli import is_plain_validate

REPO = Path(__file__).resolve().parent.parent
FAST = "import sys; from skitflow.cli import main; main()"
TYPER = "import sys; from skitflow.cli.app import app; app(prog_name='skitflow')"


def _run(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ["validate", "recipes/seed-workflow.yaml"],
    ["validate", "recipes"],
    ["validate", "tests/recipes/invalid/unknown-step.yaml", "tests/recipes/invalid/duplicate-key.yaml"],
    ["validate", "tests/recipes/invalid/many-problems.yaml"],
    ["validate", "tests/recipes/valid"],
    ["validate", "no/such/recipe.yaml"],
    ["validate", "tests/recipes/valid/data-prep.package.yaml"],
], ids=["one-file", "folder", "two-invalid", "many-problems", "skips-packages", "missing", "not-a-recipe"])
def test_fast_path_prints_and_exits_exactly_as_typer(args: list[str]) -> None:
    fast, slow = _run(FAST, *args), _run(TYPER, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert "Traceback" not in fast.stderr


def test_warnings_for_missing_local_sources_are_the_same(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("apiVersion: skitflow/v1\nname: r\nsource:\n  csv: {path: data/in.csv}\n")
    fast, slow = _run(FAST, "validate", "r.yaml", cwd=tmp_path), _run(TYPER, "validate", "r.yaml", cwd=tmp_path)
    assert fast.returncode == slow.returncode == 0
    assert "warning: r.yaml:4:15: local source path `data/in.csv` does not exist" in fast.stderr
    assert (fast.stdout, fast.stderr) == (slow.stdout, slow.stderr)


def test_fast_path_imports_neither_typer_nor_rich_nor_kfp() -> None:
    code = ("import sys\nfrom pathlib import Path\nfrom skitflow.cli import run_plain_validate\n"
            "code = run_plain_validate([Path(sys.argv[1])])\n"
            "heavy = sorted(m for m in ('typer', 'rich', 'click', 'kfp', 'pandas') if m in sys.modules)\n"
            "print('heavy:', heavy, 'exit:', code)\n")
    result = _run(code, "recipes/seed-workflow.yaml")
    assert result.stdout.splitlines()[-1] == "heavy: [] exit: 0", result.stdout + result.stderr


def test_the_console_script_exits_with_the_code_and_every_line_printed(tmp_path: Path) -> None:
    """The fast path ends with os._exit: what it printed is flushed first, to files and pipes."""
    script = Path(sys.executable).with_name("skitflow")
    args = [str(script), "validate", "recipes", "tests/recipes/invalid/many-problems.yaml"]
    piped = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 2
    assert piped.stdout.count("ok recipes/") == len(list((REPO / "recipes").glob("*.yaml")))
    assert piped.stderr.rstrip().endswith("problems found")
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        to_files = subprocess.run(args, cwd=REPO, stdout=out, stderr=err, timeout=120)
    assert to_files.returncode == 2
    assert ((tmp_path / "out").read_text(), (tmp_path / "err").read_text()) == (piped.stdout, piped.stderr)


@pytest.mark.parametrize(("argv", "plain"), [
    (["validate", "a.yaml"], True),
    (["validate", "a.yaml", "recipes/"], True),
    (["validate"], False),                      # typer prints the usage error
    (["validate", "--help"], False),
    (["validate", "a.yaml", "-x"], False),      # an unknown option: typer's message
    (["compile", "a.yaml"], False),
    ([], False),
])
def test_only_plain_validate_takes_the_fast_path(argv: list[str], plain: bool) -> None:
    assert is_plain_validate(argv) is plain
