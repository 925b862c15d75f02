"""The hostile-template table: each escape and over-limit template of tests/test_templating.py, run
as `python -m skitflow validate FILE` under `/usr/bin/time -v` with real secrets in the
environment; prints a Markdown table (exit code, wall seconds and peak RSS of the whole process,
the seconds of the same `validate` in an already started process, secret shown?).

    PYTHONPATH=. python benchmarks/template_escapes.py > table.md
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_templating import ESCAPES, NEEDLES, OVER_LIMITS, PLAIN, SECRETS, recipe  # noqa: E402


def measure(text: str, folder: Path) -> tuple[int, float, float, bool]:
    path = folder / "r.yaml"
    path.write_text(text)
    env = {**os.environ, **SECRETS, **PLAIN, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "skitflow", "validate",
                           str(path)], capture_output=True, text=True, env=env, cwd=folder)
    report = done.stderr
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+(?:\.\d+)?)", report)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    seconds = (int(wall.group(1) or 0) * 60 + float(wall.group(2))) if wall else float("nan")
    output = done.stdout + report
    leaked = any(needle in output for needle in NEEDLES)
    return done.returncode, seconds, int(rss.group(1)) / 1024 if rss else float("nan"), leaked


def in_process(path: Path) -> tuple[int, float]:
    """Exit code and seconds of `validate` in this process (imports already done)."""
    from typer.testing import CliRunner

    from skitflow.cli.app import app

    started = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", str(path)])
    return result.exit_code, time.perf_counter() - started


def main() -> None:
    os.environ.update({**SECRETS, **PLAIN})
    rows = [("baseline: a valid recipe", recipe("data.csv"))]
    rows += [(template, recipe(template)) for template in ESCAPES]
    rows += [(f"{template[:70]}{'...' if len(template) > 70 else ''} ({limit})", recipe(template))
             for template, limit in OVER_LIMITS]
    print("| input | exit | seconds (process) | peak MiB (process) | seconds (in-process) "
          "| secret shown |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        in_process(Path(folder) / "absent.yaml")  # warm up: imports
        for label, text in rows:
            code, seconds, mib, leaked = measure(text, Path(folder))
            code_here, seconds_here = in_process(Path(folder) / "r.yaml")
            assert code_here == code, (label, code, code_here)
            cell = label.replace("|", "\\|").replace("\n", " ").replace("\x00", "\\0")
            print(f"| `{cell}` | {code} | {seconds:.2f} | {mib:.0f} | {seconds_here:.3f} "
                  f"| {'YES' if leaked else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
