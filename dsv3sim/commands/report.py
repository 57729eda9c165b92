"""`dsv3sim report RESULT.json --out reports/NAME.html`: one self-contained HTML report from a result JSON.

Reads the JSON only (no simulation is re-run). With --chrome-trace REAL.json (a torch.profiler trace of a real
run) the simulated and the real timeline are drawn side by side. Writing a report refreshes the folder's
index.html; `dsv3sim report --index reports/` rebuilds the index alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dsv3sim.commands import _args as A
from dsv3sim.config.errors import ConfigError

NAME = "report"
HELP = "render an HTML report (plotly embedded, works offline) from a result JSON; rebuild reports/index.html"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("result", nargs="?", help="result JSON written by `dsv3sim run --json` or `dsv3sim sweep`")
    p.add_argument("--out", type=A.out_path, default=None, help="output HTML (default reports/<RESULT stem>.html)")
    p.add_argument("--chrome-trace", default=None, metavar="PATH",
                   help="a real run's Chrome trace (torch.profiler export, .json or .json.gz) to show beside the "
                        "simulated timeline")
    p.add_argument("--price-per-gpu-hour", type=A.nonneg_float, default=None, metavar="USD",
                   help="price for the cost lines (default: the result's, else $2, DeepSeek-V3's H800 assumption)")
    p.add_argument("--title", default=None, help="report title (default: the scenario name)")
    p.add_argument("--scenario", default=None, metavar="NAME",
                   help="render only this scenario of a study JSON, in full (timeline, links, every field)")
    p.add_argument("--index", default=None, metavar="DIR", nargs="?", const="reports",
                   help="only rebuild DIR/index.html (default DIR: reports)")
    p.add_argument("--screenshot", type=A.out_path, default=None, metavar="PNG",
                   help="also save a screenshot of the report (needs Chromium; 1400 px wide)")
    p.add_argument("--screenshot-height", type=A.pos_int, default=3000, metavar="PX", help="screenshot height (3000)")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")


def _read_result(src: Path) -> dict:
    """The result JSON at ``src``, parsed once; a JSON that is not a result (a model config, a load file, anything
    else) is refused instead of rendering an empty report from it."""
    from dsv3sim.results import is_result, load_json

    try:
        data = load_json(src)
    except RecursionError:
        raise ConfigError(f"{src}: JSON nested too deeply to be a result") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{src}: not UTF-8 text, so not a result JSON") from None
    if is_result(data) or any(is_result(v) for v in data.values()):  # a result (sweep rows too), or one nested by name
        return data
    hint = " (it looks like a model config.json)" if "model_type" in data or "architectures" in data else ""
    raise ConfigError(f"{src} is not a result JSON{hint}: none of the result keys (step_time_s, scenario, kind, "
                     "sweep, validation, infeasible, ...); render what `dsv3sim run --json`, `sweep` or `validate` "
                     "wrote")


def run(args: argparse.Namespace) -> int:
    from dsv3sim.report import build_page, merged_trace_path, write_index

    if args.result is None:
        if args.index is None:
            raise ConfigError("give a RESULT.json to render, or --index [DIR] to rebuild an index")
        idx = write_index(args.index)
        print(json.dumps({"index": str(idx)}) if args.json else f"wrote {idx}")
        return 0
    src = Path(args.result)
    data = _read_result(src)
    stem = src.stem + (f"-{args.scenario}" if args.scenario else "")
    out = Path(args.out) if args.out else Path("reports") / f"{stem}.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out must end in .html, got {out}")
    if args.chrome_trace is not None and not Path(args.chrome_trace).exists():
        raise FileNotFoundError(f"--chrome-trace not found: {args.chrome_trace}")
    import plotly.offline

    out.parent.mkdir(parents=True, exist_ok=True)
    merged = merged_trace_path(out) if args.chrome_trace else None
    from dsv3sim.commands._progress import bars_wanted, progress

    with progress(None, f"rendering {out}", enabled=bars_wanted(args.json)):
        page = build_page(data, source=src, chrome_trace=args.chrome_trace, price_per_gpu_hour=args.price_per_gpu_hour,
                          title=args.title, merged_trace_out=merged, scenario=args.scenario)
        out.write_text(page.html(plotly.offline.get_plotlyjs()))
    idx = write_index(Path(args.index) if args.index else out.parent)
    info = {
        "report": str(out), "index": str(idx), "merged_trace": str(merged) if merged else None, "figures": page.n_figures, "bytes": out.stat().st_size,
        "sections": {s.key: s.present for _, secs in page.blocks for s in secs},
    }
    if args.screenshot:
        from dsv3sim.report.browser import screenshot

        if args.screenshot_height <= 0:
            raise ConfigError(f"--screenshot-height must be > 0, got {args.screenshot_height}")
        with progress(None, "screenshot in headless Chromium", enabled=bars_wanted(args.json)):
            info["screenshot"] = str(screenshot(out, Path(args.screenshot), height=args.screenshot_height))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        absent = sorted({k for k, v in info["sections"].items() if not v})
        print(f"wrote {out} ({info['bytes'] / 1e6:.1f} MB, {page.n_figures} figures); index {idx}")
        if absent:
            print(f"not in this result: {', '.join(absent)}")
    return 0
