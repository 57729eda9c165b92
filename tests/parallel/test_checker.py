"""Every generated schedule passes the checker for many (P, M); broken schedules are caught; actions parse."""

from __future__ import annotations

import pytest

from dsv3sim.parallel import Schedule, check, from_strings, generate, parse_action
from dsv3sim.parallel.actions import Op


def _cases():
    for p in range(1, 9):
        for m in range(1, 21):
            yield "1f1b", p, m
            yield "zb1p", p, m
            if m >= 2 * p:
                yield "dualpipev", p, m
            if p % 2 == 0 and m % 2 == 0 and m >= 2 * p:
                yield "dualpipe", p, m


def test_every_schedule_is_valid_for_many_sizes():
    n = 0
    for name, p, m in _cases():
        s = generate(name, p, m)
        counts = check(s)
        n_ops = sum(sum(c.values()) for c in counts.values())
        # each (flow, stage) runs F once and its backward once (BW) or twice (B + W)
        n_f = sum(c.get("F", 0) for c in counts.values())
        assert n_f == m * s.n_stages if name != "dualpipe" else n_f == m * p, (name, p, m)
        assert n_ops >= 2 * n_f
        n += 1
    assert n > 350


def test_paired_actions_parse_and_format():
    a = parse_action("F0.9&BW1.2")
    assert a.is_pair and a.category == "F&B" and str(a) == "F0.9&BW1.2"
    assert a.ops == (Op("F", 0, 9), Op("BW", 1, 2))
    assert str(parse_action("BW0.11")) == "BW0.11"
    assert parse_action("F0.9&B1.2").ops[1] == Op("B", 1, 2)
    for bad in ("X0.1", "F0", "F0.1&", "F0.1&B1.2&W0.1", "W0.1&F0.2", "F-1.2"):
        with pytest.raises(ValueError):
            parse_action(bad)


def _mutate(s: Schedule, rank: int, acts: list[str]) -> Schedule:
    ranks = s.as_strings()
    ranks[rank] = acts
    return from_strings(s.name, s.pp, s.microbatches, s.layout, ranks)


def test_checker_catches_broken_schedules():
    s = generate("1f1b", 4, 8)
    r0 = s.as_strings()[0]
    with pytest.raises(ValueError, match="expected F with BW"):           # a backward missing
        check(_mutate(s, 0, r0[:-1]))
    with pytest.raises(ValueError, match="more than once"):               # a forward twice
        check(_mutate(s, 0, r0 + ["F0.0"]))
    with pytest.raises(ValueError, match="deadlock"):                     # backward before its forward
        check(_mutate(s, 3, ["BW0.0", "F0.0"] + s.as_strings()[3][2:]))
    with pytest.raises(ValueError, match="out of range"):
        check(_mutate(s, 0, r0 + ["F0.8"]))
    with pytest.raises(ValueError, match="chunk"):
        check(_mutate(s, 0, r0 + ["F1.0"]))
    z = generate("zb1p", 4, 8)
    z0 = z.as_strings()[0]
    i = z0.index("W0.0")
    with pytest.raises(ValueError, match="deadlock"):                     # W before its B
        check(_mutate(z, 0, [z0[i]] + z0[:i] + z0[i + 1:]))
    d = generate("dualpipe", 4, 8)
    d1 = d.as_strings()[1]                                               # swap two ranks' orders -> deadlock
    with pytest.raises(ValueError, match="deadlock"):
        check(_mutate(d, 1, list(reversed(d1))))
