"""Write ``index.html``: a summary table and one section per analysis, figures as PNG files beside it.

The page uses inline CSS only and references nothing outside its folder, so it opens from disk with no
network and can be copied or zipped as a whole.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paramlens.errors import ParamLensError

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d1d1f; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } .meta { color: #666; margin-top: 0; }
section { border-top: 1px solid #ddd; margin-top: 2rem; padding-top: .5rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
figure { display: inline-block; margin: .6rem 1rem .6rem 0; vertical-align: top; max-width: 520px; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { font-size: .85rem; color: #444; }
nav a { margin-right: 1rem; }
"""


@dataclass
class Section:
    """One part of the report.

    Attributes:
        title: heading.
        text: a paragraph of plain text (escaped).
        figures: ``[(PNG file name inside the report folder, caption)]``.
        table: rows as dicts with the same keys; numbers are shown with 4 significant digits.
        links: ``[(a file inside the report folder, its text)]``, e.g. a browser of the section's result.
    """

    title: str
    text: str = ""
    figures: list[tuple[str, str]] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _anchor(i: int) -> str:
    return f"s{i}"


def write_report(folder: str | Path, title: str, summary: list[dict[str, Any]], sections: list[Section]) -> Path:
    """Write ``folder/index.html``; every figure must already be a file in ``folder``.

    Raises:
        ParamLensError: a figure file is missing (the page would show a broken image).
    """
    folder = Path(folder)
    for s in sections:
        for name, _ in [*s.figures, *s.links]:
            if not (folder / name).is_file():
                raise ParamLensError(f"report file {folder / name} is missing; write it before the report")
    nav = "".join(f'<a href="#{_anchor(i)}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">ParamLens report, written {time.strftime("%Y-%m-%d %H:%M")}</p>',
        f"<nav>{nav}</nav>",
        "<h2>Summary</h2>",
        table_html(summary),
    ]
    for i, s in enumerate(sections):
        parts.append(f'<section id="{_anchor(i)}"><h2>{html.escape(s.title)}</h2>')
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        parts += [f'<p><a href="{html.escape(name)}">{html.escape(text)}</a></p>' for name, text in s.links]
        parts.append(table_html(s.table))
        for name, caption in s.figures:
            alt = html.escape(caption)
            parts.append(
                f'<figure><img src="{html.escape(name)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
            )
        parts.append("</section>")
    parts.append("</body></html>")
    out = folder / "index.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
