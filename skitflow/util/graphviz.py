"""Graphviz at the edge: DOT text -> SVG or PNG through the `dot` program, when it is installed."""

from __future__ import annotations

import shutil
import subprocess

from skitflow.errors import EXIT_FAILURE, SkitflowError

INSTALL_HINT = ("install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install "
                "graphviz` (macOS); or use `--format mermaid` or `--format dot`, which need nothing")
#: a picture of a few hundred tasks takes well under a second; this bounds a stuck `dot`
RENDER_TIMEOUT_S = 60


def render(dot_text: str, fmt: str) -> bytes:
    """`dot -T<fmt>` of `dot_text`; a clear error when Graphviz is missing or fails."""
    program = shutil.which("dot")
    if program is None:
        raise SkitflowError(f"`--format {fmt}` needs Graphviz's `dot` program, which is not on PATH",
                            hint=INSTALL_HINT, exit_code=EXIT_FAILURE)
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=RENDER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SkitflowError(f"Graphviz took longer than {RENDER_TIMEOUT_S} s to draw the graph",
                            exit_code=EXIT_FAILURE) from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise SkitflowError(f"Graphviz could not draw the graph: {detail[0]}", exit_code=EXIT_FAILURE)
    return done.stdout
