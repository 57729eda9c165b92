"""tests/trace: one torch thread (the test machine is shared; oversubscribed OpenMP threads spin)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
