"""Fuzz tests: the harness and the case generators live beside the tests (tests/fuzz/harness.py, cases.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
