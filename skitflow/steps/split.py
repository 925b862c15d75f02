"""Placeholder; filled in by its owner."""

SPLITS: list = []
