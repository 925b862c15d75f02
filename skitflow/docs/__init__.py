"""The static documentation site of a project (`skitflow docs`): recipes, steps, recent runs."""
