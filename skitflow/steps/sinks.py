"""Placeholder; filled in by its owner."""

SINKS: list = []
