"""Placeholder; filled in by its owner."""

TRAINERS: list = []
