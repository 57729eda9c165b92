"""A day of serving on a fleet: from per-node capacity (what the simulator gives) to per-node averages.

DeepSeek's Day-6 per-node figures are 24-hour averages: the day's tokens over the node-hours spent
(deepseek-ai/open-infra-index Day 6: 608B input tokens, 168B output tokens, 226.75 nodes on average).
A node is not busy all day, so capacity overstates them. With the day's token totals T_in, T_out, the
fleet's average node count N and the simulator's capacities C_p (input tokens/s per prefill node, cache hits
counted) and C_d (output tokens/s per decode node):

    nodes needed  n_p = T_in / (day x C_p),  n_d = T_out / (day x C_d)
    utilisation   u = (n_p + n_d) / N     (both pools equally loaded: the assumption)
    average per node  = capacity x u

No figure is fitted: u follows from the totals and the node count, not from the per-node averages.
"""

from __future__ import annotations

from dsv3sim.config.errors import ConfigError

DAY_S = 86_400.0


def fleet_average(*, prefill_capacity_per_node: float, decode_capacity_per_node: float, input_tokens: float,
                  output_tokens: float, mean_nodes: float, period_s: float = DAY_S) -> dict:
    """Average per-node throughputs of a fleet serving ``input_tokens`` / ``output_tokens`` in ``period_s``
    on ``mean_nodes`` nodes (see the module docstring)."""
    for name, v in (("prefill_capacity_per_node", prefill_capacity_per_node),
                    ("decode_capacity_per_node", decode_capacity_per_node), ("mean_nodes", mean_nodes),
                    ("period_s", period_s)):
        if not v > 0:
            raise ConfigError(f"fleet_average: {name} must be > 0, got {v}")
    n_p = input_tokens / period_s / prefill_capacity_per_node
    n_d = output_tokens / period_s / decode_capacity_per_node
    u = (n_p + n_d) / mean_nodes
    return {"prefill_nodes_needed": n_p, "decode_nodes_needed": n_d, "utilisation": u,
            "prefill_tokens_per_s_per_node_average": prefill_capacity_per_node * u,
            "decode_tokens_per_s_per_node_average": decode_capacity_per_node * u,
            "infeasible": u > 1.0}
