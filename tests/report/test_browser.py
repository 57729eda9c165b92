"""Open a report in headless Chromium: every plot rendered, no JavaScript error on the console.

Debian's ``chromium`` (installed by .ci/run when missing). The page itself counts its figure wrappers and the
ones plotly drew into (``data-plots-wanted`` / ``data-plots-rendered`` on <body>) and records uncaught errors
in ``#js-errors``; ``--dump-dom`` returns that DOM after ``--virtual-time-budget`` ms of page time, and
``--enable-logging=stderr`` puts the console on stderr. Skipped, with the reason, where Chromium is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dsv3sim.report import build_page

from .conftest import fixtures, torch_like_trace

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000"]


def chromium() -> str | None:
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and Path(c).exists():
            return c
    return None


def dump_dom(exe: str, page: Path, profile: Path) -> tuple[str, str]:
    r = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln and re.search(r"Uncaught|Error|error", ln)]


@pytest.mark.skipif(chromium() is None, reason="Chromium not installed (apt-get install chromium; .ci/run does it)")
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

    dom, err = dump_dom(chromium(), out, tmp_path / "profile")
    wanted = re.search(r'data-plots-wanted="(\d+)"', dom)
    rendered = re.search(r'data-plots-rendered="(\d+)"', dom)
    assert wanted and rendered, "page script did not run"
    assert int(wanted.group(1)) == page.n_figures
    assert int(rendered.group(1)) == page.n_figures, f"{rendered.group(1)} of {page.n_figures} plots drew"
    assert dom.count('class="main-svg"') >= page.n_figures
    assert re.search(r'<pre id="js-errors">\s*</pre>', dom), "uncaught JavaScript errors recorded"
    assert console_errors(err) == []


@pytest.mark.skipif(chromium() is None, reason="Chromium not installed (apt-get install chromium; .ci/run does it)")
def test_the_checks_can_fail(tmp_path):
    """A page with a broken figure and a thrown error is caught by the same checks."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><div data-dsv3sim-figure='x'></div><script>undefinedFn();</script></body></html>")
    dom, err = dump_dom(chromium(), bad, tmp_path / "profile")
    assert "data-plots-rendered" not in dom
    assert any("Uncaught ReferenceError" in ln for ln in console_errors(err))
