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


def _open(page, path):
    """Write ``page``, load it in Chromium; assert every plot drew and no JavaScript error; the DOM."""
    import plotly.offline

    path.write_text(page.html(plotly.offline.get_plotlyjs()))
    dom, err = dump_dom(path)
    wanted = re.search(r'data-plots-wanted="(\d+)"', dom)
    rendered = re.search(r'data-plots-rendered="(\d+)"', dom)
    assert wanted and rendered, "page script did not run"
    assert int(wanted.group(1)) == page.n_figures
    assert int(rendered.group(1)) == page.n_figures, f"{rendered.group(1)} of {page.n_figures} plots drew"
    assert dom.count('class="main-svg"') >= page.n_figures
    assert re.search(r'<pre id="js-errors">\s*</pre>', dom), "uncaught JavaScript errors recorded"
    assert console_errors(err) == []
    return dom


def test_every_plot_renders_without_console_errors(tmp_path):
    """Every section kind draws; the new elements are in the rendered DOM: the bottleneck sentence, a
    GPU/topology pairing warning, the placement verdict."""
    trace = tmp_path / "real.json"
    trace.write_text(json.dumps(torch_like_trace()))
    warning = "warning: inconsistent pairing: B200 (sm100) on a network built for H800 (sm90)"
    train = dict(fixtures.training_result(), notes=[warning])
    keys, doms = set(), {}
    for name, page in (("train", build_page(train, chrome_trace=trace)), ("sweep", build_page(fixtures.sweep_result())),
                       ("decode", build_page(fixtures.decode_result()))):
        doms[name] = _open(page, tmp_path / f"{name}.html")
        keys |= {s.key for _, secs in page.blocks for s in secs if s.n_figures}
    assert keys >= {"summary", "timeline", "compare", "links", "experts", "nodes", "memory", "kvcache",
                    "imbalance", "sweep", "validation"}  # every section kind drew at least one figure
    sentence = re.search(r'<p class="bottleneck" data-bottleneck(?:="")?><b>Bottleneck.</b> (.*?)</p>', doms["train"])
    assert sentence and " limits the step: " in sentence.group(1)
    assert 'class="warn" data-note' in doms["train"] and "inconsistent pairing" in doms["train"]
    assert "limits the decode step" in doms["decode"] and "data-placement" in doms["decode"]


def test_study_page_one_table_one_chart_one_bundle(tmp_path):
    """A study: the comparison table and chart come first, and the page stays small (one plotly bundle)."""
    import plotly.offline

    slow = dict(fixtures.training_result(), scenario="slow", step_time_s=40.0,
                tokens_per_s=fixtures.training_result()["tokens_per_s"] / 2)
    study = build_page({"fast": fixtures.training_result(), "slow": slow, "decode": fixtures.decode_result()})
    out = tmp_path / "study.html"
    dom = _open(study, out)
    assert dom.count("data-study-table") == 1 and 'id="cmp-study-1"' in dom
    assert ">-50.0%<" in dom  # the table's change vs the baseline
    bundle = plotly.offline.get_plotlyjs()
    text = out.read_text()
    assert text.count(bundle[:300]) == 1 and out.stat().st_size < len(bundle) + 1_500_000


def test_the_checks_can_fail(tmp_path):
    """A page with a broken figure and a thrown error is caught by the same checks."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><div data-dsv3sim-figure='x'></div><script>undefinedFn();</script></body></html>")
    dom, err = dump_dom(bad)
    assert "data-plots-rendered" not in dom
    assert any("Uncaught ReferenceError" in ln for ln in console_errors(err))
