"""The HTML page: one self-contained file (plotly.js inlined, no CDN), its sections, ``index.html`` of a folder."""

from __future__ import annotations

import html
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from dsv3sim.cost.pricing import DEFAULT_PRICE_PER_GPU_HOUR

FIGURE_ATTR = "data-dsv3sim-figure"
BEST_STYLE = ' style="background:#e8f5e9;font-weight:600"'
MARGIN = {"l": 10, "r": 10, "t": 50, "b": 40}
INDEX_NAME = "index.html"

CSS, HEAD_JS, TAIL_JS, TEXT, COLOURS = (resources.files(__package__).joinpath(n).read_text()
                                        for n in ("page.css", "head.js", "tail.js", "text.toml", "colours.toml"))
# tail.js, after the figures, counts the wrappers plotly drew into (an svg.main-svg); text.toml: the prose by section;
# colours.toml: the colour tables (series, study kinds, timeline slices)
TAIL_JS, TEXT, COLOURS = TAIL_JS.replace("FIGATTR", FIGURE_ATTR), tomllib.loads(TEXT), tomllib.loads(COLOURS)
PALETTE = tuple(COLOURS["series"])  # series colours


class Html(str):
    """Trusted HTML: ``say`` puts it in as it is."""


class Absent(Exception):  # noqa: N818 -- a section's data is absent: a normal outcome, not an error
    """Raised by a section renderer without its data; the message says what is missing."""


def need(value, missing: str):
    """``value``; ``Absent(missing)`` where it is empty: a section renderer's data, or what it lacks."""
    if not value:
        raise Absent(missing)
    return value


@dataclass(kw_only=True, slots=True)
class Section:
    """One titled block: ``body`` trusted HTML from its renderer, or ``missing``: what the result lacks for it."""

    key: str
    title: str
    body: str = ""
    missing: str = ""

    @property
    def present(self) -> bool:
        return not self.missing

    @property
    def n_figures(self) -> int:
        """Its figures: the wrappers ``RenderContext.plot`` marks (tail.js counts the same ones on the page)."""
        return self.body.count(f"<div {FIGURE_ATTR}=")


@dataclass(kw_only=True, slots=True)
class RenderContext:
    """What a section renderer gets besides the result: where the JSON lives, the stated price, figure ids."""

    base_dir: Path | None = None  # folder of the result JSON (sibling trace files resolve against it)
    chrome_trace: Path | None = None  # a real torch.profiler trace to show beside the simulated one
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    merged_trace_out: Path | None = None  # where to write simulated + real lanes as one Perfetto trace
    traces_dir: Path | None = None  # where training-imbalance series live (repo traces/)
    prefix: str = "f"
    _n: int = field(default=0)

    def plot(self, name: str, data, *, lines=(), **layout) -> str:
        """A figure div marked ``FIGURE_ATTR``: ``data`` (a plotly figure, or traces as dicts), ``lines``
        ("h" or "v", ``add_hline`` / ``add_vline`` arguments), ``layout`` (the house margins unless it has its own)."""
        import plotly.graph_objects as go

        fig = data if isinstance(data, go.Figure) else go.Figure(data=list(data))
        for axis, kw in lines:
            (fig.add_hline if axis == "h" else fig.add_vline)(**kw)
        fig.update_layout(**layout)
        if fig.layout.margin.t is None:
            fig.update_layout(margin=MARGIN)
        self._n += 1
        div_id = f"{self.prefix}-{name}-{self._n}"
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                          config={"displaylogo": False, "responsive": True})
        return f'<div {FIGURE_ATTR}="{div_id}">{div}</div>'


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def say(key: str, /, **values) -> str:
    """The prose ``key`` ("section.name") of text.toml filled with ``values`` (strings HTML-escaped)."""
    part, name = key.split(".")
    return TEXT[part][name].format(**{k: v if isinstance(v, Html) or not isinstance(v, str) else esc(v)
                                      for k, v in values.items()})


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def absent(what: str = "not in this result") -> str:
    return f'<p class="absent">{esc(what)}</p>'


def table(header: list[str], rows: list[list[object]], numeric=(), *, raw: bool = False, best: int | None = None):
    """An HTML table; ``numeric`` columns right-aligned, ``raw`` cells trusted HTML, row ``best`` highlighted."""
    cell, num = (str if raw else esc), ' class="num"'
    trs = "".join(f"<tr{BEST_STYLE if i == best else ''}>" + "".join(
        f"<td{num if j in numeric else ''}>{cell(c)}</td>" for j, c in enumerate(r)) + "</tr>"
        for i, r in enumerate(rows))
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def fmt(v, spec) -> str:
    """``v`` by a format spec (".3f") or a function; '' for None, the text itself when it will not format."""
    if v is None:
        return ""
    try:
        return spec(v) if callable(spec) else format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def spec_table(items: list[dict], spec, *, numeric=(), best: int | None = None) -> str:
    """A table of ``items`` by a column spec: (header, key, format spec or function) per column."""
    rows = [[fmt(x.get(k), f) for _, k, f in spec] for x in items]
    return table([h for h, _, _ in spec], rows, numeric, best=best)


def cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}'
                                           "</div></div>" for k, v in items) + "</div>"


def details(summary: str, inner: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{inner}</details>"


def html_page(title: str, subtitle: str, body: str, meta: str = "", scripts: str = "</head><body>", nav: str = ""):
    """The skeleton of every page: head (``meta``, the CSS, ``scripts``), the dark header, ``nav``, ``body``."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            f"content=\"width=device-width,initial-scale=1\"><title>{esc(title)}</title>{meta}<style>{CSS}</style>"
            f"{scripts}<header><h1>{esc(title)}</h1><p>{subtitle}</p></header>{nav}<main>{body}")


@dataclass(kw_only=True, slots=True)
class Page:
    """The whole report: blocks of (scenario heading or "", sections); ``html()`` renders it."""

    title: str
    subtitle: str = ""
    summary_line: str = ""
    blocks: list[tuple[str, list[Section]]] = field(default_factory=list)

    @property
    def n_figures(self) -> int:
        return sum(s.n_figures for _, secs in self.blocks for s in secs)

    def _block(self, bi: int, heading: str, secs: list[Section], nav: list[str]) -> str:
        """One block's sections; those without data as one compact list at its end. Adds its links to ``nav``."""
        multi = len(self.blocks) > 1
        out = f'<h3 class="scenario" id="b{bi}">{esc(heading)}</h3>' if multi and heading else ""
        for s in (s for s in secs if s.present):
            link = esc(s.title) if bi == 0 or not multi else esc(heading) if s.key == "summary" else None
            nav += [f'<a href="#b{bi}-{s.key}">{link}</a>'] if link else []
            out += f'<section id="b{bi}-{s.key}" data-section="{esc(s.key)}"><h2>{esc(s.title)}</h2>{s.body}</section>'
        items = "".join(f'<tr data-section="{esc(s.key)}"><td>{esc(s.title)}</td><td><span class="absent">'
                        f"{esc(s.missing)}</span></td></tr>" for s in secs if not s.present)
        return out + (f'<section id="b{bi}-missing"><h2>Not in this result</h2><table>{items}</table></section>'
                      if items else "")

    def html(self, plotly_js: str) -> str:
        nav: list[str] = []
        body = "".join(self._block(bi, h, secs, nav) for bi, (h, secs) in enumerate(self.blocks))
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        meta = (f"<meta name=\"dsv3sim:summary\" content=\"{esc(self.summary_line)}\">"
                f"<meta name=\"dsv3sim:figures\" content=\"{self.n_figures}\">")
        scripts = f"<script>{HEAD_JS}</script><script type=\"text/javascript\">{plotly_js}</script></head>\n<body>"
        return html_page(self.title, say("header.rendered", subtitle=self.subtitle, stamp=stamp), body
                         + '<pre id="js-errors"></pre></main>', meta, scripts, f"<nav>{''.join(nav)}</nav>"
                         ) + f"<script>{TAIL_JS}</script></body></html>\n"


def _entry(p: Path) -> list[str]:
    """An index row of one report: title and file, the summary from its meta tag, date, size."""
    with p.open("rb") as f:
        head = f.read(8192).decode("utf-8", "replace")
    t = re.search(r"<title>(.*?)</title>", head, re.DOTALL)
    s = re.search(r'<meta name="dsv3sim:summary" content="(.*?)">', head, re.DOTALL)
    st = p.stat()
    return [f"<a href=\"{esc(p.name)}\">{esc(html.unescape(t.group(1)) if t else p.stem)}</a><br>"
            f"<span class='note'>{esc(p.name)}</span>", esc(html.unescape(s.group(1)) if s else ""),
            esc(datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")), f"{st.st_size / 1e6:.1f}"]


def write_index(folder: str | Path) -> Path:
    """``folder/index.html``: every report in the folder, newest first, read back from the reports' meta tags."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [_entry(p) for p in sorted(folder.glob("*.html"), key=lambda q: -q.stat().st_mtime)
            if p.name != INDEX_NAME]
    traces = sorted(p.name for p in folder.glob("*.json")) + sorted(p.name for p in folder.glob("*.json.gz"))
    items = "".join(f"<li><a href=\"{esc(t)}\">{esc(t)}</a></li>" for t in traces)
    body = table(["report", "summary", "written", "MB"], rows, {3}, raw=True) if rows else absent("no reports yet")
    out = folder / INDEX_NAME
    out.write_text(html_page("dsv3sim reports", say("header.index", n=len(rows), folder=str(folder)),
                             f"<section><h2>Reports</h2>{body}</section>"
                             + (say("folder.traces", items=Html(items)) if traces else "") + "</main></body></html>\n"))
    return out
