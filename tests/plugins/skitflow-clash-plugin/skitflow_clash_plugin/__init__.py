"""A plugin that (wrongly) reuses the built-in name `dropna`."""

from skitflow.steps.base import StepSettings, TransformStep


class AnotherDropna(TransformStep):
    """Drop rows, again."""

    name = "dropna"
    Settings = StepSettings

    def run(self, frame, settings):
        return frame.dropna()


STEPS = [AnotherDropna]
