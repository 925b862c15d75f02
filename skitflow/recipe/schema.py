"""The JSON Schema of recipes, with every registered step's settings (plugins included).

Editors use it through `# yaml-language-server: $schema=...` for completion and inline errors.
Step settings accept a template string (`{{ params.x }}`) wherever a value may be templated.
"""

from __future__ import annotations

import json
from typing import Any

from skitflow.recipe.models import SLOT_OPTIONS, ItemOptions, Recipe
from skitflow.steps.base import Kind
from skitflow.steps.registry import Registry

_TEMPLATE = {"type": "string", "pattern": r"\{\{.*\}\}", "description": "A template, e.g. {{ params.NAME }}"}
_SLOT_KIND = {"source": Kind.SOURCE, "steps": Kind.TRANSFORM, "sinks": Kind.SINK,
              "split": Kind.SPLIT, "trainer": Kind.TRAINER, "evaluator": Kind.EVALUATOR}


def recipe_schema(registry: Registry) -> dict[str, Any]:
    schema = Recipe.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    options = ItemOptions.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(options.pop("$defs", {}))
    for entry in registry:
        prefix = f"{entry.kind.value}__{entry.name}"
        settings = entry.step.Settings.model_json_schema(ref_template="#/$defs/" + prefix + "__{model}")
        for name, nested in settings.pop("$defs", {}).items():
            defs[f"{prefix}__{name}"] = nested
        for prop in settings.get("properties", {}).values():
            original = dict(prop)
            prop.clear()
            prop["anyOf"] = [original, _TEMPLATE]
            for key in ("description", "title", "default"):
                if key in original:
                    prop[key] = original[key]
        settings["description"] = (entry.step.__doc__ or "").strip()
        defs[prefix] = settings

    def item_schema(slot: str) -> dict[str, Any]:
        allowed = SLOT_OPTIONS[slot]
        option_props = {k: v for k, v in options["properties"].items() if k in allowed}
        variants = []
        kind = _SLOT_KIND[slot]
        for name in registry.names(kind):
            variants.append({
                "type": "object",
                "properties": {name: {"anyOf": [{"$ref": f"#/$defs/{kind.value}__{name}"}, {"type": "null"}]},
                               **option_props},
                "required": [name],
                "additionalProperties": False,
            })
        return {"oneOf": variants} if variants else {"type": "object"}

    props = schema["properties"]
    for slot in ("source", "split", "trainer", "evaluator"):
        props[slot] = item_schema(slot) if slot == "source" else {"anyOf": [item_schema(slot), {"type": "null"}]}
    props["steps"] = {"type": "array", "items": item_schema("steps")}
    props["sinks"] = {"type": "array", "items": item_schema("sinks")}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://skitflow.dev/schemas/recipe.schema.json"
    return schema


def schema_text(registry: Registry) -> str:
    return json.dumps(recipe_schema(registry), indent=2, sort_keys=True) + "\n"
