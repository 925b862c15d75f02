"""A plugin whose settings name a type pydantic has no schema for.

Settings validators are built on first use (`defer_build`), so the class statement succeeds; the
registry must still refuse the plugin when it loads it, naming the package.
"""

from skitflow.steps.base import StepSettings, TransformStep


class Opaque:
    """Not a type pydantic knows how to validate."""


class OpaqueSettings(StepSettings):
    value: Opaque


class NeedsOpaque(TransformStep):
    """A step whose settings cannot be validated."""

    name = "needs_opaque"
    Settings = OpaqueSettings

    def run(self, frame, settings):
        return frame


STEPS = [NeedsOpaque]
