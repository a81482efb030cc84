"""The report's HTML page: a table of the figures and the PNGs, self-contained (the PNGs are embedded
as base64 data URIs; no scripts, no external stylesheets or fonts), so index.html alone opens from a
folder, an archive or a mail attachment alike. The PNG files are written beside it too, for slides."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Table columns: (metrics key, heading); rates are shown in %.
COLUMNS = (
    ("rank1", "rank-1"),
    ("rank5", "rank-5"),
    ("eer", "EER (95 % CI)"),
    ("tar@far=0.01", "TAR @ FAR 1 %"),
    ("tar@far=0.001", "TAR @ FAR 0.1 %"),
    ("auc", "AUC"),
    ("persons", "persons"),
    ("probes", "probe count"),
)
#: Heading of the first column: which probes a row is about (all, other-day).
ROW_HEADING = "probe set"
CLASSIFY_COLUMNS = (("accuracy", "accuracy"), ("loss", "loss"), ("beats", "beats"))

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 34em; }
figure.wide { max-width: 68em; }
figcaption { font-size: 0.9em; color: #444; }
img { max-width: 100%; }
"""


@dataclass(frozen=True)
class Picture:
    """One PNG of the page: its file name (written beside the page), heading, caption and the PNG
    itself (embedded in the page, so the page needs no other file)."""

    file: str
    title: str
    caption: str
    png: bytes = b""
    wide: bool = False  # a two-panel figure, given the page's whole width

    def src(self) -> str:
        """The ``<img src>``: a data URI of the PNG (the file name only when no PNG was given)."""
        if not self.png:
            return self.file
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _cell(key: str, figures: dict[str, Any]) -> str:
    value = figures.get(key)
    if value is None:
        return "–"
    if key == "eer" and "eer_ci" in figures:
        low, high = figures["eer_ci"]
        return f"{value:.1%} ({low:.1%}–{high:.1%})"
    if key in ("auc", "loss"):
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.1%}"
    return str(value)


def figures_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """An HTML table, one row per probe set (all probes, other-day probes)."""
    columns = COLUMNS if any("rank1" in f for _, f in rows) else CLASSIFY_COLUMNS
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{html.escape(_cell(k, f))}</td>" for k, _ in columns)
        + "</tr>"
        for name, f in rows
    )
    return f"<table><tr><th>{html.escape(ROW_HEADING)}</th>{head}</tr>{body}</table>"


def render_page(
    title: str,
    facts: dict[str, Any],
    rows: Sequence[tuple[str, dict[str, Any]]],
    pictures: Sequence[Picture],
) -> str:
    """The whole page: heading, what was evaluated, the table, then each picture with its caption."""
    facts_html = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in facts.items()
    )
    pics = "".join(
        ("<figure class='wide'>" if p.wide else "<figure>")
        + f'<img src="{html.escape(p.src())}" alt="{html.escape(p.title)}">'
        f"<figcaption><b>{html.escape(p.title)}.</b> {html.escape(p.caption)}</figcaption></figure>"
        for p in pictures
    )
    table = figures_table(rows) if rows else "<p>No test figures in metrics.json.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><ul>{facts_html}</ul>{table}{pics}</body></html>\n"
    )
