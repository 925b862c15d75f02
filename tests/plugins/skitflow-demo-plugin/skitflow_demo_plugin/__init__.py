"""Plugin steps registered through the `skitflow.steps` entry point, like the built-ins."""

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


class TextLengthSettings(StepSettings):
    """Which text column to measure, and the name of the new column."""

    column: str = Field(description="The text column to measure.")
    into: str | None = Field(None, description="Name of the new column; default `<column>_length`.")


class TextLength(TransformStep):
    """Add a column with the number of characters of a text column (a plugin step that adds a column)."""

    name = "text_length"
    Settings = TextLengthSettings
    example = {"column": "subject"}

    def needs(self, settings: TextLengthSettings) -> list[str]:
        return [settings.column]

    def produces(self, settings: TextLengthSettings) -> list[str]:
        return [settings.into or f"{settings.column}_length"]

    def run(self, frame, settings: TextLengthSettings):
        frame[self.produces(settings)[0]] = frame[settings.column].str.len()
        return frame
