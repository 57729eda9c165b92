"""HTML reports from a result JSON: ``render(result, out_path) -> Path`` and ``write_index(folder)``.

A report is one self-contained HTML file (plotly.js inlined once, no CDN) built from the result JSON only —
nothing is re-simulated (house style 13). Sections, each of which says "not in this result" when its data is
absent: summary, pipeline timeline, simulated vs real trace (with ``chrome_trace=``), link utilisation,
expert-load heat-maps, nodes per token, memory per GPU, KV-cache sizing, training imbalance, sweep, validation.
Which keys each section reads is documented in its module: those ``dsv3sim/results.py`` writes, where it writes them.
"""

from __future__ import annotations

from pathlib import Path

from dsv3sim.config.errors import ConfigError
from dsv3sim.report.context import DEFAULT_PRICE_PER_GPU_HOUR, RenderContext
from dsv3sim.report.data import load, num, split_results
from dsv3sim.report.index import write_index
from dsv3sim.report.page import Page, Section, note

__all__ = ["SECTIONS", "build_page", "merged_trace_path", "render", "render_html", "write_index"]


def _sections():
    from dsv3sim.report.experts import heatmap_section, nodes_section
    from dsv3sim.report.imbalance import imbalance_section
    from dsv3sim.report.memory import kv_section, memory_section
    from dsv3sim.report.network import link_section
    from dsv3sim.report.planner import planner_section
    from dsv3sim.report.summary import fields_section, summary_section
    from dsv3sim.report.sweep import sweep_section
    from dsv3sim.report.timeline import comparison_section, pipeline_section
    from dsv3sim.report.validation import validation_section

    return (planner_section,
            summary_section, pipeline_section, comparison_section, link_section, heatmap_section, nodes_section,
            memory_section, kv_section, imbalance_section, sweep_section, validation_section, fields_section)


SECTIONS = ("summary", "timeline", "compare", "links", "experts", "nodes", "memory", "kvcache", "imbalance",
            "sweep", "validation", "fields")


def _default_traces_dir() -> Path | None:
    for cand in (Path.cwd() / "traces", Path(__file__).resolve().parents[2] / "traces"):
        if cand.is_dir():
            return cand
    return None


# A study page stays small: beyond STUDY_FULL scenarios, per scenario no timeline, link series, memory, KV or
# field dump (one scenario in full: ``scenario=``, `dsv3sim report STUDY.json --scenario NAME`); the comparison
# of the scenarios comes first either way.
STUDY_FULL = 4
STUDY_SKIPS = ("pipeline_section", "comparison_section", "link_section", "fields_section", "imbalance_section",
               "memory_section", "kv_section")


def _one_scenario(results: list[tuple[str, dict]], scenario: str) -> list[tuple[str, dict]]:
    names = [h for h, _ in results]
    if scenario not in names:
        raise ConfigError(f"scenario {scenario!r} is not in this result (scenarios: {', '.join(names)})")
    return [(h, r) for h, r in results if h == scenario]


def _page_name(data: dict, results: list, result_json, title: str | None) -> str:
    """The page's name: the title given, the scenario's name, the sweep's base scenario, or the file's stem."""
    from_file = isinstance(result_json, (str, Path))
    name = title or (data.get("scenario") if len(results) == 1 else
                     (f"{Path(result_json).stem} ({len(results)} scenarios)" if from_file
                      else f"{len(results)} scenarios"))
    if isinstance(name, dict):  # dsv3sim validate: scenario is a dict with a name
        name = name.get("name")
    sweep = data.get("sweep")
    if name is None and isinstance(sweep, list) and sweep:  # a sweep: its base scenario
        first = sweep[0] if isinstance(sweep[0], dict) else {}
        if isinstance(first.get("scenario"), str):
            name = f"sweep of {first['scenario'].split('[')[0]} ({len(sweep)} points)"
    if not isinstance(name, str):
        name = Path(result_json).stem if from_file else "result"
    return name


def _result_sections(res: dict, ctx: RenderContext, light: bool) -> list[Section]:
    """The sections of one result (a plan has its own section only; a light study block skips the big ones)."""
    fns = _sections()[:1] if res.get("type") == "plan" else _sections()
    secs = [fn(res, ctx) for fn in fns if not (light and fn.__name__ in STUDY_SKIPS)]
    return [s for s in secs if s is not None]


def build_page(result_json, *, chrome_trace: str | Path | None = None,
               price_per_gpu_hour: float | None = None, title: str | None = None,
               traces_dir: str | Path | None = None, merged_trace_out: str | Path | None = None,
               scenario: str | None = None) -> Page:
    data = load(result_json)
    base = Path(result_json).resolve().parent if isinstance(result_json, (str, Path)) else None
    if price_per_gpu_hour is not None and not price_per_gpu_hour > 0:
        raise ConfigError(f"price per GPU-hour must be > 0, got {price_per_gpu_hour}")
    results = split_results(data)
    if scenario is not None:  # one scenario of a study, rendered in full
        results = _one_scenario(results, scenario)
        data = results[0][1]
    name = _page_name(data, results, result_json, title)
    page = Page(title=f"dsv3sim: {name}", subtitle=f"{len(results)} result(s)")
    light = len(results) > STUDY_FULL
    if len(results) > 1:  # a study: compare the scenarios first, one table, one chart
        from dsv3sim.report.study import study_section

        page.blocks.append(("Study", [study_section(results, RenderContext(prefix="cmp"))]))
    for i, (heading, res) in enumerate(results):
        ctx = RenderContext(base_dir=base, chrome_trace=Path(chrome_trace) if chrome_trace and i == 0 else None,
                            price_per_gpu_hour=price_per_gpu_hour or DEFAULT_PRICE_PER_GPU_HOUR,
                            merged_trace_out=Path(merged_trace_out) if merged_trace_out and i == 0 else None,
                            traces_dir=Path(traces_dir) if traces_dir else _default_traces_dir(), prefix=f"r{i}")
        page.blocks.append((heading, _result_sections(res, ctx, light)))
    if light:
        page.blocks[0][1][0].body += note(
            "Below: each scenario's summary, expert loads and nodes per token. Timelines, link utilisation, memory, "
            "KV cache and every field of one scenario: <code>dsv3sim report RESULT.json --scenario NAME</code>.")
    page.summary_line = (_summary_line(results[0][1]) if len(results) == 1 else
                         f"{len(results)} scenarios: " + ", ".join(h for h, _ in results[:6])
                         + (" …" if len(results) > 6 else ""))
    return page


def _summary_line(res: dict) -> str:
    from dsv3sim.report.data import fmt_si, fmt_time

    bits = []
    rows = res.get("sweep")
    if isinstance(rows, list):
        bad = sum(1 for r in rows if isinstance(r, dict) and r.get("infeasible"))
        bits.append(f"sweep of {len(rows)} points ({bad} infeasible)")
    meas, pred = num(res.get("measured_step_s")), num(res.get("predicted_step_s"))
    if meas and pred is not None:
        bits.append(f"predicted {fmt_time(pred)} vs measured {fmt_time(meas)} ({(pred - meas) / meas * 100:+.1f}%)")
    reason = res.get("infeasible")
    if isinstance(reason, str):
        bits.append(f"infeasible: {reason}")
    m = res.get("best") or {} if res.get("type") == "plan" else res  # a plan: its best layout's numbers
    for label, key, f in (("step", "step_time_s", fmt_time), ("tokens/s", "tokens_per_s", fmt_si),
                          ("decode tok/s/node", "decode_tokens_per_s_per_node", fmt_si)):
        v = num(m.get(key))
        if v is not None:
            bits.append(f"{label} {f(v)}")
    mfu = num(m.get("mfu"))
    if mfu is not None:
        bits.append(f"MFU {mfu * 100:.1f}%")
    from dsv3sim.report.bottleneck import limiter

    limit = "" if isinstance(reason, str) else limiter(res)
    if limit:
        bits.append(f"limited by {limit}")
    return " · ".join(bits)


def merged_trace_path(report: Path) -> Path:
    """Where a report with a real trace writes the simulated + real lanes as one Chrome trace."""
    return report.with_name(report.stem + ".sim+real.trace.json")


def render_html(result_json, **kw) -> tuple[str, Page]:
    import plotly.offline

    page = build_page(result_json, **kw)
    return page.html(plotly.offline.get_plotlyjs()), page


def render(result_json, out_path: str | Path, *, chrome_trace: str | Path | None = None,
           price_per_gpu_hour: float | None = None, title: str | None = None, update_index: bool = True,
           traces_dir: str | Path | None = None, scenario: str | None = None) -> Path:
    """Write the HTML report of ``result_json`` to ``out_path``; refresh the folder's index.

    ``result_json``: a result dict (``dsv3sim.results`` JSON), a path to one, a Result object (``to_dict``), a
    list of results (rendered as a sweep) or a {scenario name: result} dict.

    With ``chrome_trace`` (a real run's torch.profiler trace) it also writes ``<out stem>.sim+real.trace.json``
    beside the report: both timelines in one file for Perfetto."""
    out = Path(out_path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"report path must end in .html, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    text, _ = render_html(result_json, chrome_trace=chrome_trace, price_per_gpu_hour=price_per_gpu_hour,
                          title=title, traces_dir=traces_dir, scenario=scenario,
                          merged_trace_out=merged_trace_path(out) if chrome_trace else None)
    out.write_text(text)
    if update_index:
        write_index(out.parent)
    return out
