"""Validation: predicted vs measured (real runs) or published (DeepSeek's reports); relative error = (predicted -
reference) / reference (``results.reading.validation_rows`` computes it when a row does not carry it)."""

from __future__ import annotations

import statistics

from dsv3sim.config.units import fmt_num, num
from dsv3sim.report.page import cards, esc, need, note, say, table
from dsv3sim.results.reading import component_errors, matrix_cases, step_errors, validation_rows

BARS = (("predicted", "predicted", "#4c78a8"), ("reference", "measured / published", "#f58518"))


def _error_bars(names: list[str], errs: list[float], **more) -> dict:
    """Errors (%) as bars labelled with their value: green within 10 %, orange within 25 %, red beyond."""
    colours = ["#54a24b" if abs(e) <= 10 else "#f58518" if abs(e) <= 25 else "#e45756" for e in errs]
    return {"type": "bar", "x": names, "y": errs, "text": [f"{e:+.1f}%" for e in errs], "textposition": "outside",
            "marker": {"color": colours}, **more}


def _figures(ctx, rows: list[dict], errs: list[float]) -> list[str]:
    """The errors as bars; predicted and reference values side by side, a chart per unit shared by two rows or more
    (a log axis past a 100x range)."""
    out = [ctx.plot("val", [_error_bars([r["name"] for r in rows], errs, width=0.5 if len(rows) < 4 else None)],
                    lines=[("h", {"y": 0, "line_color": "#333"})], yaxis_title="error (%)", height=380,
                    title="Relative error of the prediction (predicted − reference) / reference")]
    for unit in dict.fromkeys(r["unit"] for r in rows):
        if len(rs := [r for r in rows if r["unit"] == unit]) >= 2:
            vals = [v for r in rs for v in (r["predicted"], r["reference"]) if v > 0]
            out.append(ctx.plot("valabs", [{"type": "bar", "x": [r["name"] for r in rs], "y": [r[k] for r in rs],
                                            "name": name, "marker": {"color": c}} for k, name, c in BARS],
                                title=f"Predicted and reference values ({unit or 'no unit'})", barmode="group",
                                height=360, yaxis={"title": unit, "type": "log" if vals and max(vals) / min(vals) > 100
                                                   else "linear"}))
    return out


def _ci_whiskers(cases: list[dict], errs: list[float]) -> dict:
    """Plotly ``error_y`` from each case's ``error_ci95`` (the measured median's 95 % interval, in error terms);
    none when a case lacks it (matrices written before it)."""
    cis = [c.get("error_ci95") for c in cases]
    if not all(isinstance(ci, list) and len(ci) == 2 and all(num(x) is not None for x in ci) for ci in cis):
        return {}
    cis = [[num(x) for x in ci] for ci in cis]
    return {"error_y": {"type": "data", "symmetric": False, "color": "#555",
                        "array": [max(hi * 100 - e, 0.0) for (lo, hi), e in zip(cis, errs)],
                        "arrayminus": [max(e - lo * 100, 0.0) for (lo, hi), e in zip(cis, errs)]}}


def matrix(result: dict, cases: list[dict], ctx) -> str:
    """A matrix of real runs (``matrix_cases``): the cards, the step error per case (bars with the measured median's
    95 % interval, ±10 % dotted), each component's spread over the cases (boxes, ±20 %), the table of cases."""
    errs = [e * 100 for e in step_errors(cases)]
    ab = sorted(abs(e) for e in errs)
    comp = {n: [e * 100 for e in es] for n, es in component_errors(cases).items()}
    within = [abs(e) <= 20 for es in comp.values() for e in es]
    kv = [("cases", str(len(ab))), ("median |error|", f"{statistics.median(ab):.1f} %"),
          ("max |error|", f"{ab[-1]:.1f} %"), ("within 10 %", f"{sum(a <= 10 for a in ab)} of {len(ab)}")]
    kv += [("components within 20 %", f"{100 * sum(within) / len(within):.0f} %")] if within else []
    names = [str(c.get("layout", i)) for i, c in enumerate(cases)]
    bounds = {b: [("h", {"y": y, "line_dash": "dot", "line_color": "#999"}) for y in (-b, b)] for b in (10, 20)}
    figs = ctx.plot("matrix", [_error_bars(names, errs, **_ci_whiskers(cases, errs))], lines=bounds[10],
                    title="Step time: (predicted − measured) / measured per case", yaxis_title="error (%)", height=360)
    figs += ctx.plot("matrixparts", [{"type": "box", "y": es, "name": n, "boxpoints": "all", "jitter": 0.3}
                                     for n, es in comp.items()], lines=bounds[20], showlegend=False,
                     title="Component error across the cases", yaxis_title="error (%)", height=380) if comp else ""
    trs = [[n, " ".join(map(str, c.get("flags") or [])), c.get("nproc", ""), f"{c['measured_step_s'] * 1e3:.1f}",
            f"{c['predicted_step_s'] * 1e3:.1f}", f"{e:+.1f} %"] for n, c, e in zip(names, cases, errs)]
    header = ["case", "flags", "processes", "measured (ms)", "predicted (ms)", "error"]
    return "".join([note(say("validation.matrix", machine=str(result.get("machine") or "not recorded"),
                             command=str(result.get("command") or ""))), cards(kv), figs,
                    table(header, trs, {2, 3, 4, 5})])


def validation(result: dict, ctx) -> str:
    rows, cases = validation_rows(result), matrix_cases(result)
    head = matrix(result, cases, ctx) if cases else ""
    if not rows:
        return need(head, "no validation in this result")
    errs = [r["error"] * 100 if r["error"] is not None else 0 for r in rows]
    trs = [[esc(r["name"]), f"{fmt_num(r['predicted'])} {esc(r['unit'])}",
            f"{fmt_num(r['reference'])} {esc(r['unit'])}", esc(r["kind"]),
            f"<span class='{'err-ok' if abs(e) <= 10 else 'err-pos'}'>{e:+.1f} %</span>",
            esc(r["source"]) + (f"<br><span class='note'>{esc(r['note'])}</span>" if r["note"] else "")]
           for r, e in zip(rows, errs)]
    meas, pred, figs = result.get("measured_steps_s"), result.get("predicted_steps_s"), _figures(ctx, rows, errs)
    steps = ctx.plot("valsteps", [{"type": "scatter", "y": s, "name": n, "mode": "lines+markers"} for n, s in (
        ("measured", meas), ("predicted", pred))], title="Step time per measured step", xaxis_title="step",
        yaxis_title="s", height=320) if isinstance(meas, list) and isinstance(pred, list) and meas and pred else ""
    header = ["quantity", "predicted", "reference", "kind", "error", "source"]
    return head + "".join([note("Green within 10 %, orange within 25 %, red beyond."), *figs,
                           steps, table(header, trs, {1, 2, 4}, raw=True)])
