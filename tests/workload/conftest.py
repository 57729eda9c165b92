from __future__ import annotations

import pytest

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload


@pytest.fixture(scope="module")
def small_training() -> Scenario:
    """DeepSeek-V2-Lite on 32 H800 (PP2 x DP16, EP16 over 2 nodes), short sequences: seconds to simulate."""
    return Scenario(name="small", model="deepseek-v2-lite", topology="h800-deepseek",
                    parallel=ParallelDims(pp=2, dp=16, ep=16),
                    workload=TrainingWorkload(global_batch_sequences=128, seq_len=256, micro_batch_sequences=1,
                                              schedule="dualpipe", node_limit=2),
                    comm_model="bound")
