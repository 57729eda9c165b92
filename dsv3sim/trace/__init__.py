"""Routing traces: capture from dsv3sim.nn, synthesise, import EPLB / SGLang loads, statistics.

Public loaders for other subpackages (see FORMAT.md):
    load_trace(path) -> RoutingTrace      .npz trace, EPLB .json or SGLang .pt
    load_loads(path) -> ndarray[layers, experts]
Only capture.py imports torch (and read_sglang_pt, lazily).
"""

from __future__ import annotations

from dsv3sim.trace.importers import load_loads, load_trace, read_eplb_json, write_eplb_json
from dsv3sim.trace.layout import EpLayout
from dsv3sim.trace.routing_trace import RoutingTrace, read_npz_trace, save_trace
from dsv3sim.trace.stats import trace_stats

__all__ = ["EpLayout", "RoutingTrace", "load_loads", "load_trace", "read_eplb_json", "read_npz_trace",
           "save_trace", "trace_stats", "write_eplb_json"]
