"""A plain kfp pipeline with an exit handler (no `from __future__ import annotations`: kfp reads
the annotations as types). skitflow compiles no exit handler yet; the harness must run them."""

from kfp import dsl


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def fail() -> None:
    raise SystemExit(3)


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def report(status: dsl.PipelineTaskFinalStatus) -> str:
    return status.state


@dsl.pipeline(name="exit-handler")
def pipeline() -> None:
    with dsl.ExitHandler(report()):
        fail()
