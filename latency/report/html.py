"""One self-contained HTML page: every figure embedded as a base64 PNG, no external file or script."""

from __future__ import annotations

import base64
import html
from pathlib import Path

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1180px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; } th { background: #f3f3f3; }
td.l, th.l { text-align: left; }
.note { font-size: 0.9em; color: #555; } .warn { color: #8a4b00; }
"""


def img_tag(png_path, alt: str) -> str:
    """An <img> whose PNG bytes are inline (data URI)."""
    data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def table(header: list, rows: list, left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned, cells are escaped."""
    def cell(tag, i, v):
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(path, title: str, sections: list, intro: list | None = None) -> Path:
    """Write the page. ``sections``: dicts with ``heading``, optional ``text`` (list of plain strings),
    ``html`` (trusted HTML made by :func:`table`), ``figures`` (FigureFile list: image, title, caption)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for line in intro or []:
        parts.append(f"<p class='note'>{html.escape(line)}</p>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s['heading'])}</h2>")
        for line in s.get("text", []):
            cls = " class='warn'" if line.startswith("warning:") else ""
            parts.append(f"<p{cls}>{html.escape(line)}</p>")
        if s.get("html"):
            parts.append(s["html"])
        for f in s.get("figures", []):
            stop = "" if f.title.endswith(("?", ".", "!")) else "."
            parts.append(f"<figure>{img_tag(f.path, f.title)}<figcaption><b>{html.escape(f.title)}{stop}</b> "
                         f"{html.escape(f.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
