"""Fixes for two gaps in kfp.local 2.17.3 that stop packages Kubeflow runs fine from running locally.

1. Conditions on task outputs: kfp names such a channel `pipelinechannel--<task>-<output>`, but
   kfp.local's condition evaluator only recognises `<task>--<output>` and otherwise looks for a
   pipeline input, so every `dsl.If` on a task output (our data conditions and gates) was False.
2. `dsl.OneOf` over artifacts: a dsl.If/dsl.Else group's output selects from one producer per
   branch; kfp.local refuses any selector list longer than one. We take the branch that ran.

Both are applied only inside `skitflow run`, before kfp.local executes a package; the package
itself is unchanged. `apply()` is idempotent.
"""

from __future__ import annotations

from typing import Any


def apply() -> None:
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag
    from kfp.local.orchestrator import orchestrator_utils

    evaluator = dag.ConditionEvaluator
    if not getattr(evaluator._resolve_pipeline_channel, "_skitflow", False):
        original = evaluator._resolve_pipeline_channel

        def resolve(channel_ref: str, io_store: Any) -> Any:
            name = channel_ref.replace("pipelinechannel--", "")
            for cut in [i for i, char in enumerate(name) if char == "-"][::-1]:
                try:
                    return io_store.get_task_output(name[:cut], name[cut + 1:])
                except (ValueError, KeyError):
                    continue
            return original(channel_ref, io_store)

        resolve._skitflow = True  # type: ignore[attr-defined]
        evaluator._resolve_pipeline_channel = staticmethod(resolve)

    utils = orchestrator_utils.OrchestratorUtils
    if not getattr(utils.get_dag_output_artifacts, "_skitflow", False):

        def get_dag_output_artifacts(cls: Any, dag_outputs_spec: Any, io_store: Any) -> dict[str, Any]:
            outputs = {}
            for key, spec in dag_outputs_spec.artifacts.items():
                for selector in spec.artifact_selectors:  # one per branch: the one that ran
                    try:
                        outputs[key] = io_store.get_task_output(
                            selector.producer_subtask, selector.output_artifact_key)
                        break
                    except ValueError:
                        continue
                else:
                    raise ValueError(f"no branch produced the output artifact `{key}`")
            return outputs

        get_dag_output_artifacts._skitflow = True  # type: ignore[attr-defined]
        utils.get_dag_output_artifacts = classmethod(get_dag_output_artifacts)
