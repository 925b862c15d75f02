"""A plan as a picture: the compiled DAG as Mermaid or Graphviz DOT text (pure, no I/O).

One node per task (the tasks of the compiled package, one to one), its fused steps listed inside;
one node per pipeline parameter a task uses; edges for the artifacts that flow, labelled with
conditions where a task runs only sometimes (`when`, `otherwise`, `gate`). SVG and PNG are DOT
rendered by Graphviz at the CLI edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from skitflow.plan.planner import Condition, Plan, Task
from skitflow.recipe.templating import ParamRef

#: shapes by component, so sources, sinks and models read apart at a glance
_DOT_SHAPES = {"prepare": "box", "transform": "box", "sink": "cylinder", "split": "diamond",
               "train": "box3d", "evaluate": "hexagon"}
_MERMAID_SHAPES = {"sink": ("[(", ")]"), "split": ("{{", "}}"), "evaluate": ("{{", "}}")}


@dataclass(frozen=True)
class Node:
    id: str
    title: str
    lines: tuple[str, ...]
    component: str  # prepare | transform | sink | split | train | evaluate | parameter


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    conditional: bool = False


@dataclass(frozen=True)
class Graph:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def _show(value: object) -> str:
    return f"params.{value.name}" if isinstance(value, ParamRef) else json.dumps(value)


def condition_label(condition: Condition, branch: str | None, probes: dict[str, str]) -> str:
    """What a reader should see on the edge into a conditional task."""
    if condition.label.startswith("gate-"):
        return f"gate {condition.label[5:].replace('-', '_')} passed"
    if branch == "else":
        return "otherwise"
    if condition.param is not None:
        return f"when params.{condition.param} {condition.op} {_show(condition.value)}"
    assert condition.ref is not None
    return f"when {probes.get(condition.ref.task, 'data')}"


def _task_node(task: Task) -> Node:
    replayed = [call for call in task.calls if call.stage == "prepare"]
    lines = tuple(f"{'fit' if call.stage == 'model' else call.kind.value}: {call.step}"
                  for call in task.calls if call.stage != "prepare")
    if replayed:  # the pre-split steps a model bundle carries, to score raw rows later
        lines = (f"(replays {len(replayed)} prepare steps)", *lines)
    if task.probe:
        lines += (f"checks: {task.probe}",)
    if task.gate is not None:
        bounds = [f"{name} {_show(value)}" for name, value in (("min", task.gate.min), ("max", task.gate.max))
                  if value is not None]
        if task.gate.beat is not None:
            bounds.append(f"beats {task.gate.beat} by {_show(task.gate.by)}")
        lines += (f"gate: {task.gate.metric} {' '.join(map(str, bounds))}".rstrip(),)
    if task.role and task.component == "sink":
        lines += (f"writes: {task.role}",)
    return Node(task.id, task.id, lines, task.component)


def plan_graph(plan: Plan) -> Graph:
    """The DAG the compiler builds from `plan`, as nodes and labelled edges."""
    nodes: list[Node] = []
    edges: list[Edge] = []
    used_params = sorted({name for task in plan.tasks for name in task.params}
                         | {t.condition.param for t in plan.tasks if t.condition and t.condition.param})
    for name in used_params:
        parameter = plan.parameters[name]
        default = "" if parameter.default is None else f" = {json.dumps(parameter.default)}"
        nodes.append(Node(f"param:{name}", f"params.{name}", (f"{parameter.type}{default}",),
                          "parameter"))
    probes = {task.id: task.probe for task in plan.tasks if task.probe}
    for task in plan.tasks:
        nodes.append(_task_node(task))
        condition = task.condition
        label = condition_label(condition, task.branch, probes) if condition else ""
        # the task whose output decides the condition: its edge carries the label
        decider = condition.ref.task if condition and condition.ref else None
        producers: dict[str, list[str]] = {}
        for input_name, refs in sorted(task.inputs.items()):
            for ref in refs:
                producers.setdefault(ref.task, []).append(
                    input_name if ref.output == input_name else f"{ref.output} → {input_name}")
        for producer, names in producers.items():
            text = ", ".join(names)
            if producer == decider:
                edges.append(Edge(producer, task.id, f"{text} [{label}]", True))
            else:
                edges.append(Edge(producer, task.id, text))
        if decider is not None and decider not in producers:
            edges.append(Edge(decider, task.id, label, True))
        for name in task.params:
            is_decider = condition is not None and condition.param == name
            edges.append(Edge(f"param:{name}", task.id, label if is_decider else "", is_decider))
        if condition is not None and condition.param and condition.param not in task.params:
            edges.append(Edge(f"param:{condition.param}", task.id, label, True))
    return Graph(plan.name, tuple(nodes), tuple(edges))


def _mermaid_id(node_id: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in node_id)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(graph: Graph) -> str:
    """Mermaid flowchart text (renders on GitHub, GitLab and in the docs site)."""
    out = ["flowchart TD", f"  %% {graph.name}"]
    for node in graph.nodes:
        body = "<br/>".join(_mermaid_text(t) for t in (f"<b>{node.title}</b>", *node.lines))
        if node.component == "parameter":
            opening, closing = "([", "])"
        else:
            opening, closing = _MERMAID_SHAPES.get(node.component, ("[", "]"))
        out.append(f'  {_mermaid_id(node.id)}{opening}"{body}"{closing}')
    for edge in graph.edges:
        arrow = "-.->" if edge.conditional or edge.source.startswith("param:") else "-->"
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        out.append(f"  {_mermaid_id(edge.source)} {arrow}{label} {_mermaid_id(edge.target)}")
    return "\n".join(out) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text; `dot -Tsvg` draws it."""
    out = [f"digraph {_dot_quote(graph.name)} {{", "  rankdir=TB;",
           '  node [fontname="Helvetica", fontsize=11];', '  edge [fontname="Helvetica", fontsize=9];']
    for node in graph.nodes:
        text = "\\n".join(t.replace("\\", "\\\\").replace('"', '\\"') for t in (node.title, *node.lines))
        if node.component == "parameter":
            shape = 'shape=ellipse, style=dashed'
        else:
            shape = f"shape={_DOT_SHAPES.get(node.component, 'box')}"
        out.append(f'  {_dot_quote(node.id)} [label="{text}", {shape}];')
    for edge in graph.edges:
        attrs = [f"label={_dot_quote(edge.label)}"] if edge.label else []
        if edge.conditional or edge.source.startswith("param:"):
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        out.append(f"  {_dot_quote(edge.source)} -> {_dot_quote(edge.target)}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"
