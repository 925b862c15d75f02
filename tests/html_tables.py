"""Read a report page the way a reviewer's browser does: its sections, tables and pictures."""

from __future__ import annotations

import base64
from html.parser import HTMLParser


class ReportPage(HTMLParser):
    """`tables[section]` is the list of tables under each `<h2>` (a table: rows of cell texts,
    the header row first); `images[section]` the decoded PNGs; `texts[section]` the paragraphs."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.images: dict[str, list[bytes]] = {}
        self.texts: dict[str, list[str]] = {}
        self.section = ""
        self._heading: list[str] | None = None
        self._cell: list[str] | None = None
        self._paragraph: list[str] | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self._heading = []
        elif tag == "table":
            self.tables.setdefault(self.section, []).append([])
        elif tag == "tr":
            self.tables[self.section][-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p":
            self._paragraph = []
        elif tag == "img":
            src = dict(attrs).get("src") or ""
            assert src.startswith("data:image/png;base64,"), src[:40]
            self.images.setdefault(self.section, []).append(base64.b64decode(src.split(",", 1)[1]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading is not None:
            self.section, self._heading = "".join(self._heading).strip(), None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self.section][-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "p" and self._paragraph is not None:
            self.texts.setdefault(self.section, []).append("".join(self._paragraph).strip())
            self._paragraph = None

    def handle_data(self, data: str) -> None:
        for holder in (self._heading, self._cell, self._paragraph):
            if holder is not None:
                holder.append(data)

    def table(self, section: str, index: int = 0) -> list[list[str]]:
        return self.tables[section][index]

    def pairs(self, section: str, index: int = 0) -> dict[str, str]:
        """A two-column table (header row skipped) as a mapping."""
        return {row[0]: row[1] for row in self.table(section, index)[1:]}
