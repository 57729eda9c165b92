"""Open a report in headless Chromium: every plot rendered, no JavaScript error on the console.

Debian's ``chromium`` (installed by .ci/run when missing). The page itself counts its figure wrappers and the
ones plotly drew into (``data-plots-wanted`` / ``data-plots-rendered`` on <body>) and records uncaught errors
in ``#js-errors``; ``--dump-dom`` returns that DOM after ``--virtual-time-budget`` ms of page time, and
``--enable-logging=stderr`` puts the console on stderr. Skipped, with the reason, where Chromium is absent.
"""

from __future__ import annotations

import json
import re

import pytest

from dsv3sim.report import build_page
from dsv3sim.report.browser import console_errors, dump_dom, find_chromium

from .conftest import fixtures, torch_like_trace

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(find_chromium() is None,
                                 reason="Chromium not installed (apt-get install chromium; .ci/run does it)")]


def test_every_plot_renders_without_console_errors(tmp_path):
    trace = tmp_path / "real.json"
    trace.write_text(json.dumps(torch_like_trace()))
    result = {"pretrain": fixtures.training_result(), "ep_sweep": fixtures.sweep_result()}
    import plotly.offline

    page = build_page(result, chrome_trace=trace)
    out = tmp_path / "report.html"
    out.write_text(page.html(plotly.offline.get_plotlyjs()))
    keys = {s.key for _, secs in page.blocks for s in secs if s.n_figures}
    assert keys >= {"summary", "timeline", "compare", "links", "experts", "nodes", "memory", "kvcache",
                    "imbalance", "sweep", "validation"}  # every section kind drew at least one figure

    dom, err = dump_dom(out)
    wanted = re.search(r'data-plots-wanted="(\d+)"', dom)
    rendered = re.search(r'data-plots-rendered="(\d+)"', dom)
    assert wanted and rendered, "page script did not run"
    assert int(wanted.group(1)) == page.n_figures
    assert int(rendered.group(1)) == page.n_figures, f"{rendered.group(1)} of {page.n_figures} plots drew"
    assert dom.count('class="main-svg"') >= page.n_figures
    assert re.search(r'<pre id="js-errors">\s*</pre>', dom), "uncaught JavaScript errors recorded"
    assert console_errors(err) == []


def test_the_checks_can_fail(tmp_path):
    """A page with a broken figure and a thrown error is caught by the same checks."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><div data-dsv3sim-figure='x'></div><script>undefinedFn();</script></body></html>")
    dom, err = dump_dom(bad)
    assert "data-plots-rendered" not in dom
    assert any("Uncaught ReferenceError" in ln for ln in console_errors(err))
