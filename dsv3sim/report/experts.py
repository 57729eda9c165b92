"""Expert load heat-maps (layers x experts, before and after placement) and the nodes-per-token histogram.

Load is tokens routed to each expert per MoE layer (EPLB's ``weight[layers, logical]`` shape), each map normalised
per layer by its mean, so 1.0 is perfect balance and the colour bar reads as max/mean (DeepSeek-V3 §2.1.2, §3.4).
With node-limited routing no token reaches more than M nodes (V3: M=4). Keys read: NOTES.md.
"""

from __future__ import annotations

from dsv3sim.report.data import as_matrix, num
from dsv3sim.report.page import Section, absent, esc, missing, note, plot, table
from dsv3sim.results import NodesPerToken, group


def _matrix(v) -> list[list[float]] | None:
    """A layers x columns matrix; a flat list (one value per column) becomes one row."""
    if isinstance(v, list) and v and all(num(x) is not None for x in v):
        return [[num(x) for x in v]]
    return as_matrix(v)


def load_maps(result: dict) -> list[tuple[str, list[list[float]], str]]:
    """[(label, layers x columns load, column name)]: routed load per logical expert, then per GPU before and
    after placement."""
    maps = (("routed load per logical expert", "expert_load_logical", "logical expert"),
            ("before placement", "expert_load_before", "GPU"), ("after placement", "expert_load_after", "GPU"))
    return [(label, m, col) for label, key, col in maps if (m := _matrix(result.get(key))) is not None]


def max_over_mean(m: list[list[float]]) -> list[float]:
    out = []
    for row in m:
        mean = sum(row) / len(row)
        out.append(max(row) / mean if mean > 0 else float("nan"))
    return out


def colour_cap(maps: list[list[list[float]]], q: float = 0.995) -> float:
    """Top of the colour scale: the q-quantile of load/mean over all cells (at least 2), so a few very hot
    experts do not turn the rest of the map black; hover still shows every cell's value."""
    vals = sorted(v / (sum(r) / len(r)) for m in maps for r in m if sum(r) > 0 for v in r)
    if not vals:
        return 2.0
    return max(2.0, vals[min(len(vals) - 1, int(q * len(vals)))])


def _heat(m, title, xlabel, zmax):
    import plotly.graph_objects as go

    z = []
    for row in m:
        mean = sum(row) / len(row)
        z.append([v / mean if mean > 0 else 0.0 for v in row])
    fig = go.Figure(go.Heatmap(
        z=z, y=list(range(len(m))), colorscale="Inferno", zmin=0, zmax=zmax,
        colorbar={"title": "load / layer mean"},
        hovertemplate=f"layer %{{y}}<br>{xlabel} %{{x}}<br>load / mean %{{z:.2f}}<extra></extra>"))
    return fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title="MoE layer",
                             height=max(300, 120 + 6 * len(m)), yaxis={"autorange": "reversed"})


def heatmap_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    maps = load_maps(result)
    if not maps:
        return missing("experts", "Expert load: before and after placement", "no expert load in this result")
    sec = Section(key="experts", title="Expert load: before and after placement")
    parts = [note("Load (routed tokens) per MoE layer divided by the layer's mean: 1.0 is perfect balance; the "
                  "hottest cell of a row is that layer's max/mean (the colour scale tops out at the 99.5th "
                  "percentile; hover shows the value).")]
    verdict = placement_text(result, maps)
    if verdict:
        parts.append(f'<p class="note" data-placement>{esc(verdict)}</p>')
    labels = {lab for lab, _, _ in maps}
    parts += [absent(f"{lab}: not in this result") for lab in ("before placement", "after placement")
              if lab not in labels]
    zmax = colour_cap([m for _, m, _ in maps])
    rows = []
    lines = go.Figure()
    flat = [(label, m, xl) for label, m, xl in maps if len(m) == 1]
    for label, m, xl in maps:
        if len(m) > 1:
            parts.append(plot(sec, ctx, "heat", _heat(m, f"Expert load {label} ({len(m)} layers x {len(m[0])} {xl}s)",
                                                      xl, zmax)))
        mm = max_over_mean(m)
        if len(m) > 1:
            lines.add_trace(go.Scatter(x=list(range(len(mm))), y=mm, name=label, mode="lines+markers"))
        rows.append([label, f"{max(mm):.3f}", f"{sum(mm) / len(mm):.3f}", len(m), f"{len(m[0])} {xl}s"])
    for xl in dict.fromkeys(xl for _, _, xl in flat):  # one-row maps: bars per column, before/after side by side
        fig = go.Figure()
        for label, m, x in flat:
            if x != xl:
                continue
            mean = sum(m[0]) / len(m[0])
            fig.add_trace(go.Bar(x=list(range(len(m[0]))), y=[v / mean if mean else 0 for v in m[0]], name=label))
        fig.add_hline(y=1.0, line_dash="dot", line_color="#555")
        parts.append(plot(sec, ctx, "loadbar", fig, title=f"Load per {xl} / mean (a layer's routed tokens)",
                          xaxis_title=xl, yaxis_title="load / mean", barmode="group", height=340))
    if lines.data:
        parts.append(plot(sec, ctx, "maxmean", lines, title="max / mean load per layer", xaxis_title="MoE layer",
                          yaxis_title="max / mean", height=300, yaxis={"rangemode": "tozero"}))
    parts.append(table(["", "worst layer max/mean", "mean over layers", "layers", "columns"], rows, {1, 2, 3}))
    sec.body = "".join(parts)
    return sec


def placement_text(result: dict, maps) -> str | None:
    """What placement did to the per-GPU load, from the maps (worst layer max/mean before -> after), and why
    when it did not help: whole expert slots per GPU, or a "before" that is no placement at all."""
    by = {label: m for label, m, _ in maps}
    if "before placement" not in by or "after placement" not in by:
        return None
    before, after = by["before placement"], by["after placement"]
    b, a = max(max_over_mean(before)), max(max_over_mean(after))
    n_gpus = len(after[0])
    logical = by.get("routed load per logical expert")
    n_exp = len(logical[0]) if logical else None
    red = num((result.get("parallel") or {}).get("redundant_experts"))
    flat = all(max(r) == min(r) for r in before)
    out = []
    if flat and n_exp and n_exp % n_gpus:
        out.append(f"The 'before' row is no placement: {n_exp} experts do not divide over {n_gpus} GPUs, so it "
                   "spreads the routed load evenly (the ideal, max/mean 1.000).")
    if a < b - 5e-4:
        out.append(f"Placement (EPLB-style replication and packing) lowers the worst layer's per-GPU max/mean "
                   f"from {b:.3f} to {a:.3f}.")
    elif a > b + 5e-4:
        why = ""
        if n_exp and red is not None:
            slots = n_exp + red
            why = (f" {slots:g} expert slots ({n_exp} experts + {red:g} redundant) on {n_gpus} GPUs give each GPU "
                   f"{slots / n_gpus:g} whole slot(s); an expert without a replica keeps all its load on one GPU, so "
                   f"under near-even routing the busiest GPU carries about {slots:g}/{n_exp} = {slots / n_exp:.3f}x "
                   "the mean. Redundant experts pay off only when routing is skewed.")
        out.append(f"Placement raises the worst layer's per-GPU max/mean from {b:.3f} to {a:.3f}.{why}")
    elif before == after:
        out.append(f"Before and after are one placement here (experts contiguous, no replicas): per-GPU max/mean "
                   f"{a:.3f}.")
    else:
        out.append(f"Placement leaves the per-GPU max/mean at {a:.3f}.")
    return " ".join(out)


def nodes_hist(v) -> dict[int, float] | None:
    """{nodes: count} from ``nodes_per_token`` (``results.NodesPerToken``: ``hist[i]`` counts tokens reaching i+1
    nodes)."""
    g = group(NodesPerToken, v)
    if g is None or not g.hist or any(num(x) is None for x in g.hist):
        return None
    return {i + 1: num(x) for i, x in enumerate(g.hist)}


def _nodes_text(h: dict, xs: list, v: NodesPerToken, limit: float | None, mean: float) -> tuple[str, str]:
    """(the limit line's label, the explanation): the node limit held, was exceeded, or there is none."""
    total = sum(h.values())
    over = sum(h[x] for x in xs if limit and x > limit)
    if limit and over:
        return f"M={limit:g} (a limit on expert groups)", nodes_text_over(
            limit, over / total, mean, max(x for x in xs if h[x] > 0), len(h), num(v.n_group))
    if limit:
        return f"node limit M={limit:g}", (
            "DeepSeek-V3 §2.1.2 / §3.2.2: each token goes to at most M nodes, so the IB traffic of a token is "
            f"bounded by M copies of its hidden state; here no token reaches more than {limit:g} (mean {mean:.2f}).")
    return "", ("No node limit in this result: the gate picks the top-k experts "
                f"anywhere (mean {mean:.2f} nodes per token).")


def nodes_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    v = group(NodesPerToken, result.get("nodes_per_token"))
    h = nodes_hist(v)
    if not h:
        return missing("nodes", "Nodes per token", "no nodes-per-token distribution in this result")
    sec = Section(key="nodes", title="Nodes per token")
    limit = num(v.node_limit)
    total = sum(h.values())
    top = max([x for x in h if h[x]] + [int(limit or 0) + 1])
    xs = [x for x in sorted(h) if x <= top]  # no run of empty bins past the last token (EP320 has 40 nodes)
    frac = [h[x] / total * 100 if total else 0 for x in xs]
    mean = sum(x * h[x] for x in xs) / total if total else 0
    fig = go.Figure(go.Bar(x=xs, y=frac, marker_color="#4c78a8", text=[f"{f:.1f}%" for f in frac],
                           textposition="outside"))
    label, text = _nodes_text(h, xs, v, limit, mean)
    if label:
        fig.add_vline(x=limit + 0.5, line_dash="dash", line_color="#e45756", annotation_text=label)
    sec.body = note(esc(text)) + plot(sec, ctx, "nodes", fig, xaxis_title="nodes per token", height=340,
                                      title=f"Distinct nodes reached by a token's top-k experts (mean {mean:.2f})",
                                      yaxis_title="% of tokens", xaxis={"dtick": 1})
    return sec


def nodes_text_over(limit: float, frac_over: float, mean: float, most: int, n_nodes: int | None,
                    groups: float | None) -> str:
    """Why tokens reach more nodes than M: M limits the gate's expert groups (topk_group of n_group, V3 §2.1.2),
    which bounds nodes only while each group sits on one node."""
    span = (f"the EP group spans {n_nodes} nodes but the gate has {groups:g} expert groups, so a group's experts "
            "(and the placement's replicas of them) sit on several nodes" if n_nodes and groups and n_nodes != groups
            else "the placement puts experts of one group (or their replicas) on several nodes, or the routing "
                 "trace was not node-limited")
    return (f"M={limit:g} limits the expert groups a token's gate keeps (DeepSeek-V3 §2.1.2: the top M groups by "
            f"their experts' scores); it bounds nodes per token only where each group lives on one node. Here "
            f"{span}: {frac_over * 100:.1f}% of tokens reach more than {limit:g} nodes (mean {mean:.2f}, at most "
            f"{most}), and IB traffic per token grows with that count.")
