"""DualPipe / DualPipeV per-rank structure against DeepSeek's reference schedule, written down as data.

Source of the expected data: deepseek-ai/DualPipe ``dualpipe/dualpipe.py`` ``DualPipe.step()`` (the eight
phase loops and their trip counts step_1..step_8) and ``images/dualpipe.png`` (README figure, 8 PP ranks,
20 micro-batches). The tables below were derived by hand from those loop counts; the pattern of each phase
is transcribed from the loop bodies. Local phase p: 0 = the rank's own direction (forward pipeline on ranks
< P/2, reverse pipeline on ranks >= P/2), chunk = p xor [rank >= P/2].
"""

from __future__ import annotations

import pytest

from dsv3sim.parallel import check, generate

# step_1..step_8 trip counts per rank, DualPipe.step() with num_ranks=8, num_chunks=20 (half_rank h =
# min(r, 7-r)): step_1=(4-h-1)*2, step_2=h+1, step_3=4-h-1, step_4=10-8+h+1, step_5=4-h-1, step_6=h+1,
# step_7=4-h-1, step_8=h+1.
STEPS_P8_M20 = {
    0: (6, 1, 3, 3, 3, 1, 3, 1),
    1: (4, 2, 2, 4, 2, 2, 2, 2),
    2: (2, 3, 1, 5, 1, 3, 1, 3),
    3: (0, 4, 0, 6, 0, 4, 0, 4),
    4: (0, 4, 0, 6, 0, 4, 0, 4),
    5: (2, 3, 1, 5, 1, 3, 1, 3),
    6: (4, 2, 2, 4, 2, 2, 2, 2),
    7: (6, 1, 3, 3, 3, 1, 3, 1),
}
# num_ranks=4, num_chunks=8
STEPS_P4_M8 = {
    0: (2, 1, 1, 1, 1, 1, 1, 1),
    1: (0, 2, 0, 2, 0, 2, 0, 2),
    2: (0, 2, 0, 2, 0, 2, 0, 2),
    3: (2, 1, 1, 1, 1, 1, 1, 1),
}
# Step 6 (nB1B0) runs its first half unsplit (full backward "BW") and its second half split ("B", W later);
# the switch point depends on half_rank parity (dualpipe.py: `if i == step_6 // 2 and half_rank % 2 == 1`
# before B1, `... % 2 == 0` between B1 and B0). Expanded by hand per half_rank:
STEP6 = {
    0: "BW1 B0",
    1: "BW1 BW0 B1 B0",
    2: "BW1 BW0 BW1 B0 B1 B0",
    3: "BW1 BW0 BW1 BW0 B1 B0 B1 B0",
}

# Opening of two rows of the README figure (images/dualpipe.png, Device 0 and Device 7), read off the image:
# the figure leaves reverse-direction micro-batches unnumbered; we fill in their counters (chunk 1).
FIGURE_DEVICE0 = ["F0.0", "F0.1", "F0.2", "F0.3", "F0.4", "F0.5", "F0.6", "F1.0", "B1.0", "W1.0", "F1.1", "B1.1", "W1.1", "F1.2", "B1.2", "W1.2", "F1.3", "F0.7&BW1.3"]
FIGURE_DEVICE7 = ["F1.0", "F1.1", "F1.2", "F1.3", "F1.4", "F1.5", "F1.6", "F0.0", "B0.0", "W0.0", "F0.1", "B0.1", "W0.1", "F0.2", "B0.2", "W0.2", "F0.3", "F1.7&BW0.3"]
FIGURE_DEVICE0_TAIL = ["B0.6", "W0.6", "B0.7", "W0.7", "B0.8", "W0.8", "B0.9", "W0.9"]


def expected_tokens(steps: tuple[int, ...], h: int, middle: bool) -> list[str]:
    """The rank's action list in local phases (``F0``, ``B1``, ``F0&BW1``, ``W``) from its trip counts."""
    s1, s2, s3, s4, s5, s6, s7, s8 = steps
    out = ["F0"] * s1
    out += ["F0", "F1"] * s2
    out += ["B1", "W", "F1"] * s3
    for i in range(s4):
        out += (["F0", "BW1"] if (i == 0 and middle) else ["F0&BW1"]) + ["F1&BW0"]
    out += ["BW1", "F1&BW0"] * s5
    assert len(STEP6[h].split()) == 2 * s6
    out += STEP6[h].split()
    out += ["W", "B0"] * s7
    out += ["W"] * s8
    return out


def local_tokens(actions: list[str], flip: int) -> list[str]:
    def tok(op: str) -> str:
        kind = op.rstrip("0123456789.")
        if kind == "W":
            return "W"
        chunk = int(op[len(kind):].split(".")[0])
        return f"{kind}{chunk ^ flip}"
    return ["&".join(tok(o) for o in a.split("&")) for a in actions]


@pytest.mark.parametrize("pp,mb,table", [(8, 20, STEPS_P8_M20), (4, 8, STEPS_P4_M8)])
def test_dualpipe_phases_match_reference_loop_counts(pp, mb, table):
    s = generate("dualpipe", pp, mb)
    for r, acts in s.as_strings().items():
        h = min(r, pp - 1 - r)
        exp = expected_tokens(table[r], h, middle=r in (pp // 2 - 1, pp // 2))
        assert local_tokens(acts, int(r >= pp // 2)) == exp, f"rank {r}"


def test_dualpipe_matches_readme_figure_rows():
    s = generate("dualpipe", 8, 20).as_strings()
    assert s[0][:len(FIGURE_DEVICE0)] == FIGURE_DEVICE0
    assert s[7][:len(FIGURE_DEVICE7)] == FIGURE_DEVICE7
    assert s[0][-len(FIGURE_DEVICE0_TAIL):] == FIGURE_DEVICE0_TAIL


def test_dualpipev_matches_readme_figure_row():
    """images/dualpipev.png (4 PP ranks, 8 stages, 10 micro-batches), Device 0: forwards 0..6 down the V,
    then (F, B, W) of micro-batches 0, 1, 2 on the way back up, F1.3, then the pair 7 & 3."""
    v = generate("dualpipev", 4, 10).as_strings()
    assert v[0][:len(FIGURE_DEVICE0)] == FIGURE_DEVICE0


def test_dualpipe_microbatch_order_and_fifo_weights():
    """Within a rank each (kind, chunk) runs micro-batches 0, 1, 2, ... in order; W's follow their B's FIFO."""
    s = generate("dualpipe", 8, 20)
    for r, acts in s.as_strings().items():
        seen: dict[tuple[str, int], list[int]] = {}
        splits, weights = [], []
        for a in acts:
            for o in a.split("&"):
                kind = o.rstrip("0123456789.")
                c, m = (int(x) for x in o[len(kind):].split("."))
                if kind in ("B", "BW"):
                    seen.setdefault(("bwd", c), []).append(m)
                else:
                    seen.setdefault((kind, c), []).append(m)
                if kind == "B":
                    splits.append((c, m))
                if kind == "W":
                    weights.append((c, m))
        for key in (("F", 0), ("F", 1), ("bwd", 0), ("bwd", 1)):
            assert seen[key] == list(range(10)), (r, key)
        assert weights == splits, r


@pytest.mark.parametrize("pp,mb", [(1, 2), (2, 4), (3, 8), (4, 10), (4, 12), (6, 13)])
def test_dualpipev_is_dualpipe_cut_in_half(pp, mb):
    """DualPipeV = the first half of DualPipe on twice the ranks and micro-batches (DualPipe README:
    'derived from DualPipe using a cut-in-half procedure'): the action strings agree rank by rank."""
    v = generate("dualpipev", pp, mb).as_strings()
    d = generate("dualpipe", 2 * pp, 2 * mb).as_strings()
    for r in range(pp):
        assert v[r] == d[r], r
    check(generate("dualpipev", pp, mb))


def test_dualpipe_rejects_what_the_reference_asserts():
    for pp, mb in [(3, 12), (4, 7), (4, 6)]:
        with pytest.raises(ValueError, match="dualpipe needs"):
            generate("dualpipe", pp, mb)
    with pytest.raises(ValueError, match="dualpipev needs"):
        generate("dualpipev", 4, 7)
