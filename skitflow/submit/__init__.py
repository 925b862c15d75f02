"""Stage 4b, submit: the Kubeflow Pipelines client, its config, and reconciling versions/runs."""
