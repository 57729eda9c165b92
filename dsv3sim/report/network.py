"""Link utilisation over time (``results.LinkUtilisation``: per link class and per node, a fraction of the link's
bandwidth shown in percent) and the all-to-all table (``results.CommStats``)."""

from __future__ import annotations

from dsv3sim.report.page import need, note, say, spec_table
from dsv3sim.results.reading import comm_stats, link_series

MAX_SERIES = 64
COMM_COLS = (("collective", "name", str), ("time", "time_s", lambda v: f"{v * 1e6:,.1f} µs"),
             ("RDMA", "rdma_GBps", lambda v: f"{v:,.1f} GB/s"), ("NVLink", "nvlink_GBps", lambda v: f"{v:,.1f} GB/s"),
             ("busiest link load", "busiest_link_utilisation", lambda v: f"{v * 100:,.1f} %"),
             ("busiest link", "busiest_link", str), ("method", "method", str))


def _scaled(xs: list, k: float) -> list:
    return [None if x is None else x * k for x in xs]


def comm_table(result: dict) -> str:
    """One all-to-all of one micro-batch per row (``comm``, ``results.CommStats``): time, bandwidths, busiest link."""
    if not (c := comm_stats(result)):
        return ""
    rows = [{**d, "name": name, "method": d.method or d.mode or "", "busiest_link": f"{d.busiest_link} "
             f"({d.busiest_link_class or ''})" if d.busiest_link else ""} for name, d in c.items()]
    return (note("Each all-to-all of one micro-batch as simulated (per EP group; DeepEP-style dispatch/combine):")
            + spec_table(rows, COMM_COLS, numeric={1, 2, 3, 4}))


def links(result: dict, ctx) -> str:
    by_class, by_node, avg = link_series(result.get("link_utilisation"))
    comm = comm_table(result)
    if not (by_class or by_node or avg):
        return need(comm, "no link utilisation in this result")
    parts = [note(say("links.how"))]
    for what, series in (("per link class", by_class), ("per node", by_node)):
        if what == "per node" and series and sorted(series.values()) == sorted(by_class.values()):
            parts.append(note("Per node: only one node recorded, the same series as above."))
        elif series:
            names = sorted(series)  # one time axis for every series
            sc, unit = (1e3, "ms") if max((x for x in series[names[0]][0] if x is not None), default=0) < 10 else (
                1.0, "s")
            more = f" (first {MAX_SERIES} of {len(names)})" if len(names) > MAX_SERIES else ""
            parts.append(ctx.plot("links", [{"type": "scatter", "x": _scaled(series[n][0], sc),
                                             "y": _scaled(series[n][1], 100.0), "name": n, "mode": "lines",
                                             "line": {"shape": "hv"}} for n in names[:MAX_SERIES]],
                                  title=f"Link utilisation {what}{more}", height=360, xaxis_title=f"time ({unit})",
                                  yaxis_title="utilisation (%)", yaxis={"rangemode": "tozero"}))
    if avg:
        y = _scaled(list(avg.values()), 100.0)
        parts.append(ctx.plot("linkavg", [{"type": "bar", "x": list(avg), "y": y, "marker": {"color": "#9d755d"},
                                           "text": [f"{v:.1f} %" for v in y], "width": 0.5 if len(avg) < 4 else None}],
                              title="Mean utilisation over the step", yaxis_title="utilisation (%)", height=280))
    return "".join(parts) + comm
