"""Numbers written for people (``dsv3sim.config.units``): each prefix step and its boundary, and None."""

from __future__ import annotations

import math

import pytest

from dsv3sim.config.units import fmt_bytes, fmt_num, fmt_si, fmt_time, num


@pytest.mark.parametrize(("x", "unit", "out"), [
    (999.0, "", "999"), (1000.0, "", "1 k"), (1.5e6, "tokens/s", "1.5 Mtokens/s"), (2.5e9, "B", "2.5 GB"),
    (180e3, "", "180 k"), (-4.2e12, "FLOP", "-4.2 TFLOP"), (3e15, "", "3 P"), (3e18, "", "3e+03 P"),
    (0.5, "s", "0.5 s"), (0.0, "", "0"), (None, "", "n/a")])
def test_fmt_si(x, unit, out):
    assert fmt_si(x, unit) == out


def test_fmt_si_digits():
    assert fmt_si(123456.0, digits=5) == "123.46 k" and fmt_si(123456.0) == "123 k"


@pytest.mark.parametrize(("b", "out"), [
    (1023, "1023 B"), (1024, "1 KiB"), (70_272, "68.62 KiB"), (131.3, "131 B"),
    (141e9, "131.3 GiB"), (3 * 2 ** 40, "3 TiB"), (1.5 * 2 ** 20, "1.5 MiB"), (None, "n/a")])
def test_fmt_bytes_binary_prefixes(b, out):
    assert fmt_bytes(b) == out  # H200: 141 GB = 131.3 GiB


@pytest.mark.parametrize(("v", "out"), [(9999.4, "9999"), (10_000.0, "10,000"), (1_234_567.8, "1,234,568"),
                                        (0.012345, "0.01235"), (-25_000.0, "-25,000"), (3.0, "3")])
def test_fmt_num(v, out):
    assert fmt_num(v) == out


def test_fmt_time_and_num():
    assert [fmt_time(x) for x in (7200.0, 1.5, 2e-3, 3e-6, None)] == ["2 h", "1.5 s", "2 ms", "3 µs", "n/a"]
    assert num("12.5") == 12.5 and num(True) is None and num(math.inf) is None and num("x") is None
