"""HTML reports from a result JSON: ``render(result, out_path)``, ``build_page``, ``write_index``; design: NOTES.md."""

from __future__ import annotations

from pathlib import Path

from dsv3sim.config.errors import ConfigError
from dsv3sim.config.units import fmt_si, fmt_time, num
from dsv3sim.cost.pricing import DEFAULT_PRICE_PER_GPU_HOUR, check_price
from dsv3sim.report import experts, memory, network, planner, summary, sweep, timeline, validation
from dsv3sim.report.page import Absent, Page, RenderContext, Section, note, say, write_index
from dsv3sim.results import load_json, split_results
from dsv3sim.trace.imbalance import traces_folder
from dsv3sim.workload.limits import limiter

SECTIONS = {
    "summary": ("Summary", summary.summary),
    "timeline": ("Pipeline timeline per rank", timeline.pipeline),
    "compare": ("Simulated vs real trace", timeline.compare),
    "links": ("Link utilisation over time", network.links),
    "experts": ("Expert load: before and after placement", experts.heatmaps),
    "nodes": ("Nodes per token", experts.nodes),
    "memory": ("Memory per GPU", memory.memory),
    "kvcache": ("KV-cache sizing: MLA vs GQA", memory.kv),
    "imbalance": ("Expert-load imbalance during training", experts.imbalance),
    "sweep": ("Sweep", sweep.sweep),
    "validation": ("Validation: predicted vs measured / published", validation.validation),
    "fields": ("All fields of the result", summary.fields),
}
# a title is a string, or a function of what the section renders
STUDY = {"study": (lambda rs: f"Comparison of the {len(rs)} scenarios", summary.study)}  # several scenarios: first
PLAN = {"planner": (lambda r: f"Capacity plan ({r.get('kind')})", planner.plan)}  # a plan (``type: plan``): only this
# a study page stays small: past STUDY_FULL scenarios a block keeps STUDY_LIGHT (one in full: report --scenario NAME)
STUDY_FULL, STUDY_LIGHT = 4, ("planner", "summary", "experts", "nodes", "sweep", "validation")
HEADLINE = (("step", "step_time_s", fmt_time), ("tokens/s", "tokens_per_s", fmt_si),  # the index's summary line
            ("decode tok/s/node", "decode_tokens_per_s_per_node", fmt_si), ("MFU", "mfu", lambda v: f"{v * 100:.1f}%"))


def section(key: str, result: dict, ctx: RenderContext, table: dict = SECTIONS) -> Section | None:
    """Section ``key`` of ``result``: rendered, listed as absent (``Absent``), or None where it does not apply."""
    title, renderer = table[key]
    sec = Section(key=key, title=title(result) if callable(title) else title)
    try:
        sec.body = renderer(result, ctx)
    except Absent as e:
        sec.missing = str(e)
    return None if sec.body is None else sec


def _name(data: dict, results: list, source: str | Path | None, title: str | None) -> str:
    """The page's name: the title given, the scenario's name, the sweep's base scenario, or the file's stem."""
    n, stem = len(results), None if source is None else Path(source).stem
    many = f"{n} scenarios" if stem is None else f"{stem} ({n} scenarios)"
    name = title or (data.get("scenario") if n == 1 else many)
    name = name.get("name") if isinstance(name, dict) else name  # dsv3sim validate: a dict with a name
    rows = data.get("sweep") if isinstance(data.get("sweep"), list) else []
    if name is None and rows and isinstance(rows[0], dict) and isinstance(base := rows[0].get("scenario"), str):
        name = f"sweep of {base.split('[')[0]} ({len(rows)} points)"  # a sweep: its base scenario
    return name if isinstance(name, str) else "result" if stem is None else stem


def build_page(result_json, *, chrome_trace: str | Path | None = None, price_per_gpu_hour: float | None = None,
               title: str | None = None, traces_dir: str | Path | None = None,
               merged_trace_out: str | Path | None = None, scenario: str | None = None,
               source: str | Path | None = None) -> Page:
    """The report of ``result_json`` (as ``render`` takes it); ``source``: the file a parsed result came from (sibling
    trace files resolve against it). A real trace (and the merged trace written from it) goes with the first result."""
    source = result_json if isinstance(result_json, (str, Path)) else source
    data = load_json(result_json)
    if price_per_gpu_hour is not None:
        check_price(price_per_gpu_hour)  # a finite number of dollars > 0, as every command that prices takes it
    results = split_results(data, scenario)  # all, or the one scenario of a study asked for (rendered in full)
    data = results[0][1] if scenario is not None else data
    page = Page(title=f"dsv3sim: {_name(data, results, source, title)}", subtitle=f"{len(results)} result(s)")
    light = len(results) > STUDY_FULL
    if len(results) > 1:  # a study: compare the scenarios first, one table, one chart
        page.blocks.append(("Study", [section("study", results, RenderContext(prefix="cmp"), STUDY)]))
    shared = {"base_dir": Path(source).resolve().parent if source is not None else None,
              "price_per_gpu_hour": price_per_gpu_hour or DEFAULT_PRICE_PER_GPU_HOUR,
              "traces_dir": Path(traces_dir) if traces_dir else traces_folder()}
    real = {"chrome_trace": Path(chrome_trace) if chrome_trace else None,
            "merged_trace_out": Path(merged_trace_out) if merged_trace_out else None}
    for i, (heading, res) in enumerate(results):
        ctx = RenderContext(**shared, prefix=f"r{i}", **(real if i == 0 else {}))
        table = PLAN if res.get("type") == "plan" else SECTIONS
        secs = [section(k, res, ctx, table) for k in table if not light or k in STUDY_LIGHT]
        page.blocks.append((heading, [s for s in secs if s is not None]))
    if light:
        page.blocks[0][1][0].body += note(say("study.light"))
    page.summary_line = _summary_line(results)
    return page


def _summary_line(results: list[tuple[str, dict]]) -> str:
    """One line for the index: a study's scenarios, or of one result: sweep size, predicted vs measured,
    infeasibility, headline metrics (a plan: its best layout's), the limit."""
    if len(results) > 1:
        return f"{len(results)} scenarios: " + ", ".join(h for h, _ in results[:6]) + (" …" if len(results) > 6 else "")
    res = results[0][1]
    rows, reason = res.get("sweep"), res.get("infeasible")
    m = (res.get("best") or {}) if res.get("type") == "plan" else res
    meas, pred = num(res.get("measured_step_s")), num(res.get("predicted_step_s"))
    bad = sum(1 for r in rows if isinstance(r, dict) and r.get("infeasible")) if isinstance(rows, list) else None
    bits = [f"sweep of {len(rows)} points ({bad} infeasible)" if bad is not None else "",
            f"predicted {fmt_time(pred)} vs measured {fmt_time(meas)} ({(pred - meas) / meas * 100:+.1f}%)"
            if meas and pred is not None else "", f"infeasible: {reason}" if isinstance(reason, str) else ""]
    bits += [f"{label} {f(v)}" for label, key, f in HEADLINE if (v := num(m.get(key))) is not None]
    limit = "" if isinstance(reason, str) else limiter(res)
    return " · ".join([b for b in bits if b] + ([f"limited by {limit}"] if limit else []))


def merged_trace_path(report: Path) -> Path:
    """Where a report with a real trace writes the simulated + real lanes as one Chrome trace."""
    return report.with_name(report.stem + ".sim+real.trace.json")


def render_html(result_json, **kw) -> tuple[str, Page]:
    import plotly.offline

    page = build_page(result_json, **kw)
    return page.html(plotly.offline.get_plotlyjs()), page


def render(result_json, out_path: str | Path, *, update_index: bool = True, **kw) -> Path:
    """Write the HTML report of ``result_json`` (a result dict, a path to one, a Result object, a list of results
    rendered as a sweep, or a {scenario name: result} dict) to ``out_path``; refresh the folder's index. ``kw`` as
    ``build_page`` takes them; with ``chrome_trace`` (a real run's trace) also ``<out stem>.sim+real.trace.json``:
    both timelines for Perfetto."""
    out = Path(out_path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"report path must end in .html, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(result_json, merged_trace_out=merged_trace_path(out) if kw.get("chrome_trace") else None,
                               **kw)[0])
    if update_index:
        write_index(out.parent)
    return out
