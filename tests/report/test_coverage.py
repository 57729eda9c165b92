"""No section silently disappears: every typed group a result carries is shown by its section, and every section a
report has shown stays on the page (present, or listed under "Not in this result")."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dsv3sim import results
from dsv3sim.report import build_page
from dsv3sim.results import CommStats, KvSizing, LinkUtilisation, MemoryRow, NodesPerToken, Timeline, group

from .conftest import fixtures, torch_like_trace

ROOT = Path(__file__).resolve().parents[2]
# the section that shows each typed group of dsv3sim.results, and whether it draws it as a figure
GROUP_SECTIONS = {LinkUtilisation: ("links", True), NodesPerToken: ("nodes", True), Timeline: ("timeline", True),
                  MemoryRow: ("memory", True), KvSizing: ("kvcache", False), CommStats: ("links", False)}
# every section the report of a full training result has, in page order
SECTION_KEYS = ("summary", "timeline", "compare", "links", "experts", "nodes", "memory", "kvcache", "imbalance",
                "sweep", "validation", "fields")


def test_every_typed_group_has_a_section():
    """A typed group added to dsv3sim.results needs a section here (and in the report)."""
    declared = {c for c in vars(results).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
                and c.__module__ == results.__name__}
    declared -= {results.Ordered, results.Infeasible, results.TrainingResult, results.ServingResult}
    assert declared == set(GROUP_SECTIONS)


def _groups_in(result: dict) -> set[type]:
    """The typed groups a result carries: a field that is one, a list of them (rows) or a dict of them (comm)."""
    found = set()
    for v in result.values():
        for cls in GROUP_SECTIONS:
            items = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) and cls is CommStats else [v]
            if items and all(group(cls, x) is not None for x in items):
                found.add(cls)
    return found


def _results():
    yield "fixture training", fixtures.training_result()
    yield "fixture decode", fixtures.decode_result()
    yield "v3 pretrain (simulated)", json.loads((ROOT / "tests/report/data/v3_pretrain_result.json").read_text())
    for path in sorted((ROOT / "reports/examples").glob("*.json")):
        data = json.loads(path.read_text())
        yield from ((f"{path.stem}:{k}", v) for k, v in data.items()) if "schema" not in data else [(path.stem, data)]


@pytest.mark.parametrize(("name", "result"), list(_results()), ids=[n for n, _ in _results()])
def test_every_group_in_a_result_is_shown(name, result):
    groups = _groups_in(result)
    assert groups, f"{name}: no typed group found (the fixture or the schema changed)"
    (_, secs), = build_page(result, traces_dir=ROOT / "traces").blocks
    secs = {s.key: s for s in secs}
    for cls in groups:
        key, drawn = GROUP_SECTIONS[cls]
        assert key in secs and secs[key].present, f"{name}: {cls.__name__} present, section {key!r} is not"
        assert secs[key].n_figures > 0 if drawn else secs[key].body, f"{name}: section {key!r} shows nothing"


def test_every_section_stays_on_the_page(tmp_path):
    trace = tmp_path / "real.json"
    trace.write_text(json.dumps(torch_like_trace()))
    page = build_page(fixtures.training_result(), chrome_trace=trace, traces_dir=ROOT / "traces")
    (_, secs), = page.blocks
    assert tuple(s.key for s in secs) == SECTION_KEYS
    html = page.html("")
    missing = [k for k in SECTION_KEYS if f'data-section="{k}"' not in html]
    assert not missing, f"sections not on the page: {missing}"
    assert [s.key for s in secs if not s.present] == ["sweep"]  # the only one the fixture has no data for
    sweep = build_page(fixtures.sweep_result())
    assert next(s for _, ss in sweep.blocks for s in ss if s.key == "sweep").n_figures == 2
