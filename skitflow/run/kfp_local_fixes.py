"""Fixes for two gaps in kfp.local 2.17.3 that stop packages Kubeflow runs fine from running locally.

1. Conditions on task outputs: kfp names such a channel `pipelinechannel--<task>-<output>`, but
   kfp.local's condition evaluator only recognises `<task>--<output>` and otherwise looks for a
   pipeline input, so every `dsl.If` on a task output (our data conditions and gates) was False.
2. `dsl.OneOf` over artifacts: a dsl.If/dsl.Else group's output selects from one producer per
   branch; kfp.local refuses any selector list longer than one. We take the branch that ran.

3. Run identity: kfp.local substitutes the job id and name placeholders but leaves
   `{{$.pipeline_job_create_time_utc}}` as it is. We substitute the time the run's first task
   started (one value per run, as Kubeflow's driver does) and remember each run's identity by
   pipeline root, so `skitflow run` can record it in summary.json.

All are applied only inside `skitflow run`, before kfp.local executes a package; the package
itself is unchanged. `apply()` is idempotent.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

_CREATE_TIME = "{{$.pipeline_job_create_time_utc}}"
#: pipeline root -> {"id", "name", "created"} of the last run kfp.local started there
_IDENTITIES: dict[str, dict[str, str]] = {}


def run_identity(pipeline_root: str) -> dict[str, str] | None:
    """The identity kfp.local gave the last run under `pipeline_root` (None: no task started)."""
    return _IDENTITIES.get(pipeline_root)


def _apply_run_identity() -> None:
    from kfp.local import placeholder_utils

    if getattr(placeholder_utils.replace_placeholders, "_skitflow", False):
        return
    replace_placeholders = placeholder_utils.replace_placeholders
    resolve_individual = placeholder_utils.resolve_individual_placeholder

    def replace(full_command: Any, executor_input_dict: Any, pipeline_resource_name: str,
                task_resource_name: str, pipeline_root: str, unique_pipeline_id: str) -> Any:
        known = _IDENTITIES.get(pipeline_root)
        if known is None or known["id"] != unique_pipeline_id:
            created = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
            _IDENTITIES[pipeline_root] = {"id": unique_pipeline_id, "name": pipeline_resource_name,
                                          "created": created.replace("+00:00", "Z")}
        return replace_placeholders(full_command, executor_input_dict, pipeline_resource_name,
                                    task_resource_name, pipeline_root, unique_pipeline_id)

    def resolve(element: str, *args: Any, **kwargs: Any) -> Any:
        if _CREATE_TIME in element:
            known = _IDENTITIES.get(kwargs.get("pipeline_root", ""))
            if known is not None:
                element = element.replace(_CREATE_TIME, known["created"])
        return resolve_individual(element, *args, **kwargs)

    replace._skitflow = True  # type: ignore[attr-defined]
    placeholder_utils.replace_placeholders = replace
    placeholder_utils.resolve_individual_placeholder = resolve


def apply() -> None:
    _apply_run_identity()
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
