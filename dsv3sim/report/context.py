"""What every section gets besides the result: where the JSON lives, the stated price, figure ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# DeepSeek-V3 report §1 (Table 1): "assuming the rental price of the H800 GPU is $2 per GPU hour".
DEFAULT_PRICE_PER_GPU_HOUR = 2.0


@dataclass(kw_only=True, slots=True)
class RenderContext:
    base_dir: Path | None = None          # folder of the result JSON (sibling trace files resolve against it)
    chrome_trace: Path | None = None      # a real torch.profiler trace to show beside the simulated one
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    merged_trace_out: Path | None = None  # where to write simulated + real lanes as one Perfetto trace
    traces_dir: Path | None = None        # where training-imbalance series live (repo traces/)
    prefix: str = "f"
    _n: int = field(default=0)

    def fig_id(self, name: str) -> str:
        self._n += 1
        return f"{self.prefix}-{name}-{self._n}"
