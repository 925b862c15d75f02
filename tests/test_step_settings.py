"""Step settings build their pydantic validators on first use (`defer_build`), from any thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FIRST_USE_FROM_THREADS = textwrap.dedent("""
    import concurrent.futures, threading
    from skitflow.steps.transforms import DropDuplicates, FilterRows

    assert not DropDuplicates.Settings.__pydantic_complete__  # nothing built at import
    assert not FilterRows.Settings.__pydantic_complete__
    start = threading.Barrier(16)

    def first_use(i):
        start.wait()
        return DropDuplicates.Settings.model_validate({"subset": ["id"], "keep": "first"})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(first_use, range(16)))
    assert all(r == results[0] for r in results), results
    assert DropDuplicates.Settings.__pydantic_complete__
    assert not FilterRows.Settings.__pydantic_complete__  # an unused step is still not built
    print("ok", len(results))
""")


def test_settings_are_built_on_first_use_and_concurrent_first_uses_all_validate() -> None:
    result = subprocess.run([sys.executable, "-c", FIRST_USE_FROM_THREADS], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok 16"
