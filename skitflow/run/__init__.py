"""Stage 4a, run: the local runner (executes a compiled package) and the task runtime (in the pod)."""
