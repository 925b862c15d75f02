"""Placeholder; filled in by its owner."""

EVALUATORS: list = []
