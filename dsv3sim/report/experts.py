"""Expert load: per-layer heat-maps before / after placement, nodes per token, imbalance over training. Load / layer
mean, so 1.0 is perfect balance and the colour reads as max/mean (DeepSeek-V3 §2.1.2, §3.4)."""

from __future__ import annotations

import numpy as np

from dsv3sim.config.units import num
from dsv3sim.report.page import PALETTE, Html, absent, need, note, say, table
from dsv3sim.results import NodesPerToken, group
from dsv3sim.results.reading import as_matrix, node_counts, node_spread
from dsv3sim.trace import stats
from dsv3sim.trace.imbalance import series_under

MAPS = (("routed load per logical expert", "expert_load_logical", "logical expert"),
        ("before placement", "expert_load_before", "GPU"), ("after placement", "expert_load_after", "GPU"))


def load_maps(result: dict) -> list[tuple[str, list[list[float]], str]]:
    """[(label, layers x columns load, column name)]: per logical expert, then per GPU before / after placement."""
    return [(label, m, col) for label, key, col in MAPS if (m := as_matrix(result.get(key))) is not None]


def _over_mean(row: list[float]) -> list[float]:
    mean = sum(row) / len(row)
    return [v / mean if mean > 0 else 0.0 for v in row]


def max_over_mean(m: list[list[float]]) -> list[float]:
    """Per layer max / mean (``dsv3sim.trace.stats.max_over_mean``, the one definition of the imbalance metric)."""
    return stats.max_over_mean(np.asarray(m, dtype=float)).tolist()


def _map_figures(ctx, maps) -> str:
    """A heat-map per multi-layer map (colours capped at the 99.5 % quantile of load/mean, at least 2, so a few hot
    experts leave the rest readable), max/mean per layer as lines; one-layer maps as bars per column."""
    vals = sorted(v for _, m, _ in maps for r in m if sum(r) > 0 for v in _over_mean(r))
    zmax, out, lines = max(2.0, vals[min(len(vals) - 1, int(0.995 * len(vals)))]) if vals else 2.0, [], []
    for label, m, xl in (x for x in maps if len(x[1]) > 1):
        out.append(ctx.plot("heat", [{
            "type": "heatmap", "z": [_over_mean(r) for r in m], "y": list(range(len(m))), "colorscale": "Inferno",
            "zmin": 0, "zmax": zmax, "colorbar": {"title": "load / layer mean"},
            "hovertemplate": f"layer %{{y}}<br>{xl} %{{x}}<br>load / mean %{{z:.2f}}<extra></extra>"}],
            title=f"Expert load {label} ({len(m)} layers x {len(m[0])} {xl}s)", xaxis_title=xl,
            yaxis_title="MoE layer", height=max(300, 120 + 6 * len(m)), yaxis={"autorange": "reversed"}))
        mm = max_over_mean(m)
        lines.append({"type": "scatter", "x": list(range(len(mm))), "y": mm, "name": label, "mode": "lines+markers"})
    flat = [x for x in maps if len(x[1]) == 1]
    for xl in dict.fromkeys(xl for _, _, xl in flat):  # one-row maps: bars per column, before/after side by side
        out.append(ctx.plot("loadbar", [{"type": "bar", "x": list(range(len(m[0]))), "y": _over_mean(m[0]),
                                         "name": label} for label, m, x in flat if x == xl],
                            lines=[("h", {"y": 1.0, "line_dash": "dot", "line_color": "#555"})],
                            title=f"Load per {xl} / mean (a layer's routed tokens)", xaxis_title=xl,
                            yaxis_title="load / mean", barmode="group", height=340))
    return "".join(out) + (ctx.plot("maxmean", lines, title="max / mean load per layer", xaxis_title="MoE layer",
                                    yaxis_title="max / mean", height=300, yaxis={"rangemode": "tozero"})
                           if lines else "")


def heatmaps(result: dict, ctx) -> str:
    maps = need(load_maps(result), "no expert load in this result")
    verdict, labels = placement_text(result, maps), {lab for lab, _, _ in maps}
    rows = [[label, f"{max(mm):.3f}", f"{sum(mm) / len(mm):.3f}", len(m), f"{len(m[0])} {xl}s"]
            for label, m, xl in maps for mm in [max_over_mean(m)]]
    return "".join([note(say("experts.how")), f'<p class="note" data-placement>{verdict}</p>' if verdict else "",
                    *[absent(f"{x}: not in this result") for x in ("before placement", "after placement")
                      if x not in labels], _map_figures(ctx, maps),
                    table(["", "worst layer max/mean", "mean over layers", "layers", "columns"], rows, {1, 2, 3})])


def placement_text(result: dict, maps) -> str | None:
    """What placement did to the per-GPU load (worst layer max/mean before -> after), and why when it did not help:
    whole expert slots per GPU, or a "before" that is no placement at all."""
    by = {label: m for label, m, _ in maps}
    if (before := by.get("before placement")) is None or (after := by.get("after placement")) is None:
        return None
    b, a, n_gpus = max(max_over_mean(before)), max(max_over_mean(after)), len(after[0])
    n_exp = len(by["routed load per logical expert"][0]) if "routed load per logical expert" in by else None
    red = num((result.get("parallel") or {}).get("redundant_experts"))
    even = all(max(r) == min(r) for r in before) and n_exp and n_exp % n_gpus
    out = [say("experts.no_placement", n_exp=n_exp, n_gpus=n_gpus)] if even else []
    if a < b - 5e-4:
        out.append(say("experts.lowers", a=a, b=b))
    elif a > b + 5e-4:
        slots = n_exp + red if n_exp and red is not None else None
        why = "" if slots is None else say("experts.slots", slots=slots, n_exp=n_exp, red=red, n_gpus=n_gpus,
                                           per_gpu=slots / n_gpus, ratio=slots / n_exp)
        out.append(say("experts.raises", a=a, b=b) + why)
    else:
        out.append(say("experts.same" if before == after else "experts.unchanged", a=a))
    return " ".join(out)


def nodes(result: dict, ctx) -> str:
    v = group(NodesPerToken, result.get("nodes_per_token"))
    h = need(node_counts(v), "no nodes-per-token distribution in this result")
    limit, total = num(v.node_limit), sum(h.values())
    mean, over, most = node_spread(h, limit)
    # no run of empty bins past the last token's (EP320 has 40 nodes)
    xs = [x for x in sorted(h) if x <= max(most, int(limit or 0) + 1)]
    frac = [h[x] / total * 100 if total else 0 for x in xs]
    if limit and over:  # M limits the gate's expert groups (V3 §2.1.2): it bounds nodes while a group sits on one
        groups = num(v.n_group)
        span = say("experts.span_groups", n_nodes=len(h), groups=groups) if groups and len(h) != groups else say(
            "experts.span_other")
        label, text = f"M={limit:g} (a limit on expert groups)", say(
            "experts.nodes_over", limit=limit, span=Html(span), pct=over * 100, mean=mean, most=most)
    elif limit:
        label, text = f"node limit M={limit:g}", say("experts.nodes_within", limit=limit, mean=mean)
    else:
        label, text = "", say("experts.nodes_free", mean=mean)
    lines = [("v", {"x": limit + 0.5, "line_dash": "dash", "line_color": "#e45756", "annotation_text": label})
             ] if label else ()
    return note(text) + ctx.plot(
        "nodes", [{"type": "bar", "x": xs, "y": frac, "marker": {"color": "#4c78a8"},
                   "text": [f"{f:.1f}%" for f in frac], "textposition": "outside"}], lines=lines,
        xaxis_title="nodes per token", height=340, yaxis_title="% of tokens", xaxis={"dtick": 1},
        title=f"Distinct nodes reached by a token's top-k experts (mean {mean:.2f})")


def imbalance(result: dict, ctx) -> str:
    training = result.get("type", result.get("kind")) == "training"  # a training result, not a run or benchmark
    series, used = series_under(ctx.traces_dir) if training else ({}, [])
    need(series, "no imbalance-over-steps series under traces/")
    names = sorted(series)
    bases = list(dict.fromkeys(m.removesuffix(" (windowed)") for m in names))  # a run and its windowed mean: a colour
    traces = [{"type": "scatter", "x": series[m][0], "y": series[m][1], "name": m, "mode": "lines",
               "opacity": 1.0 if (w := m.endswith(" (windowed)")) else 0.45, "line": {
                   "color": PALETTE[bases.index(m.removesuffix(" (windowed)")) % len(PALETTE)],
                   "width": 2.5 if w else 1.2}} for m in names]
    last = ", ".join(f"{m}: {series[m][1][-1]:.2f}" for m in names if series[m][1])
    origin = f"traces/ ({', '.join(used)})" if used else ""
    return note(say("experts.imbalance", origin=origin, last=last)) + ctx.plot(
        "imb", traces, lines=[("h", {"y": 1.0, "line_dash": "dot", "line_color": "#888",
                                     "annotation_text": "perfect balance", "annotation_position": "bottom left"})],
        title="Worst-layer max/mean expert load per training step", xaxis_title="step",
        yaxis_title="max / mean load", height=360)
