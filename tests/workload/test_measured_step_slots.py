"""The measured step executes a schedule's overlapped pairs as the validated run does: one op after the other."""

from __future__ import annotations

from dsv3sim.parallel import execute, generate
from dsv3sim.workload.measured_step import _one_op_per_slot


def test_pairs_become_their_ops_in_order():
    s = generate("dualpipe", 2, 4)
    split = _one_op_per_slot(s)
    for r, acts in s.actions.items():
        assert [str(o) for a in acts for o in a.ops] == [str(a) for a in split.actions[r]]
        assert not any(a.is_pair for a in split.actions[r])
    one = generate("1f1b", 2, 4)
    assert _one_op_per_slot(one) is one  # nothing to split


def test_a_split_pair_starts_its_forward_before_the_backwards_gradient_arrives():
    s = generate("dualpipe", 2, 4)

    def t(rank: int, action) -> float:  # rank 1 is slower: rank 0's pair waits for its gradient
        return sum((1.0 if o.kind == "F" else 2.0) * (1.5 if rank == 1 else 1.0) for o in action.ops)
    paired, split = execute(s, t), execute(_one_op_per_slot(s), t)
    first_pair = next(i for i, a in enumerate(s.actions[0]) if a.is_pair)
    fwd = str(s.actions[0][first_pair].ops[0])
    start_paired = paired.spans[0][first_pair].start
    start_split = next(sp.start for sp in split.spans[0] if sp.action == fwd)
    assert start_split < start_paired
