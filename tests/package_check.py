"""Checks every compiled package must pass: the real KFP protobuf schema, references, reload."""

from __future__ import annotations

from pathlib import Path

import yaml


def check_package(text: str, tmp_path: Path) -> dict:
    """Parse with PipelineSpec/PlatformSpec (no unknown fields), resolve refs, reload with kfp."""
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    documents = list(yaml.safe_load_all(text))
    assert 1 <= len(documents) <= 2, f"expected 1 or 2 YAML documents, got {len(documents)}"
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(documents[0], spec, ignore_unknown_fields=False)
    if len(documents) == 2:
        json_format.ParseDict(documents[1], pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)

    component_names = set(spec.components)
    executor_labels = set(spec.deployment_spec.fields["executors"].struct_value.fields)

    def check_dag(dag) -> None:
        for name, task in dag.tasks.items():
            ref = task.component_ref.name
            assert ref in component_names, f"task {name} refers to missing component {ref}"

    check_dag(spec.root.dag)
    for name, component in spec.components.items():
        if component.HasField("dag"):
            check_dag(component.dag)
        else:
            assert component.executor_label in executor_labels, f"{name}: missing executor"
    path = tmp_path / "package.yaml"
    path.write_text(text)
    components.load_component_from_file(str(path))
    return documents[0]
