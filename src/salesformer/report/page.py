"""The HTML page: sections, tables, charts and one inline copy of plotly.js.

The page is a single file that works offline: plotly.js is embedded once, inline, and nothing
is loaded from the network (no CDN, no web fonts).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Formats a table cell: the value and its column.
CellFormat = Callable[[Any, str], str]


@dataclass
class Section:
    """One part of the report: an anchor id, a title and its HTML body."""

    anchor: str
    title: str
    body: str
    notes: list[str] = field(default_factory=list)


def escape(value: object) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """A grey one-paragraph note (e.g. why a section is empty)."""
    return f'<p class="note">{escape(text)}</p>'


def code(text: str) -> str:
    """A command the reader can copy."""
    return f"<pre><code>{escape(text)}</code></pre>"


def chart(figure: Any, anchor: str, how_to_read: str) -> str:
    """A plotly figure as a ``<figure>`` with its one-line "how to read" caption."""
    body = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{anchor}",
        config={"displaylogo": False, "responsive": True},
    )
    return (
        f'<figure class="chart" data-chart="{escape(anchor)}">{body}'
        f"<figcaption><b>How to read:</b> {escape(how_to_read)}</figcaption></figure>"
    )


def number(value: Any, column: str = "") -> str:
    """A table number: 3 decimals, thousands as integers, ``-`` for missing."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    if column.endswith(" s"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def table(
    frame: pd.DataFrame,
    highlight: dict[str, set[int]] | None = None,
    fmt: CellFormat = number,
    caption: str | None = None,
) -> str:
    """An HTML table of ``frame``; cells named in ``highlight`` (column -> row positions) are
    marked as best."""
    marks = highlight or {}
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for position, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for column in frame.columns:
            value = row[column]
            if isinstance(value, np.integer | np.floating):  # an all-number row: numpy scalars
                value = value.item()
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            css = ' class="best"' if position in marks.get(str(column), set()) else ""
            if not numeric and len(str(value)) > 40:
                css = ' class="long"'
            align = ' data-num="1"' if numeric else ""
            cells.append(f"<td{css}{align}>{fmt(value, str(column))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (
        f'<div class="table-wrap"><table>{title}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def definition_list(pairs: Sequence[tuple[str, str]]) -> str:
    """``<dl>`` of label / already-escaped HTML value pairs."""
    items = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


STYLE = """
:root { --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --accent: #2563eb; --best: #dcfce7; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #f3f4f6; }
header.top { background: #1e3a8a; color: white; padding: 28px 40px 22px; }
header.top h1 { margin: 0 0 6px; font-size: 26px; }
header.top p { margin: 0; opacity: .9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 24px 60px; }
section, nav.toc { background: white; border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 26px; margin: 0 0 22px; }
h2 { font-size: 20px; margin: 4px 0 12px; border-bottom: 2px solid var(--line);
  padding-bottom: 6px; }
h3 { font-size: 16px; margin: 18px 0 8px; }
nav.toc ol { margin: 4px 0; padding-left: 22px; columns: 2; }
nav.toc a { color: var(--accent); text-decoration: none; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13.5px; min-width: 50%; }
caption { text-align: left; color: var(--muted); padding: 0 0 6px; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left; }
th { background: #f9fafb; font-weight: 600; }
td[data-num] { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) td { background: #fafafa; }
td.best { background: var(--best) !important; font-weight: 700; }
td.long { min-width: 260px; }
figure.chart { margin: 10px 0 22px; }
figure.chart > div { min-height: 340px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 4px; }
p.note { color: var(--muted); font-style: italic; background: #f9fafb;
  border-left: 3px solid #d1d5db; padding: 6px 12px; }
pre { background: #f3f4f6; padding: 8px 12px; border-radius: 6px; overflow-x: auto; }
mark { padding: 0 2px; border-radius: 3px; }
footer { color: var(--muted); text-align: center; font-size: 13px; }
"""


def render_page(title: str, subtitle: str, sections: Sequence[Section], plotly_js: str) -> str:
    """The whole HTML document: header, table of contents, sections, inline plotly.js."""
    toc = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>' for s in sections)
    parts = []
    for section in sections:
        notes = "".join(note(n) for n in section.notes)
        parts.append(
            f'<section id="{escape(section.anchor)}"><h2>{escape(section.title)}</h2>'
            f"{section.body}{notes}</section>"
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{plotly_js}</script></head><body>'
        f'<header class="top"><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>'
        f'<main><nav class="toc"><h2>Contents</h2><ol>{toc}</ol></nav>'
        f"{''.join(parts)}"
        "<footer>Made by salesformer. This file is self-contained and works offline.</footer>"
        "</main></body></html>\n"
    )
