"""Typed result groups: each serialises to the JSON its producer wrote (same keys, same order), is read by
attribute, and a dict with a key the group does not know stays a dict."""

import json
from pathlib import Path

import pytest

from dsv3sim.results import CommStats, KvSizing, MemoryRow, Timeline, from_json, group
from dsv3sim.results.reading import memory_rows

DATA = Path(__file__).parent / "report" / "data" / "v3_pretrain_result.json"


def test_training_groups_round_trip_byte_identical():
    raw = json.loads(DATA.read_text())
    res = from_json(raw)
    assert isinstance(res.timeline, Timeline) and isinstance(res.memory_per_gpu[0], MemoryRow)
    assert all(isinstance(c, CommStats) for c in res.comm.values())
    out = res.to_dict()
    for k in ("memory_per_gpu", "comm", "timeline"):
        assert json.dumps(out[k]) == json.dumps(raw[k]), k


@pytest.mark.parametrize("row", [
    {"rank": 0, "weights_bytes": 5e9, "kv_cache_bytes": 7e9, "hbm_bytes": 8e10},  # decode: KV before HBM
    {"rank": 3, "weights_bytes": 1e9, "gradients_bytes": 2e9, "total_bytes": 3e9, "hbm_bytes": 8e10,
     "activation_microbatch_stages": 4},
])
def test_memory_row_keeps_order_and_reads_by_attribute(row):
    g = group(MemoryRow, row)
    assert g.to_dict() == row and list(g.to_dict()) == list(row) and g.hbm_bytes == 8e10 and g["rank"] == row["rank"]
    assert "total" not in g.components() and "hbm" not in g.components()
    assert memory_rows({"memory_per_gpu": [row]})[0].components() == g.components()


def test_unknown_key_is_not_a_group():
    assert group(MemoryRow, {"rank": 0, "grads_bytes": 1.0}) is None  # a spelling no writer uses
    assert group(KvSizing, {}) is None and group(CommStats, {"time_s": 1.0, "foo": 2}) is None
    kv = group(KvSizing, {"kv_bytes_per_token": 70272})
    assert kv.kv_bytes_per_token == 70272 and kv.kv_budget_bytes_per_gpu is None and kv.to_dict() == {
        "kv_bytes_per_token": 70272}
