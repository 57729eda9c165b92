"""`dsv3sim schedule {1f1b,zb1p,dualpipe,dualpipev} --pp P --microbatches M`: a pipeline schedule's action
lists, its published bubble formula and the simulated bubble, activation memory and parameter copies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dsv3sim.commands import _args as A

NAME = "schedule"
HELP = "pipeline schedule (1F1B, ZB1P, DualPipe, DualPipeV): action lists, bubbles, memory"
DESCRIPTION = __doc__ + """
Times are per chunk in milliseconds (DualPipe README conventions): --f forward, --b FULL backward, --w its
weight-gradient part (so an input-only backward B takes b-w), --fb an overlapped forward+backward pair
(default f+b, no overlap gain). --pp counts ranks; DualPipeV puts 2*pp stages on them. Bubbles are
makespan - busy time of a rank; bubble_simulated is the largest over ranks."""

class _Names:
    """The sorted keys of ``dsv3sim.parallel.SCHEDULES`` as argparse ``choices``, read when argparse checks a value
    or writes the usage: building the parser (every CLI start) imports neither the parallel package nor numpy
    with it, and the names have one source."""

    def _names(self) -> list[str]:
        from dsv3sim.parallel import SCHEDULES

        return sorted(SCHEDULES)

    def __iter__(self):
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __len__(self) -> int:
        return len(self._names())


NAMES = _Names()


def add_arguments(p: argparse.ArgumentParser) -> None:
    # choices set after add_argument, which formats (so iterates) any choices it is given at once
    p.add_argument("name", help="schedule").choices = NAMES
    p.add_argument("--pp", type=A.pos_int, required=True, help="pipeline ranks (devices)")
    p.add_argument("--microbatches", type=A.pos_int, required=True, help="micro-batches per step (both directions)")
    p.add_argument("--f", type=A.pos_float, default=1.0, help="forward time of one chunk, ms (default 1)")
    p.add_argument("--b", type=A.pos_float, default=2.0, help="full backward time of one chunk, ms (default 2)")
    p.add_argument("--w", type=A.nonneg_float, default=1.0, help="weight-gradient part of --b, ms (default 1)")
    p.add_argument("--fb", type=A.pos_float, default=None, help="overlapped forward+backward pair, ms (default f+b)")
    p.add_argument("--p2p-latency", type=A.nonneg_float, default=0.0, help="latency between adjacent ranks, ms")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--chrome-trace", type=A.out_path, default=None, metavar="PATH",
                   help="write a Chrome Trace Event JSON")


def compute(name: str, pp: int, microbatches: int, f: float, b: float, w: float, fb: float | None,
            p2p_latency: float = 0.0) -> tuple[dict, object]:
    from dsv3sim.config.checks import check_limit
    from dsv3sim.parallel import ChunkTimes, check, execute, generate
    from dsv3sim.parallel.formulas import (
        activation_closed_form,
        bubble_closed_form,
        closed_form_exact,
        param_copies_closed_form,
        stages,
    )

    check_limit("schedule_cells", pp * microbatches, f"pp x microbatches = {pp} x {microbatches}")
    times = ChunkTimes(f=f, b=b, w=w, fb=fb)
    try:
        s = generate(name, pp, microbatches)
    except ValueError as e:
        # too few micro-batches to fill DualPipe's two directions is a layout that cannot run: a result;
        # an odd pp or micro-batch count for the bidirectional schedule stays bad input
        too_few = name.startswith("dualpipe") and microbatches < 2 * pp
        odd = name == "dualpipe" and (pp % 2 or microbatches % 2)
        if not too_few or odd:
            raise
        return {"schedule": name, "pp": pp, "microbatches": microbatches, "infeasible": str(e)}, None
    counts = check(s)
    res = execute(s, times, p2p_latency)
    out = {
        "schedule": name, "pp": pp, "microbatches": microbatches, "stages": stages(name, pp),
        "time_unit": "ms", "times": {"f": f, "b": b, "w": w, "fb": times.pair, "p2p_latency": p2p_latency},
        "ranks": {str(r): v for r, v in s.as_strings().items()},
        "op_counts": {str(r): c for r, c in counts.items()},
        "bubble_closed_form": bubble_closed_form(name, pp, f, b, w, times.pair),
        "bubble_closed_form_exact_here": closed_form_exact(name, f, b, w, times.pair) and p2p_latency == 0,
        "bubble_simulated": res.bubble_max,
        "bubble_per_rank": [res.bubble[r] for r in sorted(res.bubble)],
        "makespan": res.makespan,
        "activation_memory": res.activation_memory_max,
        "activation_memory_per_rank": [res.activation_memory[r] for r in sorted(res.activation_memory)],
        "activation_memory_closed_form": activation_closed_form(name, pp),
        "param_copies": res.param_copies,
        "param_copies_closed_form": param_copies_closed_form(name),
        "units": {"activation_memory": "micro-batch activations of one stage",
                  "param_copies": "parameters of one stage"},
    }
    return out, res


def run(args: argparse.Namespace) -> int:
    out, res = compute(args.name, args.pp, args.microbatches, args.f, args.b, args.w, args.fb, args.p2p_latency)
    if res is None:
        print(json.dumps(out, indent=1) if args.json else f"schedule {args.name}: INFEASIBLE - {out['infeasible']}")
        return 0
    if args.chrome_trace:
        from dsv3sim.parallel.chrome import chrome_trace

        path = Path(args.chrome_trace)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(chrome_trace(res, unit_s=1e-3, name=args.name)))
        out["chrome_trace"] = str(path)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    t = out["times"]
    print(f"schedule {out['schedule']}: pp={out['pp']} ranks, {out['stages']} stages, "
          f"microbatches={out['microbatches']}")
    print(f"times (ms): F={t['f']:g} B={t['b']:g} W={t['w']:g} F&B={t['fb']:g} p2p={t['p2p_latency']:g}")
    print("ranks:")
    for r, acts in out["ranks"].items():
        print(f"  {r:>3}: " + " ".join(acts))
    exact = "exact here" if out["bubble_closed_form_exact_here"] else "approximate here"
    print(f"bubble_closed_form: {out['bubble_closed_form']:g} ms ({exact})")
    print(f"bubble_simulated:   {out['bubble_simulated']:g} ms (max over ranks; per rank "
          + " ".join(f"{x:g}" for x in out["bubble_per_rank"]) + ")")
    print(f"makespan:           {out['makespan']:g} ms")
    print(f"activation_memory:  {out['activation_memory']} (closed form {out['activation_memory_closed_form']}; "
          f"micro-batch x stage units)")
    print(f"param_copies:       {out['param_copies']} (stage units)")
    if args.chrome_trace:
        print(f"chrome trace:       {out['chrome_trace']}")
    return 0
