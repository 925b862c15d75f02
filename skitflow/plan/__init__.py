"""Stage 2, plan: a loaded recipe + the step registry -> a checked Plan (tasks, edges, contracts)."""
