"""The core helpers every stage may use: one of each (files, datasets, retry, redaction)."""
