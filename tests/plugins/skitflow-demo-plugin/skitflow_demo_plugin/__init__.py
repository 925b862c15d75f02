"""A plugin step registered through the `skitflow.steps` entry point, like the built-ins."""

from __future__ import annotations

from pydantic import Field

from skitflow.steps.base import StepSettings, TransformStep


class TitleCaseSettings(StepSettings):
    """Which text columns to title-case."""

    columns: list[str] = Field(description="Text columns to convert to Title Case.")


class TitleCase(TransformStep):
    """Convert text columns to Title Case (a plugin step)."""

    name = "title_case"
    Settings = TitleCaseSettings
    example = {"columns": ["subject"]}

    def needs(self, settings: TitleCaseSettings) -> list[str]:
        return list(settings.columns)

    def run(self, frame, settings: TitleCaseSettings):
        for column in settings.columns:
            frame[column] = frame[column].str.title()
        return frame
