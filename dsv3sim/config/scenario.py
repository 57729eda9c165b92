"""Scenario: the "how" input — model x topology x parallel layout x workload x perturbations x seed.

A scenario module (``scenarios/*.py``) has functions returning a ``Scenario``; variants are derived in code
(``scenario.with_(...)``), never with CLI flags. Everything is a frozen, kw_only dataclass whose
``__post_init__`` rejects bad input with a ValueError naming every number involved (house style 10).

Workloads:
- ``TrainingWorkload``: one optimizer step of PP x DP (ZeRO-1) with EP inside the DP ranks of a stage
  (DeepSeek-V3 §3.2: PP16, EP64 spanning 8 nodes, ZeRO-1 DP, TP1).
- ``PrefillWorkload``: one prefill instance (DeepSeek-V3 §3.4.1: 32 GPUs, TP4+SP attention, DP8, EP32 MoE).
- ``DecodeWorkload``: one decode instance (DeepSeek-V3 §3.4.2: 320 GPUs, EP320, TP1/DP attention).
- ``AggregatedWorkload``: prefill and decode sharing the same GPUs with chunked prefill (SGLang/vLLM default).

Serving layouts: attention DP follows the GPU count unless set (``ParallelDims(ep=16)`` is 16 GPUs of DP16
attention; ``Scenario.n_gpus`` sets the count when given).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from dsv3sim.config import checks as ck
from dsv3sim.config.errors import ConfigError

SCHEDULES = ("dualpipe", "1f1b", "zb1p")
GEMM_DTYPES = ("fp8", "bf16")
PLACEMENTS = ("contiguous", "eplb")
LL_TRANSPORTS = ("nvlink", "rdma")


def _pos_int(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{type(obj).__name__}.{n} must be a positive integer, got {v!r}")


def _types(obj: Any, *, ints: tuple[str, ...] = (), opt_ints: tuple[str, ...] = (), nums: tuple[str, ...] = (),
           opt_nums: tuple[str, ...] = (), bools: tuple[str, ...] = (), strs: tuple[str, ...] = (),
           opt_strs: tuple[str, ...] = ()) -> None:
    """Field types (ints are ints, not 2.5 or "4"; numbers finite; booleans true/false) before any range check."""
    name = type(obj).__name__
    for n in ints:
        ck.integer(getattr(obj, n), f"{name}.{n}", strict=True)
    for n in opt_ints:
        ck.optional(ck.integer, getattr(obj, n), f"{name}.{n}", strict=True)
    for n in nums:
        ck.number(getattr(obj, n), f"{name}.{n}")
    for n in opt_nums:
        ck.optional(ck.number, getattr(obj, n), f"{name}.{n}")
    for n in bools:
        ck.boolean(getattr(obj, n), f"{name}.{n}")
    for n in strs:
        ck.string(getattr(obj, n), f"{name}.{n}")
    for n in opt_strs:
        ck.optional(ck.string, getattr(obj, n), f"{name}.{n}")


_ROUTING = {"opt_ints": ("node_limit", "routing_layers"), "ints": ("redundant_experts",),
            "strs": ("kind", "placement", "gemm_dtype", "dispatch_dtype"), "opt_strs": ("routing_trace",)}


_SERVING = {**_ROUTING, "opt_ints": _ROUTING["opt_ints"] + ("batch_per_gpu",), "bools": ("mtp",),
            "nums": ("kv_dtype_bytes", "memory_reserve_fraction"), "opt_nums": ("mtp_acceptance",),
            "strs": _ROUTING["strs"] + ("ll_transport",), "opt_strs": _ROUTING["opt_strs"] + ("mtp_acceptance_source",)}


def _check_routing(obj: Any) -> None:
    """The expert-routing fields every workload has: node limit, placement, redundant experts, routing layers."""
    name = type(obj).__name__
    if obj.node_limit is not None and obj.node_limit < 1:
        raise ConfigError(f"{name}.node_limit must be >= 1 or None, got {obj.node_limit}")
    if obj.placement not in PLACEMENTS:
        raise ConfigError(f"{name}.placement {obj.placement!r} unknown (one of {PLACEMENTS})")
    if obj.redundant_experts < 0:
        raise ConfigError(f"{name}.redundant_experts must be >= 0, got {obj.redundant_experts}")
    if obj.routing_layers is not None and obj.routing_layers < 1:
        raise ConfigError(f"{name}.routing_layers must be >= 1 or None, got {obj.routing_layers}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ParallelDims:
    """Training: world = pp * dp * tp; EP groups are ``ep`` consecutive DP ranks of one stage (ep | dp*tp).
    Serving: ``dp`` attention replicas of ``attn_tp`` GPUs each (world = dp * attn_tp), MoE EP over ``ep``."""

    pp: int = 1
    dp: int | None = None  # None: follows the GPU count, ep / (tp * attn_tp) (at least 1); see dp_follows
    tp: int = 1
    ep: int = 1
    attn_tp: int = 1
    dp_follows: bool = False  # set when dp was left unset: variants (Scenario.with_) re-derive it

    def __post_init__(self) -> None:
        if self.dp is None:
            _pos_int(self, "tp", "ep", "attn_tp")
            object.__setattr__(self, "dp", max(1, self.ep // (self.tp * self.attn_tp)))
            object.__setattr__(self, "dp_follows", True)
        _pos_int(self, "pp", "dp", "tp", "ep", "attn_tp")
        ck.check_limit("gpus", self.pp * self.dp * self.tp * self.attn_tp, "ParallelDims pp*dp*tp*attn_tp GPUs")
        n = self.dp * self.tp * self.attn_tp
        if n % self.ep:
            raise ConfigError(f"ParallelDims: ep={self.ep} must divide dp*tp*attn_tp={self.dp}*{self.tp}*{self.attn_tp}"
                             f"={n} (EP groups are made of the GPUs of one pipeline stage)")

    @property
    def world(self) -> int:
        return self.pp * self.dp * self.tp * self.attn_tp


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainingWorkload:
    kind: str = "training"
    global_batch_sequences: int = 15360  # DeepSeek-V3 §4.2: batch size ramps to 15360
    seq_len: int = 4096  # DeepSeek-V3 §4.2: 4K pre-training sequence length
    micro_batch_sequences: int = 1
    schedule: str = "dualpipe"
    gemm_dtype: str = "fp8"  # DeepSeek-V3 §3.3: Fprop, Dgrad, Wgrad of linear layers in FP8
    dispatch_dtype: str = "fp8"  # DeepSeek-V3 §3.3.3: dispatch activations quantised to FP8, combine BF16
    node_limit: int | None = 4  # DeepSeek-V3 §2.1.2: each token to at most M=4 nodes
    zero1: bool = True
    routing_trace: str | None = None  # path of a routing trace; None = uniform node-limited routing
    placement: str = "contiguous"  # "eplb": rebalance experts with the trace's loads
    redundant_experts: int = 0
    routing_layers: int | None = None  # distinct MoE-layer routings simulated (layer j uses j mod R); None: see
    #   workload/layer_routing.py (every layer of a trace file; 1 for uniform or synth: routing)
    optimizer_overlap: bool = False  # what-if: ZeRO-1 reduce-scatter per chunk under the cool-down, all-gather under the warm-up
    recompute: bool = True  # DeepSeek-V3 §3.2.3: RMSNorm and MLA up-projections recomputed in backward
    component_table: str | None = None  # measured component table of a calibrated machine (dsv3sim validate):
    #   the step is composed from it (workload/measured_step.py) instead of GPU kernel tables

    def __post_init__(self) -> None:
        _types(self, bools=("zero1", "optimizer_overlap", "recompute"),
               **{**_ROUTING, "strs": _ROUTING["strs"] + ("schedule",),
                  "opt_strs": _ROUTING["opt_strs"] + ("component_table",)})
        _pos_int(self, "global_batch_sequences", "seq_len", "micro_batch_sequences")
        # the measured-table step (workload/measured_step.py) executes every schedule dsv3sim.parallel generates
        if self.schedule not in SCHEDULES and not (self.component_table and self.schedule == "dualpipev"):
            raise ConfigError(f"TrainingWorkload.schedule {self.schedule!r} unknown (one of {', '.join(SCHEDULES)})")
        for n in ("gemm_dtype", "dispatch_dtype"):
            if getattr(self, n) not in GEMM_DTYPES:
                raise ConfigError(f"TrainingWorkload.{n} {getattr(self, n)!r} must be one of {GEMM_DTYPES}")
        _check_routing(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class PrefillWorkload:
    kind: str = "prefill"
    prompt_len: int = 4096  # deepseek-ai/profile-data: prefill profile at 4K prompts
    tokens_per_gpu: int = 16384  # profile-data: 16K tokens per GPU
    micro_batches: int = 2  # two micro-batches overlap computation with all-to-all (V3 §3.4.1)
    gemm_dtype: str = "fp8"
    dispatch_dtype: str = "fp8"
    node_limit: int | None = 4
    routing_trace: str | None = None
    placement: str = "contiguous"
    redundant_experts: int = 0  # V3 §3.4.1: 32 redundant experts in prefill
    routing_layers: int | None = None  # distinct MoE-layer routings simulated (layer j uses j mod R); None: see
    #   workload/layer_routing.py (every layer of a trace file; 1 for uniform or synth: routing)
    cache_hit_rate: float = 0.0  # fraction of each prompt found in the KV cache (Day 6: 56.3 %); tokens_per_gpu
    #   counts computed tokens, which attend to the cached prefix too
    prompt_len_cv: float = 0.0  # coefficient of variation of prompt lengths (prompt_len is their mean): 0 fixed,
    #   1 exponential (workload/prompt_lengths.py: attention costs the token-weighted mean over the lengths)
    comm_sms: int | None = None  # SMs DeepEP's normal kernels hold while overlapped (None: the topology's;
    #   DeepSeek's prefill profile: 24 of 132, profile-data README figure)

    def __post_init__(self) -> None:
        _types(self, **_ROUTING)
        _pos_int(self, "prompt_len", "tokens_per_gpu", "micro_batches")
        if self.comm_sms is not None:
            ck.integer(self.comm_sms, "PrefillWorkload.comm_sms", lo=0, strict=True)
        ck.number(self.prompt_len_cv, "PrefillWorkload.prompt_len_cv", lo=0.0, hi=4.0)
        ck.number(self.cache_hit_rate, "PrefillWorkload.cache_hit_rate")
        if not 0 <= self.cache_hit_rate < 1:
            raise ConfigError(f"PrefillWorkload.cache_hit_rate must be in [0, 1), got {self.cache_hit_rate}")
        for n in ("gemm_dtype", "dispatch_dtype"):
            if getattr(self, n) not in GEMM_DTYPES:
                raise ConfigError(f"PrefillWorkload.{n} {getattr(self, n)!r} must be one of {GEMM_DTYPES}")
        _check_routing(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeWorkload:
    kind: str = "decode"
    context_len: int = 4096  # mean context of a decoding request (profile-data decode: 4K prompts)
    output_len: int = 1024  # tokens generated per request (for request-level figures)
    batch_per_gpu: int | None = 128  # profile-data decode: 128 requests per GPU; None = as many as KV allows
    micro_batches: int = 2
    gemm_dtype: str = "fp8"
    dispatch_dtype: str = "fp8"
    kv_dtype_bytes: float = 2.0  # BF16 latent cache (FlashMLA)
    mtp: bool = True  # V3 §5.4.3: MTP module reused for speculative decoding
    mtp_acceptance: float | None = None  # None: DeepSeek-V3 §5.4.3 85-90 % midpoint (workload/serving.py)
    node_limit: int | None = 4
    routing_trace: str | None = None
    placement: str = "contiguous"
    redundant_experts: int = 0  # V3 §3.4.2: 32 redundant experts in decoding (we keep 1 expert per GPU)
    routing_layers: int | None = None  # distinct MoE-layer routings simulated (layer j uses j mod R); None: see
    #   workload/layer_routing.py (every layer of a trace file; 1 for uniform or synth: routing)
    memory_reserve_fraction: float = 0.1  # HBM kept free for activations/workspace/fragmentation (vLLM default 0.9 util)
    mtp_acceptance_source: str | None = None  # citation of a scenario's mtp_acceptance (default: "scenario")
    ll_transport: str = "nvlink"  # DeepEP low-latency all-to-all inside a node: "nvlink" or "rdma" (pure RDMA)

    def __post_init__(self) -> None:
        _types(self, **_SERVING)
        _pos_int(self, "context_len", "output_len", "micro_batches")
        if self.ll_transport not in LL_TRANSPORTS:
            raise ConfigError(f"DecodeWorkload.ll_transport {self.ll_transport!r} unknown (one of {LL_TRANSPORTS})")
        if self.batch_per_gpu is not None and self.batch_per_gpu < 1:
            raise ConfigError(f"DecodeWorkload.batch_per_gpu must be >= 1 or None, got {self.batch_per_gpu}")
        if self.mtp_acceptance is not None and not 0 <= self.mtp_acceptance <= 1:
            raise ConfigError(f"DecodeWorkload.mtp_acceptance must be in [0, 1], got {self.mtp_acceptance}")
        if not 0 <= self.memory_reserve_fraction < 1:
            raise ConfigError(f"DecodeWorkload.memory_reserve_fraction must be in [0, 1), got "
                             f"{self.memory_reserve_fraction}")
        if self.kv_dtype_bytes <= 0:
            raise ConfigError(f"DecodeWorkload.kv_dtype_bytes must be > 0, got {self.kv_dtype_bytes}")
        _check_routing(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class AggregatedWorkload:
    """Prefill and decode on the same GPUs (SGLang / vLLM default): every iteration runs the decode batch plus
    up to ``chunk_tokens`` prompt tokens per GPU (chunked prefill). Steady state: prompts are prefilled as fast
    as requests finish (``batch_per_gpu`` decoding requests, ``output_len`` tokens each). Model:
    workload/aggregated.py."""

    kind: str = "aggregated"
    prompt_len: int = 4000
    output_len: int = 1000
    batch_per_gpu: int | None = 64  # concurrent decoding requests per GPU; None: as many as the KV cache holds
    chunk_tokens: int = 8192  # prompt tokens per GPU per iteration (SGLang chunked_prefill_size default 8192)
    cache_hit_rate: float = 0.0  # fraction of prompt tokens found in the prefix/KV cache (not computed)
    micro_batches: int = 1
    gemm_dtype: str = "fp8"
    dispatch_dtype: str = "fp8"
    kv_dtype_bytes: float = 2.0
    mtp: bool = False
    mtp_acceptance: float | None = None
    mtp_acceptance_source: str | None = None
    node_limit: int | None = 4
    routing_trace: str | None = None
    placement: str = "contiguous"
    redundant_experts: int = 0
    routing_layers: int | None = None
    memory_reserve_fraction: float = 0.1
    ll_transport: str = "nvlink"

    def __post_init__(self) -> None:
        _types(self, **{**_SERVING, "nums": _SERVING["nums"] + ("cache_hit_rate",)})
        _pos_int(self, "prompt_len", "output_len", "chunk_tokens", "micro_batches")
        if self.batch_per_gpu is not None and self.batch_per_gpu < 1:
            raise ConfigError(f"AggregatedWorkload.batch_per_gpu must be >= 1 or None, got {self.batch_per_gpu}")
        if not 0 <= self.cache_hit_rate < 1:
            raise ConfigError(f"AggregatedWorkload.cache_hit_rate must be in [0, 1), got {self.cache_hit_rate}")
        if self.mtp_acceptance is not None and not 0 <= self.mtp_acceptance <= 1:
            raise ConfigError(f"AggregatedWorkload.mtp_acceptance must be in [0, 1], got {self.mtp_acceptance}")
        if self.gemm_dtype not in GEMM_DTYPES or self.dispatch_dtype not in GEMM_DTYPES:
            raise ConfigError(f"AggregatedWorkload: dtypes must be in {GEMM_DTYPES}, got {self.gemm_dtype!r}, "
                             f"{self.dispatch_dtype!r}")
        if self.ll_transport not in LL_TRANSPORTS:
            raise ConfigError(f"AggregatedWorkload.ll_transport {self.ll_transport!r} unknown (one of {LL_TRANSPORTS})")
        if not 0 <= self.memory_reserve_fraction < 1:
            raise ConfigError(f"AggregatedWorkload.memory_reserve_fraction must be in [0, 1), got "
                             f"{self.memory_reserve_fraction}")
        _check_routing(self)


Workload = TrainingWorkload | PrefillWorkload | DecodeWorkload | AggregatedWorkload


@dataclass(frozen=True, kw_only=True, slots=True)
class Perturbation:
    """What-ifs applied to the topology/GPUs: scaled link classes, one straggler GPU, one degraded link."""

    nic_bandwidth_scale: float = 1.0  # IB halved (0.5) / doubled (2.0)
    nvlink_bandwidth_scale: float = 1.0
    straggler_gpu: int | None = None
    straggler_slowdown: float = 1.0  # compute of that GPU takes this many times longer
    degraded_link: str | None = None  # Link name as in Topology.links (e.g. "nic:0.0->leaf:0.0")
    degraded_fraction: float = 1.0  # that link keeps this fraction of its capacity

    def __post_init__(self) -> None:
        _types(self, nums=("nic_bandwidth_scale", "nvlink_bandwidth_scale", "straggler_slowdown", "degraded_fraction"),
               opt_ints=("straggler_gpu",), opt_strs=("degraded_link",))
        for n in ("nic_bandwidth_scale", "nvlink_bandwidth_scale"):
            if not getattr(self, n) > 0:
                raise ConfigError(f"Perturbation.{n} must be > 0, got {getattr(self, n)}")
        if self.straggler_slowdown < 1:
            raise ConfigError(f"Perturbation.straggler_slowdown must be >= 1, got {self.straggler_slowdown}")
        if not 0 < self.degraded_fraction <= 1:
            raise ConfigError(f"Perturbation.degraded_fraction must be in (0, 1], got {self.degraded_fraction}")
        if self.straggler_gpu is not None and self.straggler_gpu < 0:
            raise ConfigError(f"Perturbation.straggler_gpu must be >= 0, got {self.straggler_gpu}")

    @property
    def is_identity(self) -> bool:
        return (self.nic_bandwidth_scale == 1 and self.nvlink_bandwidth_scale == 1 and self.straggler_gpu is None
                and self.degraded_link is None)


def _tokens_per_rank(w: Workload) -> int:
    """Tokens one rank routes per micro-batch (what an EP all-to-all plan holds per rank)."""
    if isinstance(w, TrainingWorkload):
        return w.micro_batch_sequences * w.seq_len
    if isinstance(w, PrefillWorkload):
        return -(-w.tokens_per_gpu // w.micro_batches)
    if isinstance(w, AggregatedWorkload):
        return w.chunk_tokens + (w.batch_per_gpu or 0)
    return w.batch_per_gpu or 0  # decode: a batch of None is sized from HBM, bounded by it


@dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    name: str
    model: str = "deepseek-v3"  # name in model/ or a path
    topology: str = "h800-deepseek"  # name in topologies/ or a path
    gpu: str | None = None  # override the topology's GPU (e.g. "H200" on the same network)
    n_gpus: int | None = None  # GPUs used (default: parallel.world); must fit in the topology
    parallel: ParallelDims = field(default_factory=ParallelDims)
    workload: Workload = field(default_factory=TrainingWorkload)
    perturb: Perturbation = field(default_factory=Perturbation)
    seed: int = 0
    description: str = ""
    sources: tuple[str, ...] = ()
    fast: bool = True  # aggregate symmetric EP groups/ranks exactly (see workload/NOTES.md)
    comm_model: str = "sim"  # EP all-to-all: "sim" (event simulation) or "bound" (busiest-link bound, sweeps)
    record: bool = True  # keep per-slice timelines (sweeps turn it off)

    def __post_init__(self) -> None:
        ck.string(self.name, "Scenario.name", empty=False)
        _types(self, strs=("model", "topology", "description", "comm_model"), opt_strs=("gpu",), ints=("seed",),
               opt_ints=("n_gpus",), bools=("fast", "record"))
        if not isinstance(self.parallel, ParallelDims) or not isinstance(self.perturb, Perturbation):
            raise ConfigError(f"Scenario {self.name}: parallel must be a ParallelDims and perturb a Perturbation, "  # noqa: TRY004
                             f"got {type(self.parallel).__name__}, {type(self.perturb).__name__}")
        if self.seed < 0:
            raise ConfigError(f"Scenario {self.name}: seed must be >= 0, got {self.seed}")
        ck.check_limit("gpus", self.parallel.world, f"Scenario {self.name}: pp*dp*tp*attn_tp GPUs")
        if self.comm_model not in ("sim", "bound"):
            raise ConfigError(f"Scenario.comm_model must be 'sim' or 'bound', got {self.comm_model!r}")
        if not isinstance(self.workload, (TrainingWorkload, PrefillWorkload, DecodeWorkload, AggregatedWorkload)):
            raise ConfigError(f"Scenario.workload must be a Training/Prefill/Decode/AggregatedWorkload, got "  # noqa: TRY004
                             f"{type(self.workload).__name__}")
        p = self.parallel
        if self.n_gpus is not None and p.dp_follows and self.n_gpus != p.world:
            per = p.pp * p.tp * p.attn_tp
            if self.n_gpus % per or (self.n_gpus // per) * p.tp * p.attn_tp % p.ep:
                raise ConfigError(f"Scenario {self.name}: n_gpus={self.n_gpus} is not pp*tp*attn_tp={per} times a DP "
                                 f"degree that ep={p.ep} divides")
            object.__setattr__(self, "parallel", replace(p, dp=self.n_gpus // per))
        if self.n_gpus is not None and self.n_gpus != self.parallel.world:
            raise ConfigError(f"Scenario {self.name}: n_gpus={self.n_gpus} != pp*dp*tp*attn_tp="
                             f"{self.parallel.pp}*{self.parallel.dp}*{self.parallel.tp}*{self.parallel.attn_tp}="
                             f"{self.parallel.world}")
        w = self.workload
        p = self.parallel
        ck.check_limit("comm_tokens", _tokens_per_rank(w) * p.ep,
                       f"Scenario {self.name}: routed tokens per micro-batch of one EP group (tokens per rank "
                       f"{_tokens_per_rank(w):,} x ep {p.ep})")
        if isinstance(w, TrainingWorkload):
            if w.global_batch_sequences % (p.dp * w.micro_batch_sequences):
                raise ConfigError(f"Scenario {self.name}: global_batch_sequences={w.global_batch_sequences} is not a "
                                 f"multiple of dp*micro_batch_sequences={p.dp}*{w.micro_batch_sequences}")
            ck.check_limit("schedule_cells", p.pp * self.microbatches,
                           f"Scenario {self.name}: pp x micro-batches = {p.pp} x {self.microbatches}")
            if w.schedule == "dualpipe" and (p.pp % 2 or self.microbatches % 2):
                raise ConfigError(f"Scenario {self.name}: DualPipe needs an even pp and an even number of "
                                 f"micro-batches, got pp={p.pp}, micro-batches={self.microbatches}")

    @property
    def microbatches(self) -> int:
        w = self.workload
        assert isinstance(w, TrainingWorkload)
        return w.global_batch_sequences // (self.parallel.dp * w.micro_batch_sequences)

    def with_(self, **changes: Any) -> Scenario:
        """A variant; ``workload=dict(...)``/``parallel=dict(...)``/``perturb=dict(...)`` update fields."""
        for k in ("workload", "parallel", "perturb"):
            if isinstance(changes.get(k), dict):
                if k == "parallel" and "dp" in changes[k]:
                    changes[k] = {**changes[k], "dp_follows": False}  # None re-derives (and sets it) in post_init
                elif k == "parallel" and self.parallel.dp_follows:
                    changes[k] = {**changes[k], "dp": None}
                changes[k] = replace(getattr(self, k), **changes[k])
        return replace(self, **changes)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)
