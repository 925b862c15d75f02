"""Reports how long the launcher-parity harness took (what it adds to CI)."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.launcher.test_launcher_parity import TIMINGS

    if not TIMINGS:
        return
    terminalreporter.section("launcher-parity harness")
    for label, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{label}: {seconds:.1f}s")
    terminalreporter.write_line(f"total: {sum(TIMINGS.values()):.1f}s")
