"""Workloads built on the simulator: a training step (PP x DP x EP, DualPipe) and serving (prefill, decode).

``simulate(scenario)`` dispatches on the workload kind. See NOTES.md for what is simulated event by event
and what is computed in closed form.
"""

from __future__ import annotations


def simulate(scenario):
    """Run one Scenario; returns a TrainingResult, ServingResult or Infeasible (dsv3sim.results)."""
    from dsv3sim.config.model import load_model_config
    from dsv3sim.config.scenario import AggregatedWorkload, DecodeWorkload, PrefillWorkload, TrainingWorkload
    from dsv3sim.config.topology import load_topology_config

    # the inputs themselves first: a missing or malformed model or topology is bad input (exit 2) alike;
    # a valid topology too small for the layout is an Infeasible result (workload/comm.py build_topology)
    load_model_config(scenario.model)
    load_topology_config(scenario.topology)
    w = scenario.workload
    if isinstance(w, TrainingWorkload) and w.component_table:
        from dsv3sim.workload.measured_step import simulate_measured

        return simulate_measured(scenario)
    if isinstance(w, TrainingWorkload):
        from dsv3sim.workload.training import simulate_training

        return simulate_training(scenario)
    if isinstance(w, PrefillWorkload):
        from dsv3sim.workload.prefill import simulate_prefill

        return simulate_prefill(scenario)
    if isinstance(w, DecodeWorkload):
        from dsv3sim.workload.decode import simulate_decode

        return simulate_decode(scenario)
    if isinstance(w, AggregatedWorkload):
        from dsv3sim.workload.aggregated import simulate_aggregated

        return simulate_aggregated(scenario)
    raise ValueError(f"simulate needs a training, prefill, decode or aggregated workload, got {type(w).__name__}")

