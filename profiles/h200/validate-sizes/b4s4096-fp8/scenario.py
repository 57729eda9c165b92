"""Written by dsv3sim validate: the step it predicted, on this machine's calibration
(topology local-cuda.calibrated.yaml, component table components.json). Reproduce: dsv3sim run /tmp/v/b4s4096-fp8/scenario.py --json -"""

from pathlib import Path

from dsv3sim.config.scenario import ParallelDims, Scenario, TrainingWorkload

HERE = Path(__file__).resolve().parent


def DEFAULT() -> Scenario:
    return Scenario(
        name='validate-one-layer-ep1-pp1-dp1-1f1b', model='one-layer', topology=str(HERE / 'local-cuda.calibrated.yaml'),
        parallel=ParallelDims(pp=1, dp=1, ep=1),
        workload=TrainingWorkload(
            global_batch_sequences=4, seq_len=4096, micro_batch_sequences=4,
            schedule='1f1b', gemm_dtype='fp8',
            dispatch_dtype='fp8', node_limit=None, zero1=False,
            component_table=str(HERE / 'components.json')))
