"""``reports/index.html``: a table of every report in the folder (title, one-line summary, date, size).

Each report carries ``<meta name="dsv3sim:summary">`` (written by ``render``); the index reads it back from the
HTML files, so rebuilding the index needs no result JSON. Plain HTML, no script.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

from dsv3sim.report.page import CSS, absent, esc, table

INDEX_NAME = "index.html"
_TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)
_SUMMARY = re.compile(r'<meta name="dsv3sim:summary" content="(.*?)">', re.DOTALL)


def _head(path: Path, n: int = 8192) -> str:
    with path.open("rb") as f:
        return f.read(n).decode("utf-8", "replace")


def report_entries(folder: Path) -> list[dict]:
    out = []
    for p in sorted(folder.glob("*.html"), key=lambda q: -q.stat().st_mtime):  # newest first
        if p.name == INDEX_NAME:
            continue
        head = _head(p)
        t, s, st = _TITLE.search(head), _SUMMARY.search(head), p.stat()
        out.append({"file": p.name, "title": html.unescape(t.group(1)) if t else p.stem,
                    "summary": html.unescape(s.group(1)) if s else "",
                    "modified": datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "size_MB": st.st_size / 1e6})
    return out


def write_index(folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = report_entries(folder)
    trs = [[f"<a href=\"{esc(r['file'])}\">{esc(r['title'])}</a><br><span class='note'>{esc(r['file'])}</span>",
            esc(r["summary"]), esc(r["modified"]), f"{r['size_MB']:.1f}"] for r in rows]
    traces = sorted(p.name for p in folder.glob("*.json")) + sorted(p.name for p in folder.glob("*.json.gz"))
    tr_html = ("<section><h2>Chrome traces and result JSON here</h2><p class='note'>Open a trace in "
               "<a href='https://ui.perfetto.dev'>ui.perfetto.dev</a> or chrome://tracing.</p><ul>"
               + "".join(f"<li><a href=\"{esc(t)}\">{esc(t)}</a></li>" for t in traces) + "</ul></section>"
               ) if traces else ""
    body = table(["report", "summary", "written", "MB"], trs, {3}, raw=True) if rows else absent("no reports yet")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dsv3sim reports</title>"
            f"<style>{CSS}</style></head><body><header><h1>dsv3sim reports</h1><p>{len(rows)} report(s) in "
            f"{esc(folder)}; each file is self-contained and works offline</p></header><main><section>"
            f"<h2>Reports</h2>{body}</section>{tr_html}</main></body></html>\n")
    out = folder / INDEX_NAME
    out.write_text(page)
    return out
