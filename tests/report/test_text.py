"""The report's prose (report/text.toml) and the renderers agree: every key a renderer says exists, every entry is
said somewhere, and each template fills in from its named values."""

from __future__ import annotations

import re
import string
from pathlib import Path

import dsv3sim.report
from dsv3sim.report.page import TEXT, say

KEY = re.compile(r'"([a-z_]+)\.([a-z_]+)"')  # "section.name" literals (a renderer may pick one of two)


def _said() -> set[str]:
    src = Path(dsv3sim.report.__file__).parent
    return {f"{a}.{b}" for p in src.glob("*.py") for a, b in KEY.findall(p.read_text()) if a in TEXT}


def test_every_key_said_exists_and_every_entry_is_said():
    entries = {f"{part}.{name}" for part, d in TEXT.items() for name in d}
    assert _said() == entries


def test_templates_fill_in_and_escape():
    for part, d in TEXT.items():
        for name, template in d.items():
            fields = {f.split(".")[0].split("[")[0] for _, f, spec, _ in string.Formatter().parse(template) if f}
            assert all(f.isidentifier() for f in fields), (part, name, fields)
    assert say("planner.user_ok", key="a<b", rank=1, step_time_s=2.0) == "Your layout a&lt;b: rank 1, 2.00 s per step."


def test_a_sentence_inside_a_sentence_is_escaped_once():
    from dsv3sim.report import PLAN, section
    from dsv3sim.report.page import RenderContext

    user = {"feasible": False, "key": "pp8", "reason": "HBM <full>",
            "nearest_feasible": {"key": "pp16<a>", "changed": ["pp&ep"]}}
    s = section("planner", {"type": "plan", "kind": "train", "user_layout": user}, RenderContext(), PLAN).body
    assert "HBM &lt;full&gt;" in s and "pp16&lt;a&gt; (changes pp&amp;ep)" in s and "&amp;lt;" not in s
