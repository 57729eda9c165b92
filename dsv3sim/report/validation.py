"""Validation: predicted vs measured (real runs) or published (DeepSeek's reports).

Relative error = (predicted - reference) / reference, computed here when a row does not carry it."""

from __future__ import annotations

from dsv3sim.report.data import fmt_num, num
from dsv3sim.report.page import Absent, esc, note, table

REFERENCES = ("measured", "published")
BARS = (("predicted", "predicted", "#4c78a8"), ("reference", "measured / published", "#f58518"))


def validation_rows(result: dict) -> list[dict]:
    v = result.get("validation")
    out = []
    for r in v.get("rows", []) if isinstance(v, dict) else v or []:
        pred, kind = num(r.get("predicted")), next((k for k in REFERENCES if num(r.get(k)) is not None), None)
        if pred is None or kind is None:
            continue
        ref, err = num(r[kind]), num(r.get("rel_error"))
        out.append({"name": str(r.get("name")), "predicted": pred, "reference": ref, "kind": kind,
                    "source": str(r.get("source", "")), "unit": str(r.get("unit", "")),
                    "note": str(r.get("note") or ""), "error": err if err is not None else (pred - ref) / ref if ref
                    else None})
    return out


def _colour(e: float) -> str:
    return "#54a24b" if abs(e) <= 10 else "#f58518" if abs(e) <= 25 else "#e45756"


def _absolute(ctx, unit: str, rs: list[dict]) -> str:
    """Predicted and reference values of one unit side by side (a log axis past a 100x range)."""
    vals = [v for r in rs for v in (r["predicted"], r["reference"]) if v > 0]
    return ctx.plot("valabs", [{"type": "bar", "x": [r["name"] for r in rs], "y": [r[k] for r in rs], "name": name,
                                "marker": {"color": c}} for k, name, c in BARS],
                    title=f"Predicted and reference values ({unit or 'no unit'})", barmode="group", height=360,
                    yaxis={"title": unit, "type": "log" if vals and max(vals) / min(vals) > 100 else "linear"})


def _figures(ctx, result: dict, rows: list[dict], errs: list[float]) -> list[str]:
    """The errors as bars; absolute values side by side, a chart per unit shared by two rows or more; the measured
    and predicted step series."""
    out = [ctx.plot("val", [{"type": "bar", "x": [r["name"] for r in rows], "y": errs, "textposition": "outside",
                             "text": [f"{e:+.1f}%" for e in errs], "width": 0.5 if len(rows) < 4 else None,
                             "marker": {"color": [_colour(e) for e in errs]}}],
                    lines=[("h", {"y": 0, "line_color": "#333"})], yaxis_title="error (%)", height=380,
                    title="Relative error of the prediction (predicted − reference) / reference")]
    for unit in dict.fromkeys(r["unit"] for r in rows):
        if len(rs := [r for r in rows if r["unit"] == unit]) >= 2:
            out.append(_absolute(ctx, unit, rs))
    meas, pred = result.get("measured_steps_s"), result.get("predicted_steps_s")
    if isinstance(meas, list) and isinstance(pred, list) and meas and pred:
        out.append(ctx.plot("valsteps", [{"type": "scatter", "y": s, "name": n, "mode": "lines+markers"}
                                         for n, s in (("measured", meas), ("predicted", pred))],
                            title="Step time per measured step", xaxis_title="step", yaxis_title="s", height=320))
    return out


def validation(result: dict, ctx) -> str:
    if not (rows := validation_rows(result)):
        raise Absent("no validation in this result")
    errs = [r["error"] * 100 if r["error"] is not None else 0 for r in rows]
    trs = [[esc(r["name"]), f"{fmt_num(r['predicted'])} {esc(r['unit'])}",
            f"{fmt_num(r['reference'])} {esc(r['unit'])}", esc(r["kind"]),
            f"<span class='{'err-ok' if abs(e) <= 10 else 'err-pos'}'>{e:+.1f} %</span>",
            esc(r["source"]) + (f"<br><span class='note'>{esc(r['note'])}</span>" if r["note"] else "")]
           for r, e in zip(rows, errs)]
    return "".join([note("Green within 10 %, orange within 25 %, red beyond."), *_figures(ctx, result, rows, errs),
                    table(["quantity", "predicted", "reference", "kind", "error", "source"], trs, {1, 2, 4}, raw=True)])
