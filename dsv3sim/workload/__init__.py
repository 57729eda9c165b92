"""Workloads built on the simulator: a training step (PP x DP x EP, DualPipe) and serving (prefill, decode).

``simulate(scenario)`` dispatches on the workload kind. See NOTES.md for what is simulated event by event
and what is computed in closed form.
"""

from __future__ import annotations


def simulate(scenario):
    """Run one Scenario; returns a TrainingResult, ServingResult or Infeasible (dsv3sim.results)."""
    from dsv3sim.config.model import load_model_config
    from dsv3sim.config.scenario import TrainingWorkload
    from dsv3sim.config.topology import load_topology_config

    # the inputs themselves first: a missing or malformed model or topology is bad input (exit 2) alike;
    # a valid topology too small for the layout is an Infeasible result (workload/comm.py build_topology)
    load_model_config(scenario.model)
    load_topology_config(scenario.topology)
    if isinstance(scenario.workload, TrainingWorkload) and scenario.workload.component_table:
        from dsv3sim.workload.measured_step import simulate_measured

        return simulate_measured(scenario)
    if isinstance(scenario.workload, TrainingWorkload):
        from dsv3sim.workload.training import simulate_training

        return simulate_training(scenario)
    from dsv3sim.workload.serving import simulate_serving

    return simulate_serving(scenario)
