"""Validation: predicted vs measured (real runs) or published (DeepSeek's reports), with the error.

The relative error is (predicted - reference) / reference, computed here when a row does not carry it; values
sharing a unit are drawn side by side, measured and predicted step series as lines. Keys read: NOTES.md.
"""

from __future__ import annotations

from dsv3sim.report.data import fmt_num, num
from dsv3sim.report.page import Section, esc, missing, note, plot, table

REF_KEYS = ("measured", "published")


def validation_rows(result: dict) -> list[dict]:
    v = result.get("validation")
    out = []
    for r in v.get("rows", []) if isinstance(v, dict) else v or []:
        pred = num(r.get("predicted"))
        ref_key = next((k for k in REF_KEYS if num(r.get(k)) is not None), None)
        ref = num(r.get(ref_key)) if ref_key else None
        if pred is None or ref is None:
            continue
        err = num(r.get("rel_error"))
        if err is None:
            err = (pred - ref) / ref if ref else None
        out.append({"name": str(r.get("name")), "predicted": pred, "reference": ref, "kind": ref_key,
                    "source": str(r.get("source", "")), "unit": str(r.get("unit", "")), "error": err,
                    "note": str(r.get("note", "") or "")})
    return out


def _colour(e: float) -> str:
    return "#54a24b" if abs(e) <= 10 else "#f58518" if abs(e) <= 25 else "#e45756"


def _error_figure(go, rows: list[dict], errs: list[float]):
    fig = go.Figure(go.Bar(x=[r["name"] for r in rows], y=errs, text=[f"{e:+.1f}%" for e in errs],
                           textposition="outside", width=0.5 if len(rows) < 4 else None,
                           marker_color=[_colour(e) for e in errs]))
    fig.add_hline(y=0, line_color="#333")
    return fig.update_layout(title="Relative error of the prediction (predicted − reference) / reference",
                             yaxis_title="error (%)", height=380)


def _unit_figures(go, rows: list[dict]) -> list:
    """Absolute values side by side, one chart per unit shared by two rows or more."""
    by_unit: dict[str, list[dict]] = {}
    for r in rows:
        by_unit.setdefault(r["unit"], []).append(r)
    figs = []
    for unit, rs in ((u, rs) for u, rs in by_unit.items() if len(rs) >= 2):
        vals = [v for r in rs for v in (r["predicted"], r["reference"]) if v > 0]
        log = bool(vals) and max(vals) / min(vals) > 100
        f = go.Figure([go.Bar(x=[r["name"] for r in rs], y=[r["predicted"] for r in rs], name="predicted",
                              marker_color="#4c78a8"),
                       go.Bar(x=[r["name"] for r in rs], y=[r["reference"] for r in rs], name="measured / published",
                              marker_color="#f58518")])
        figs.append(f.update_layout(title=f"Predicted and reference values ({unit or 'no unit'})", barmode="group",
                                    height=360, yaxis={"title": unit, "type": "log" if log else "linear"}))
    return figs


def _steps_figure(go, result: dict):
    """Measured and predicted step time per step (``dsv3sim validate``), when the result has both series."""
    meas, pred = result.get("measured_steps_s"), result.get("predicted_steps_s")
    if not (isinstance(meas, list) and isinstance(pred, list) and meas and pred):
        return None
    return go.Figure([go.Scatter(y=meas, name="measured", mode="lines+markers"),
                      go.Scatter(y=pred, name="predicted", mode="lines+markers")]).update_layout(
        title="Step time per measured step", xaxis_title="step", yaxis_title="s", height=320)


def _table(rows: list[dict], errs: list[float]) -> str:
    trs = [[esc(r["name"]), f"{fmt_num(r['predicted'])} {esc(r['unit'])}", f"{fmt_num(r['reference'])} {esc(r['unit'])}",
            esc(r["kind"]), f"<span class='{'err-ok' if abs(e) <= 10 else 'err-pos'}'>{e:+.1f} %</span>",
            esc(r["source"]) + (f"<br><span class='note'>{esc(r['note'])}</span>" if r["note"] else "")]
           for r, e in zip(rows, errs)]
    return table(["quantity", "predicted", "reference", "kind", "error", "source"], trs, {1, 2, 4}, raw=True)


def validation_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    rows = validation_rows(result)
    if not rows:
        return missing("validation", "Validation: predicted vs measured / published", "no validation in this result")
    sec = Section(key="validation", title="Validation: predicted vs measured / published")
    errs = [r["error"] * 100 if r["error"] is not None else 0 for r in rows]
    parts = [note("Green within 10 %, orange within 25 %, red beyond."),
             plot(sec, ctx, "val", _error_figure(go, rows, errs))]
    parts += [plot(sec, ctx, "valabs", f) for f in _unit_figures(go, rows)]
    steps = _steps_figure(go, result)
    if steps is not None:
        parts.append(plot(sec, ctx, "valsteps", steps))
    sec.body = "".join(parts) + _table(rows, errs)
    return sec
