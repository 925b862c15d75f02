"""The local-parity report: what `skitflow run` ignores or imitates of the Kubernetes settings."""

from __future__ import annotations

from pathlib import Path

from skitflow.api import compile_recipe
from skitflow.run.parity import parity_lines

REPO = Path(__file__).resolve().parent.parent


def test_every_kubernetes_setting_gets_one_line_and_secret_values_never_appear() -> None:
    plan = compile_recipe(REPO / "tests" / "recipes" / "valid" / "kubernetes-options.yaml").plan
    lines = parity_lines(plan, {"AWS_ACCESS_KEY_ID": "AKIA-very-secret", "AWS_SECRET_ACCESS_KEY": ""})
    text = "\n".join(lines)
    for start in ("GPU request 1 x nvidia.com/gpu (task train-xgboost)",
                  "resource requests cpu=4, memory=8Gi (task scale)", "resource limits memory=4Gi",
                  "node selector pool=cpu", "tolerations dedicated=ml:NoSchedule (task scale)",
                  "timeout 30m (task scale)", "retries 2 x, backoff 30s"):
        assert any(line.startswith(start) for line in lines), (start, text)
    assert "$AWS_ACCESS_KEY_ID" in text and "AWS_ACCESS_KEY_ID is set locally" in text
    assert "AWS_SECRET_ACCESS_KEY is NOT set locally" in text  # empty counts as not set
    assert "AKIA-very-secret" not in text
    assert len(lines) == len(set(lines))


def test_a_recipe_without_kubernetes_settings_has_nothing_to_report(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("apiVersion: skitflow/v1\nname: plain\nsource:\n  csv: {path: a.csv}\n")
    assert parity_lines(compile_recipe(recipe).plan, {}) == []
