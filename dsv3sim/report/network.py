"""Link utilisation over time, per link class (NVLink, IB/RDMA, PCIe...) and per node.

Accepted shapes (whatever ``dsv3sim/results.py`` writes, read tolerantly):
- ``{"t_s": [...], "by_class": {cls: [u...]}, "by_node": {node: [u...]}}`` (shared time axis);
- ``{cls: {"t_s": [...], "utilisation": [...]}}`` or ``{cls: [[t, u], ...]}``;
- a list of samples ``{"t_s", "link_class", "node", "utilisation"}``;
- ``{cls: u}`` — step averages only (a bar chart).
Utilisation is a fraction of the link's bandwidth (0..1); values above 1.5 are taken as percent.
"""

from __future__ import annotations

from collections import defaultdict

from dsv3sim.report.data import num, pick
from dsv3sim.report.page import Section, absent, figure_html, note

KEYS = ("link_utilisation", "link_utilization", "link_util", "links")
U_KEYS = ("utilisation", "utilization", "util", "u", "busy_fraction", "value")
T_KEYS = ("t_s", "time_s", "t", "times_s")


def _series(v, t_shared):
    """(t list, u list) from a list of numbers, a list of pairs or a {t, u} dict."""
    if isinstance(v, dict):
        t = next((v[k] for k in T_KEYS if isinstance(v.get(k), list)), t_shared)
        u = next((v[k] for k in U_KEYS if isinstance(v.get(k), list)), None)
        if u is None or t is None:
            return None
        return [num(x) for x in t], [num(x) for x in u]
    if isinstance(v, list) and v and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in v):
        return [num(p[0]) for p in v], [num(p[1]) for p in v]
    if isinstance(v, list) and t_shared is not None and len(v) == len(t_shared):
        return [num(x) for x in t_shared], [num(x) for x in v]
    return None


def parse(lu) -> tuple[dict[str, tuple], dict[str, tuple], dict[str, float]]:
    """(by_class series, by_node series, class averages)."""
    if isinstance(lu, list):
        return _parse_samples(lu)
    by_class: dict[str, tuple] = {}
    by_node: dict[str, tuple] = {}
    avg: dict[str, float] = {}
    if not isinstance(lu, dict):
        return by_class, by_node, avg
    t_shared = next((lu[k] for k in T_KEYS if isinstance(lu.get(k), list)), None)
    _parse_groups(lu, t_shared, by_class, by_node, avg)
    for k in ("average", "mean", "averages"):
        if isinstance(lu.get(k), dict):
            avg.update({str(n): num(v) for n, v in lu[k].items() if num(v) is not None})
    if not by_class and not by_node:
        _parse_flat(lu, t_shared, by_class, avg)
    return by_class, by_node, avg


def _parse_samples(lu: list) -> tuple[dict[str, tuple], dict[str, tuple], dict[str, float]]:
    """A list of samples ``{t_s, link_class, node, utilisation}``: per class and per node, samples at one
    time averaged."""
    by_class: dict[str, tuple] = {}
    by_node: dict[str, tuple] = {}
    acc: dict[tuple, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for r in lu:
        if not isinstance(r, dict):
            continue
        t = next((num(r[k]) for k in T_KEYS if k in r), None)
        u = next((num(r[k]) for k in U_KEYS if k in r), None)
        if t is None or u is None:
            continue
        cls = str(r.get("link_class", r.get("class", r.get("link", "link"))))
        acc[("c", cls)][t].append(u)
        if r.get("node") is not None:
            acc[("n", f"node {r['node']} {cls}")][t].append(u)
    for (kind, name), pts in acc.items():
        ts = sorted(pts)
        s = (ts, [sum(pts[t]) / len(pts[t]) for t in ts])
        (by_class if kind == "c" else by_node)[name] = s
    return by_class, by_node, {}


def _parse_groups(lu: dict, t_shared, by_class: dict, by_node: dict, avg: dict) -> None:
    """The ``by_class`` / ``by_node`` groups (and their aliases) into ``by_class``, ``by_node`` and ``avg``."""
    for group, target in (("by_class", by_class), ("per_class", by_class), ("by_link_class", by_class),
                          ("by_node", by_node), ("per_node", by_node)):
        g = lu.get(group)
        if not isinstance(g, dict):
            continue
        for name, v in g.items():
            if isinstance(v, dict) and not any(k in v for k in U_KEYS) and group in ("by_node", "per_node"):
                for cls, vv in v.items():  # {node: {cls: series}}
                    s = _series(vv, t_shared)
                    if s:
                        target[f"node {name} {cls}"] = s
                continue
            s = _series(v, t_shared)
            if s:
                target[str(name)] = s
            elif num(v) is not None:
                avg[str(name)] = num(v)


def _parse_flat(lu: dict, t_shared, by_class: dict, avg: dict) -> None:
    """``{cls: series}`` or ``{cls: average}`` at the top level into ``by_class`` and ``avg``."""
    for name, v in lu.items():
        if name in ("average", "mean", "averages"):
            continue
        if name in T_KEYS:
            continue
        s = _series(v, t_shared)
        if s:
            by_class[str(name)] = s
        elif num(v) is not None:
            avg[str(name)] = num(v)
        elif isinstance(v, dict):
            m = next((num(v[k]) for k in ("mean", "avg", "average") + U_KEYS if num(v.get(k)) is not None), None)
            if m is not None:
                avg[str(name)] = m


def _pct(us: list) -> tuple[list, float]:
    vals = [u for u in us if u is not None]
    f = 1.0 if vals and max(vals) > 1.5 else 100.0
    return [None if u is None else u * f for u in us], f


def link_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    sec = Section(key="links", title="Link utilisation over time")
    lu = pick(result, *KEYS)
    by_class, by_node, avg = parse(lu) if lu is not None else ({}, {}, {})
    comm = comm_table(result)
    if not (by_class or by_node or avg):
        sec.body, sec.present = (comm, True) if comm else (absent("no link utilisation in this result"), False)
        return sec
    parts = [note("Fraction of each link's bandwidth in use (100 % = saturated). Per link class (mean over "
                  "links of that class) and per node.")]
    for title, series in (("per link class", by_class), ("per node", by_node)):
        if not series:
            continue
        if title == "per node" and sorted(series.values()) == sorted(by_class.values()):
            parts.append(note("Per node: only one node recorded, the same series as above."))
            continue
        fig = go.Figure()
        names = sorted(series)
        for name in names[:64]:
            t, u = series[name]
            span = max((x for x in t if x is not None), default=0)
            sc, unit = (1e3, "ms") if span < 10 else (1.0, "s")
            y, _ = _pct(u)
            fig.add_trace(go.Scatter(x=[None if x is None else x * sc for x in t], y=y, name=name,
                                     mode="lines", line_shape="hv"))
        fig.update_layout(title=f"Link utilisation {title}" + (f" (first 64 of {len(names)})" if len(names) > 64
                                                                 else ""),
                          xaxis_title=f"time ({unit})", yaxis_title="utilisation (%)", height=360,
                          margin={"l": 10, "r": 10, "t": 50, "b": 40}, yaxis={"rangemode": "tozero"})
        parts.append(figure_html(fig, ctx.fig_id("links")))
        sec.n_figures += 1
    if avg:
        y, _ = _pct(list(avg.values()))
        fig = go.Figure(go.Bar(x=list(avg), y=y, marker_color="#9d755d", text=[f"{v:.1f} %" for v in y],
                               width=0.5 if len(avg) < 4 else None))
        fig.update_layout(title="Mean utilisation over the step", yaxis_title="utilisation (%)", height=280,
                          margin={"l": 10, "r": 10, "t": 50, "b": 40})
        parts.append(figure_html(fig, ctx.fig_id("linkavg")))
        sec.n_figures += 1
    sec.body = "".join(parts) + comm
    return sec


COMM_COLS = (("time_s", "time", 1e6, "µs"), ("rdma_GBps", "RDMA", 1, "GB/s"), ("nvlink_GBps", "NVLink", 1, "GB/s"),
             ("busiest_link_utilisation", "busiest link load", 100, "%"))


def comm_table(result: dict) -> str:
    """One all-to-all of one micro-batch per row (``comm`` in the result): time, bandwidths, busiest link."""
    from dsv3sim.report.page import table

    c = result.get("comm")
    if not isinstance(c, dict) or not c or not all(isinstance(v, dict) for v in c.values()):
        return ""
    rows = []
    for name, d in c.items():
        cells = [name]
        for k, _, f, unit in COMM_COLS:
            v = num(d.get(k))
            cells.append("" if v is None else f"{v * f:,.1f} {unit}")
        cells.append(f"{d.get('busiest_link', '')} ({d.get('busiest_link_class', '')})" if d.get("busiest_link")
                     else "")
        cells.append(str(d.get("method", d.get("mode", ""))))
        rows.append(cells)
    return (note("Each all-to-all of one micro-batch as simulated (per EP group; DeepEP-style dispatch/combine):")
            + table(["collective"] + [lab for _, lab, _, _ in COMM_COLS] + ["busiest link", "method"], rows,
                    {1, 2, 3, 4}))
