"""Link utilisation over time (``results.LinkUtilisation``: per link class and per node, a fraction of the link's
bandwidth shown in percent) and the all-to-all table (``results.CommStats``)."""

from __future__ import annotations

from dsv3sim.report.data import num
from dsv3sim.report.page import Section, fmt, missing, note, plot, table
from dsv3sim.results import CommStats, LinkUtilisation, group


def parse(lu) -> tuple[dict[str, tuple], dict[str, tuple], dict[str, float]]:
    """(by_class series, by_node series named "node N cls", class averages) of a ``link_utilisation``."""
    g = group(LinkUtilisation, lu)
    if g is None:
        return {}, {}, {}
    t = [num(x) for x in g.t_s]
    by_class = {str(c): (t, [num(x) for x in u]) for c, u in g.by_class.items()}
    by_node = {f"node {n} {c}": (t, [num(x) for x in u]) for n, classes in g.by_node.items() for c, u in classes.items()}
    avg = {str(c): num(v) for c, v in g.average.items() if num(v) is not None}
    return by_class, by_node, avg


def _pct(us: list) -> list:
    return [None if u is None else u * 100.0 for u in us]


def link_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    title = "Link utilisation over time"
    by_class, by_node, avg = parse(result.get("link_utilisation"))
    comm = comm_table(result)
    if not (by_class or by_node or avg):
        return Section(key="links", title=title, body=comm) if comm else missing(
            "links", title, "no link utilisation in this result")
    sec = Section(key="links", title=title)
    parts = [note("Fraction of each link's bandwidth in use (100 % = saturated). Per link class (mean over "
                  "links of that class) and per node.")]
    for what, series in (("per link class", by_class), ("per node", by_node)):
        if not series:
            continue
        if what == "per node" and sorted(series.values()) == sorted(by_class.values()):
            parts.append(note("Per node: only one node recorded, the same series as above."))
            continue
        fig = go.Figure()
        names = sorted(series)
        for name in names[:64]:
            t, u = series[name]
            span = max((x for x in t if x is not None), default=0)
            sc, unit = (1e3, "ms") if span < 10 else (1.0, "s")
            y = _pct(u)
            fig.add_trace(go.Scatter(x=[None if x is None else x * sc for x in t], y=y, name=name,
                                     mode="lines", line_shape="hv"))
        more = f" (first 64 of {len(names)})" if len(names) > 64 else ""
        parts.append(plot(sec, ctx, "links", fig, title=f"Link utilisation {what}{more}", height=360,
                          xaxis_title=f"time ({unit})", yaxis_title="utilisation (%)", yaxis={"rangemode": "tozero"}))
    if avg:
        y = _pct(list(avg.values()))
        fig = go.Figure(go.Bar(x=list(avg), y=y, marker_color="#9d755d", text=[f"{v:.1f} %" for v in y],
                               width=0.5 if len(avg) < 4 else None))
        parts.append(plot(sec, ctx, "linkavg", fig, title="Mean utilisation over the step",
                          yaxis_title="utilisation (%)", height=280))
    sec.body = "".join(parts) + comm
    return sec


def _unit(scale: float, unit: str):
    return lambda v: f"{v * scale:,.1f} {unit}"


COMM_COLS = (("time", "time_s", _unit(1e6, "µs")), ("RDMA", "rdma_GBps", _unit(1, "GB/s")),
             ("NVLink", "nvlink_GBps", _unit(1, "GB/s")), ("busiest link load", "busiest_link_utilisation", _unit(100, "%")))


def comm_table(result: dict) -> str:
    """One all-to-all of one micro-batch per row (``comm``, ``results.CommStats``): time, bandwidths, busiest link."""
    c = result.get("comm")
    c = {k: group(CommStats, v) for k, v in c.items()} if isinstance(c, dict) else {}
    if not c or None in c.values():
        return ""
    rows = [[name] + [fmt(getattr(d, k), f) for _, k, f in COMM_COLS]
            + [f"{d.busiest_link} ({d.busiest_link_class or ''})" if d.busiest_link else "", d.method or d.mode or ""]
            for name, d in c.items()]
    return (note("Each all-to-all of one micro-batch as simulated (per EP group; DeepEP-style dispatch/combine):")
            + table(["collective"] + [h for h, _, _ in COMM_COLS] + ["busiest link", "method"], rows, {1, 2, 3, 4}))
