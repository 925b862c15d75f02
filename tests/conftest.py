"""Shared fixtures. Service fixtures (real servers on 127.0.0.1) live in tests/services.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.services"]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from the repository root, as a user would run the CLI."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.fixture
def cli():
    """Invoke the real typer app; returns typer's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from skitflow.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke
