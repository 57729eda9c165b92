"""Written by dsv3sim validate: the step it predicted, on this machine's calibration
(topology local-cuda.calibrated.yaml, component table components.json). Reproduce: dsv3sim run /tmp/v/b2s64/scenario.py --json -"""

from pathlib import Path

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

HERE = Path(__file__).resolve().parent


def DEFAULT() -> Scenario:
    return Scenario(
        name='validate-one-layer-ep1-pp1-dp1-1f1b', model='one-layer', topology=str(HERE / 'local-cuda.calibrated.yaml'),
        parallel=ParallelDims(pp=1, dp=1, ep=1),
        workload=TrainingWorkload(
            global_batch_sequences=2, seq_len=64, micro_batch_sequences=2,
            schedule='1f1b', gemm_dtype='bf16',
            dispatch_dtype='bf16', node_limit=None, zero1=False,
            component_table=str(HERE / 'components.json')))
