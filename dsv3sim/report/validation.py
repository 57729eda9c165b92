"""Validation: predicted vs measured (real runs) or published (DeepSeek's reports), with the error.

The relative error is (predicted - reference) / reference, computed here when a row does not carry it; values
sharing a unit are drawn side by side, measured and predicted step series as lines. Keys read: NOTES.md.
"""

from __future__ import annotations

from dsv3sim.report.data import fmt_num, num
from dsv3sim.report.page import Absent, esc, note, table


def validation_rows(result: dict) -> list[dict]:
    v = result.get("validation")
    out = []
    for r in v.get("rows", []) if isinstance(v, dict) else v or []:
        pred, ref_key = num(r.get("predicted")), next((k for k in ("measured", "published") if num(r.get(k)) is not None),
                                                      None)
        if pred is None or ref_key is None:
            continue
        ref, err = num(r[ref_key]), num(r.get("rel_error"))
        out.append({"name": str(r.get("name")), "predicted": pred, "reference": ref, "kind": ref_key,
                    "source": str(r.get("source", "")), "unit": str(r.get("unit", "")), "note": str(r.get("note") or ""),
                    "error": err if err is not None else (pred - ref) / ref if ref else None})
    return out


def _unit_figures(ctx, rows: list[dict]) -> str:
    """Absolute values side by side, one chart per unit shared by two rows or more."""
    by_unit: dict[str, list[dict]] = {}
    for r in rows:
        by_unit.setdefault(r["unit"], []).append(r)
    out = ""
    for unit, rs in ((u, rs) for u, rs in by_unit.items() if len(rs) >= 2):
        vals = [v for r in rs for v in (r["predicted"], r["reference"]) if v > 0]
        out += ctx.plot("valabs", [
            {"type": "bar", "x": [r["name"] for r in rs], "y": [r[k] for r in rs], "name": name, "marker": {"color": c}}
            for k, name, c in (("predicted", "predicted", "#4c78a8"), ("reference", "measured / published", "#f58518"))],
            title=f"Predicted and reference values ({unit or 'no unit'})", barmode="group", height=360,
            yaxis={"title": unit, "type": "log" if vals and max(vals) / min(vals) > 100 else "linear"})
    return out


def validation(result: dict, ctx) -> str:
    if not (rows := validation_rows(result)):
        raise Absent("no validation in this result")
    errs = [r["error"] * 100 if r["error"] is not None else 0 for r in rows]
    parts = [note("Green within 10 %, orange within 25 %, red beyond."), ctx.plot(
        "val", [{"type": "bar", "x": [r["name"] for r in rows], "y": errs, "text": [f"{e:+.1f}%" for e in errs],
                 "textposition": "outside", "width": 0.5 if len(rows) < 4 else None, "marker": {
                     "color": ["#54a24b" if abs(e) <= 10 else "#f58518" if abs(e) <= 25 else "#e45756" for e in errs]}}],
        lines=[("h", {"y": 0, "line_color": "#333"})], title="Relative error of the prediction (predicted − reference) "
        "/ reference", yaxis_title="error (%)", height=380), _unit_figures(ctx, rows)]
    meas, pred = result.get("measured_steps_s"), result.get("predicted_steps_s")
    if isinstance(meas, list) and isinstance(pred, list) and meas and pred:
        parts.append(ctx.plot("valsteps", [{"type": "scatter", "y": s, "name": n, "mode": "lines+markers"} for n, s in (
            ("measured", meas), ("predicted", pred))], title="Step time per measured step", xaxis_title="step",
            yaxis_title="s", height=320))
    trs = [[esc(r["name"]), f"{fmt_num(r['predicted'])} {esc(r['unit'])}", f"{fmt_num(r['reference'])} {esc(r['unit'])}",
            esc(r["kind"]), f"<span class='{'err-ok' if abs(e) <= 10 else 'err-pos'}'>{e:+.1f} %</span>",
            esc(r["source"]) + (f"<br><span class='note'>{esc(r['note'])}</span>" if r["note"] else "")]
           for r, e in zip(rows, errs)]
    return "".join(parts) + table(["quantity", "predicted", "reference", "kind", "error", "source"], trs, {1, 2, 4},
                                  raw=True)
