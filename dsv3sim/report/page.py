"""The HTML page: one self-contained file, plotly.js embedded once, every figure a div.

A report is a list of ``Section``s (title, HTML body, figures). ``Page.html()`` writes a single file that works
offline: plotly.js is inlined once in the head (``plotly.offline.get_plotlyjs()``), each figure is
``fig.to_html(full_html=False, include_plotlyjs=False)``. A small script records JavaScript errors in
``#js-errors`` and, once every figure has drawn, sets ``data-plots-rendered`` on ``<body>`` so a headless
browser test (tests/report/test_browser.py) can check both from the dumped DOM.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime

FIGURE_ATTR = "data-dsv3sim-figure"
BEST_STYLE = ' style="background:#e8f5e9;font-weight:600"'

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#b8c0cc;font-size:13px}
nav{padding:8px 28px;background:#e9ecf1;font-size:13px;position:sticky;top:0;z-index:10}
nav a{margin-right:14px;color:#2d5be3;text-decoration:none}
main{padding:8px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:16px 0;padding:10px 18px}
section h2{font-size:18px;margin:6px 0 8px}
h3.scenario{margin:26px 0 0;font-size:20px;border-bottom:2px solid #1d2330}
.note{color:#5b6472;font-size:13px;margin:4px 0}
.absent{color:#8a93a0;font-style:italic;font-size:14px}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
th,td{border-bottom:1px solid #e3e6eb;padding:4px 12px 4px 0;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}
.card{background:#f2f4f8;border-radius:6px;padding:8px 14px;min-width:150px}
.card .v{font-size:22px;font-weight:600} .card .k{font-size:12px;color:#5b6472}
.err-pos{color:#b3261e} .err-ok{color:#1b7f3b}
.bottleneck{background:#eef3fc;border-left:4px solid #2d5be3;padding:6px 10px;margin:6px 0;font-size:15px}
.warn{background:#fdf3e1;border-left:4px solid #d18b00;padding:6px 10px;margin:6px 0;font-size:14px}
#js-errors{color:#b3261e;white-space:pre-wrap}
"""

# Runs before the figures: collect errors so a headless browser can read them from the DOM.
HEAD_JS = """
window.__dsv3simErrors = [];
window.addEventListener('error', function (e) {
  window.__dsv3simErrors.push(String(e.message || e));
  var el = document.getElementById('js-errors'); if (el) el.textContent = window.__dsv3simErrors.join('\\n');
});
"""

# Runs after the figures: count the rendered plots (plotly adds .js-plotly-plot and an svg.main-svg).
TAIL_JS = """
(function () {
  var want = document.querySelectorAll('[FIGATTR]').length;
  function check(n) {
    var done = 0;
    document.querySelectorAll('[FIGATTR]').forEach(function (w) {
      if (w.querySelector('.main-svg')) done += 1;
    });
    document.body.setAttribute('data-plots-wanted', String(want));
    document.body.setAttribute('data-plots-rendered', String(done));
    if (done < want && n < 200) setTimeout(function () { check(n + 1); }, 50);
  }
  check(0);
})();
""".replace("FIGATTR", FIGURE_ATTR)


@dataclass(kw_only=True, slots=True)
class Section:
    """One titled block of the report. ``body`` is trusted HTML built by the section functions."""

    key: str
    title: str
    body: str = ""
    n_figures: int = 0
    present: bool = True


@dataclass(kw_only=True, slots=True)
class Page:
    """The whole report; ``html()`` renders it."""

    title: str
    subtitle: str = ""
    summary_line: str = ""
    blocks: list[tuple[str, list[Section]]] = field(default_factory=list)  # (scenario heading or "", sections)

    @property
    def n_figures(self) -> int:
        return sum(s.n_figures for _, secs in self.blocks for s in secs)

    def html(self, plotly_js: str) -> str:
        nav, body = [], []
        multi = len(self.blocks) > 1
        for bi, (heading, secs) in enumerate(self.blocks):
            if multi and heading:
                body.append(f'<h3 class="scenario" id="b{bi}">{esc(heading)}</h3>')
            for s in secs:
                if not s.present:
                    continue
                anchor = f"b{bi}-{s.key}"
                if bi == 0 or not multi:
                    nav.append(f'<a href="#{anchor}">{esc(s.title)}</a>')
                elif s.key == "summary":  # later blocks: one link each
                    nav.append(f'<a href="#{anchor}">{esc(heading)}</a>')
                body.append(f'<section id="{anchor}" data-section="{esc(s.key)}"><h2>{esc(s.title)}</h2>'
                            f"{s.body}</section>")
            missing = [s for s in secs if not s.present]
            if missing:  # sections without data: one compact list at the end of the block
                items = "".join(f'<tr data-section="{esc(s.key)}"><td>{esc(s.title)}</td><td>'
                                f'{s.body.replace("<p ", "<span ").replace("</p>", "</span>")}</td></tr>'
                                for s in missing)
                body.append(f'<section id="b{bi}-missing"><h2>Not in this result</h2><table>{items}</table></section>')
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{esc(self.title)}</title>"
            f"<meta name=\"dsv3sim:summary\" content=\"{esc(self.summary_line)}\">"
            f"<meta name=\"dsv3sim:figures\" content=\"{self.n_figures}\">"
            f"<style>{CSS}</style><script>{HEAD_JS}</script>"
            f"<script type=\"text/javascript\">{plotly_js}</script></head>\n<body>"
            f"<header><h1>{esc(self.title)}</h1><p>{esc(self.subtitle)} &middot; rendered {stamp} by dsv3sim "
            "report from the result JSON (no simulation was re-run)</p></header>"
            f"<nav>{''.join(nav)}</nav><main>{''.join(body)}<pre id=\"js-errors\"></pre></main>"
            f"<script>{TAIL_JS}</script></body></html>\n"
        )


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def figure_html(fig, div_id: str) -> str:
    """One plotly figure as a div (no plotly.js), wrapped so the page script can count it."""
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})
    return f'<div {FIGURE_ATTR}="{esc(div_id)}">{body}</div>'


MARGIN = {"l": 10, "r": 10, "t": 50, "b": 40}


def plot(sec: Section, ctx, name: str, fig, **layout) -> str:
    """``fig`` laid out by ``layout`` (the house margins unless it has its own) as a figure div counted in ``sec``."""
    fig.update_layout(**layout)
    if fig.layout.margin.t is None:
        fig.update_layout(margin=MARGIN)
    sec.n_figures += 1
    return figure_html(fig, ctx.fig_id(name))


def absent(what: str = "not in this result") -> str:
    return f'<p class="absent">{esc(what)}</p>'


def missing(key: str, title: str, what: str) -> Section:
    """A section without its data: listed under "Not in this result" with ``what`` is missing."""
    return Section(key=key, title=title, body=absent(what), present=False)


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def table(header: list[str], rows: list[list[object]], numeric: set[int] | None = None, *, raw: bool = False,
          best: int | None = None) -> str:
    """An HTML table; ``numeric`` columns right-aligned, ``raw`` cells trusted HTML, row ``best`` highlighted."""
    numeric = numeric or set()
    cell = (lambda c: str(c)) if raw else esc
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    trs = "".join(f"<tr{BEST_STYLE if i == best else ''}>" + "".join(
        f'<td class="num">{cell(c)}</td>' if j in numeric else f"<td>{cell(c)}</td>" for j, c in enumerate(r))
        + "</tr>" for i, r in enumerate(rows))
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def fmt(v, spec) -> str:
    """``v`` by a format spec (".3f") or a function; '' for None, the text itself when it will not format."""
    if v is None:
        return ""
    if callable(spec):
        return spec(v)
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def spec_rows(items: list[dict], spec) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of ``items`` by ``spec``: (header, key, format spec or function) per column."""
    return [h for h, _, _ in spec], [[fmt(x.get(k), f) for _, k, f in spec] for x in items]


def cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>' for k, v in items
    ) + "</div>"
