"""`skitflow serve`: a small HTTP service in front of Kubeflow Pipelines.

Teams start recipes over HTTP or from a Slack slash command instead of a laptop. Parameters are
checked exactly as `skitflow submit` checks them, and runs are submitted through the same code
(content-named versions, no duplicates). The service binds to 127.0.0.1 by default, wants a bearer
token on every route but `/health` (Slack proves itself with its request signature), bounds every
request body and every wait on Kubeflow, and never logs a token.
"""
