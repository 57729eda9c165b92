"""Validation: predicted vs measured (real runs) or published (DeepSeek's reports), with the error.

Rows: ``{"name"|"metric", "predicted", "measured"|"published"|"reference", "source", "unit"}``; the relative
error is (predicted - reference) / reference, computed here when the row does not carry it. Accepted as a list,
as ``{name: {predicted, ...}}`` or under ``validation``/``comparisons``. Values sharing a unit are also drawn side by
side, and ``measured_steps_s``/``predicted_steps_s`` (``dsv3sim validate``) as step-time series.
"""

from __future__ import annotations

from dsv3sim.report.data import fmt_num, num, pick
from dsv3sim.report.page import Section, absent, esc, figure_html, note

REF_KEYS = ("measured", "published", "reference", "actual", "expected")


def validation_rows(result: dict) -> list[dict]:
    v = pick(result, "validation", "comparisons", "validations", depth=2)
    if isinstance(v, dict):
        inner = pick(v, "rows", "comparisons", "items", depth=0)
        v = inner if isinstance(inner, list) else [dict(r, name=r.get("name", k)) for k, r in v.items()
                                                    if isinstance(r, dict)]
    out = []
    for r in v if isinstance(v, list) else []:
        if not isinstance(r, dict):
            continue
        pred = num(r.get("predicted", r.get("simulated", r.get("prediction"))))
        ref_key = next((k for k in REF_KEYS if num(r.get(k)) is not None), None)
        ref = num(r.get(ref_key)) if ref_key else None
        if pred is None or ref is None:
            continue
        err = num(r.get("rel_error", r.get("error_rel", r.get("relative_error"))))
        if err is None:
            err = (pred - ref) / ref if ref else None
        out.append({"name": str(r.get("name", r.get("metric", "?"))), "predicted": pred, "reference": ref,
                    "kind": ref_key, "source": str(r.get("source", "")), "unit": str(r.get("unit", "")), "error": err,
                    "tolerance": num(r.get("tolerance", r.get("tol"))), "note": str(r.get("note", "") or "")})
    return out


def validation_section(result: dict, ctx) -> Section:
    import plotly.graph_objects as go

    sec = Section(key="validation", title="Validation: predicted vs measured / published")
    rows = validation_rows(result)
    if not rows:
        sec.body, sec.present = absent("no validation in this result"), False
        return sec
    errs = [r["error"] * 100 if r["error"] is not None else 0 for r in rows]
    fig = go.Figure(go.Bar(x=[r["name"] for r in rows], y=errs, text=[f"{e:+.1f}%" for e in errs],
                           textposition="outside", width=0.5 if len(rows) < 4 else None,
                           marker_color=["#54a24b" if abs(e) <= 10 else "#f58518" if abs(e) <= 25 else "#e45756"
                                         for e in errs]))
    fig.add_hline(y=0, line_color="#333")
    fig.update_layout(title="Relative error of the prediction (predicted − reference) / reference",
                      yaxis_title="error (%)", height=380, margin={"l": 10, "r": 10, "t": 50, "b": 40})
    trs = []
    for r, e in zip(rows, errs):
        cls = "err-ok" if abs(e) <= 10 else "err-pos"
        trs.append(f"<tr><td>{esc(r['name'])}</td><td class='num'>{fmt_num(r['predicted'])} {esc(r['unit'])}</td>"
                   f"<td class='num'>{fmt_num(r['reference'])} {esc(r['unit'])}</td><td>{esc(r['kind'])}</td>"
                   f"<td class='num {cls}'>{e:+.1f} %</td><td>{esc(r['source'])}"
                   + (f"<br><span class='note'>{esc(r['note'])}</span>" if r["note"] else "") + "</td></tr>")
    parts = [note("Green within 10 %, orange within 25 %, red beyond."), figure_html(fig, ctx.fig_id("val"))]
    sec.n_figures = 1
    by_unit: dict[str, list[dict]] = {}
    for r in rows:
        by_unit.setdefault(r["unit"], []).append(r)
    for unit, rs in by_unit.items():  # absolute values side by side, one chart per unit
        if len(rs) < 2:
            continue
        vals = [v for r in rs for v in (r["predicted"], r["reference"]) if v > 0]
        log = bool(vals) and max(vals) / min(vals) > 100
        f2 = go.Figure([go.Bar(x=[r["name"] for r in rs], y=[r["predicted"] for r in rs], name="predicted",
                               marker_color="#4c78a8"),
                        go.Bar(x=[r["name"] for r in rs], y=[r["reference"] for r in rs], name="measured / published",
                               marker_color="#f58518")])
        f2.update_layout(title=f"Predicted and reference values ({unit or 'no unit'})", barmode="group", height=360,
                         yaxis={"title": unit, "type": "log" if log else "linear"},
                         margin={"l": 10, "r": 10, "t": 50, "b": 40})
        parts.append(figure_html(f2, ctx.fig_id("valabs")))
        sec.n_figures += 1
    meas, pred = result.get("measured_steps_s"), result.get("predicted_steps_s")
    if isinstance(meas, list) and isinstance(pred, list) and meas and pred:
        f3 = go.Figure([go.Scatter(y=meas, name="measured", mode="lines+markers"),
                        go.Scatter(y=pred, name="predicted", mode="lines+markers")])
        f3.update_layout(title="Step time per measured step", xaxis_title="step", yaxis_title="s", height=320,
                         margin={"l": 10, "r": 10, "t": 50, "b": 40})
        parts.append(figure_html(f3, ctx.fig_id("valsteps")))
        sec.n_figures += 1
    parts.append("<table><thead><tr><th>quantity</th><th>predicted</th><th>reference</th><th>kind</th>"
                 "<th>error</th><th>source</th></tr></thead><tbody>" + "".join(trs) + "</tbody></table>")
    sec.body = "".join(parts)
    return sec
