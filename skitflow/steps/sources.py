"""Placeholder; filled in by its owner."""

SOURCES: list = []
