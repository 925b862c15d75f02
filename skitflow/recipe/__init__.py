"""Stage 1, load: recipe text -> source map, safe YAML, sandboxed templates -> validated models."""
