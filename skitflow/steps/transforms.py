"""Placeholder; filled in by its owner."""

TRANSFORMS: list = []
