"""Results of simulations: frozen dataclasses, JSON round trip.

The report (``dsv3sim.report``) renders from this JSON only (house style 13). Top-level keys of a training
result: ``step_time_s``, ``breakdown_s`` (forward_s, backward_input_s, weight_grad_s, backward_full_s,
overlapped_forward_backward_s, bubble_s, dp_comm_exposed_s, optimizer_s), ``step_breakdown_s`` (DeepSeek's
terms, ISCA'25 Table 4: 1F, 1B, 1W, 1F1B, bubble, opt; they add up to the step), ``mfu`` (= ``mfu_causal``),
``mfu_noncausal``, ``pair_slices_s`` (the overlapped pair with the most MoE layers, per-layer slice seconds),
``tokens_per_s``,
``gpu_hours_per_trillion_tokens``, ``memory_per_gpu`` (one row per PP rank, bytes by component),
``ib_utilisation``, ``nvlink_utilisation``, ``link_utilisation`` (``LinkUtilisation``: t_s, by_class, by_node,
average), ``exposed_communication_s``, ``expert_load_before``/``expert_load_after`` (per GPU), ``nodes_per_token``
(``NodesPerToken``: hist, node_limit, routing_layers, n_group), ``timeline`` ({events: [{rank, stream, name,
start_s, end_s, ...}]}), ``validation`` (rows).
Serving results: ``prefill_tokens_per_s_per_node``, ``decode_tokens_per_s_per_node``, ``ttft_s``, ``tpot_s``,
``kv_*``. ``Infeasible`` keeps the scenario and its reason (``infeasible``). Sweeps: ``{"sweep": [rows]}``.

The Chrome trace of a result (Trace Event Format) is written and read in ``results.trace_events``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from dsv3sim.config.errors import ConfigError

SCHEMA = "dsv3sim.result/1"


@dataclass(frozen=True, kw_only=True, slots=True)
class NodesPerToken:
    """Distinct nodes a token's top-k experts reach (V3 §2.1.2 node-limited routing): ``hist[i]`` counts tokens
    reaching i + 1 nodes, over ``routing_layers`` MoE layers; ``node_limit`` M (None: not limited)."""

    hist: list
    node_limit: int | None
    routing_layers: int = 0  # (results written before these two fields: 0 and 1)
    n_group: int = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkUtilisation:
    """Fraction of each link's bandwidth in use over the step on the shared time axis ``t_s``: the mean over the
    links of each class (``by_class``: {class: [u]}), per node and class (``by_node``: {node: {class: [u]}}) and
    the step average per class (``average``)."""

    t_s: list
    by_class: dict
    by_node: dict = field(default_factory=dict)
    average: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Ordered(Mapping):
    """A typed group whose keys differ by workload: the fields it was given (``given``, in the producer's order)
    are its JSON, the others stay None and are left out. Read by attribute; as a read-only mapping of the given
    fields too, so code written against the dict keeps working."""

    given: tuple = field(default=(), repr=False, compare=False)

    @classmethod
    def of(cls, v: dict):
        return cls(**v, given=tuple(v))

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.given}

    def __getitem__(self, k: str):
        if k not in self.given:
            raise KeyError(k)
        return getattr(self, k)

    def __iter__(self):
        return iter(self.given)

    def __len__(self) -> int:
        return len(self.given)


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline(Ordered):
    """Simulated slices: ``events`` [{rank, stream, name, start_s, end_s, ...}] (the Chrome trace's source)."""

    events: list | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryRow(Ordered):
    """Bytes per GPU of one pipeline rank by component (``*_bytes``), its ``total_bytes`` and the GPU's HBM."""

    rank: int | None = None
    weights_bytes: float | None = None
    gradients_bytes: float | None = None
    master_weights_bytes: float | None = None
    optimizer_moments_bytes: float | None = None
    activations_bytes: float | None = None
    kv_cache_bytes: float | None = None
    total_bytes: float | None = None
    hbm_bytes: float | None = None
    activation_microbatch_stages: float | None = None

    def components(self) -> dict[str, float]:
        """{component: bytes} in the producer's order: every ``*_bytes`` but the total and the HBM."""
        return {k.removesuffix("_bytes"): getattr(self, k) for k in self.given
                if k.endswith("_bytes") and k not in ("total_bytes", "hbm_bytes") and getattr(self, k) is not None}


@dataclass(frozen=True, kw_only=True, slots=True)
class KvSizing(Ordered):
    """KV-cache sizing of a serving step: bytes per token (every workload), and for decode / aggregated the
    budget per GPU, the memory the batch uses, the batch it allows at ``context_len`` and other models' capacity."""

    kv_bytes_per_token: float | None = None
    kv_budget_bytes_per_gpu: float | None = None
    kv_memory_bytes: float | None = None
    max_batch_at_context: int | None = None
    context_len: int | None = None
    kv_layers_fraction: float | None = None
    kv_compare_models: dict | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CommStats(Ordered):
    """One all-to-all of one micro-batch (``comm`` maps its name to one): time, bytes by link class, how it was
    computed (``method``: event simulation or busiest-link bound) and, simulated, bandwidths and the busiest link."""

    kind: str | None = None
    mode: str | None = None
    n_ranks: int | None = None
    time_s: float | None = None
    rdma_GBps: float | None = None
    nvlink_GBps: float | None = None
    deepep_rdma_GBps: float | None = None
    deepep_nvlink_GBps: float | None = None
    bytes_by_class: dict | None = None
    busiest_link: str | None = None
    busiest_link_class: str | None = None
    busiest_link_utilisation: float | None = None
    n_flows: int | None = None
    n_events: int | None = None
    tokens_dispatched: int | None = None
    tokens_combined: int | None = None
    bytes_sent: float | None = None
    bytes_received: float | None = None
    n_groups: int | None = None
    groups_simulated: int | None = None
    comm_sms: int | None = None
    transport: str | None = None
    method: str | None = None


def group(cls, v, strict: bool = False):
    """``v`` as the typed group ``cls`` when it is one or a dict of its fields (those with defaults may be
    missing), else None (absent, or the empty dict a step that was not simulated writes). Readers of foreign JSON
    get None for a dict with keys the class does not declare; producers (``strict``) get a TypeError naming them,
    so a new key is declared here rather than silently dropping the group from the report."""
    if isinstance(v, cls):
        return v
    if not isinstance(v, dict) or not v:
        return None
    names = {f.name for f in fields(cls)} - {"given"}
    unknown = set(v) - names
    if unknown and not strict:
        return None
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}: declare them in dsv3sim.results")
    if issubclass(cls, Ordered):
        return cls.of(v)
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    return cls(**v) if required <= set(v) else None


def _typed_groups(obj, **groups) -> None:
    """In a frozen result's ``__post_init__``: each named field's dict becomes its typed group (kept as it is when
    it does not match); ``memory_per_gpu`` rows and ``comm`` entries each become one (all of them, or none)."""
    for name, cls in groups.items():
        g = group(cls, getattr(obj, name), strict=True)
        if g is not None:
            object.__setattr__(obj, name, g)
    rows = [group(MemoryRow, r, strict=True) for r in obj.memory_per_gpu]
    if rows and None not in rows:
        object.__setattr__(obj, "memory_per_gpu", rows)
    comm = {k: group(CommStats, v, strict=True) for k, v in obj.comm.items()} if isinstance(obj.comm, dict) else {}
    if comm and None not in comm.values():
        object.__setattr__(obj, "comm", comm)


@dataclass(frozen=True, kw_only=True, slots=True)
class Infeasible:
    scenario: str
    kind: str
    reason: str

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "type": "infeasible", "scenario": self.scenario, "kind": self.kind,
                "infeasible": self.reason}


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainingResult:
    scenario: str
    model: str
    topology: str
    gpu: str
    n_gpus: int
    parallel: dict
    step_time_s: float
    breakdown_s: dict
    mfu: float
    tokens_per_s: float
    tokens_per_step: int
    gpu_hours_per_trillion_tokens: float
    train_flops_per_token: float
    memory_per_gpu: list  # of MemoryRow (dicts until typed)
    link_utilisation: LinkUtilisation | dict  # {} when the step was not simulated (a measured-table prediction)
    ib_utilisation: float
    nvlink_utilisation: float
    exposed_communication_s: float
    expert_load_before: list
    expert_load_after: list
    expert_load_logical: list
    nodes_per_token: NodesPerToken | dict  # {} when the step was not simulated
    comm: dict  # {collective: CommStats}
    chunk_times_s: dict
    timeline: Timeline | dict
    pipeline: dict
    sources: tuple = ()
    sim_wall_s: float = 0.0
    validation: dict = field(default_factory=dict)
    kind: str = "training"
    step_breakdown_s: dict = field(default_factory=dict)  # DeepSeek's terms: 1F, 1B, 1W, 1F1B, bubble, opt
    mfu_causal: float = 0.0
    mfu_noncausal: float = 0.0  # full S x S attention FLOPs (DeepSeek's non-causal TFLOPS)
    pair_slices_s: dict = field(default_factory=dict)  # {pair_s, rank, action, per_layer_s: {slice: s}}
    breakdown_cpu_s: dict = field(default_factory=dict)  # measured-table step on a CPU: compute's CPU seconds

    def __post_init__(self) -> None:
        _typed_groups(self, link_utilisation=LinkUtilisation, nodes_per_token=NodesPerToken, timeline=Timeline)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "type": "training", **_plain(_fields(self))}


@dataclass(frozen=True, kw_only=True, slots=True)
class ServingResult:
    scenario: str
    kind: str  # "prefill" | "decode"
    model: str
    topology: str
    gpu: str
    n_gpus: int
    n_nodes: float
    parallel: dict
    metrics: dict  # prefill_tokens_per_s_per_node / decode_tokens_per_s_per_node, ttft_s / tpot_s, ...
    layer_time_s: dict  # per-layer slice times of one micro-batch
    kv: KvSizing | dict  # KV sizing: bytes per token, budget, max batch, contexts
    memory_per_gpu: list  # of MemoryRow (dicts until typed)
    expert_load_before: list
    expert_load_after: list
    nodes_per_token: NodesPerToken | dict
    comm: dict  # {collective: CommStats}
    timeline: Timeline | dict
    sources: tuple = ()
    sim_wall_s: float = 0.0
    expert_load_logical: list = ()
    validation: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _typed_groups(self, nodes_per_token=NodesPerToken, timeline=Timeline, kv=KvSizing)

    def to_dict(self) -> dict:
        d = _plain(_fields(self))
        return {"schema": SCHEMA, "type": "serving", **d, **d["metrics"]}


Result = TrainingResult | ServingResult | Infeasible


def _fields(obj) -> dict:
    """A result's fields by name (typed groups still typed; ``_plain`` writes them)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _plain(x: Any) -> Any:
    """JSON-safe copy: typed groups -> their dicts, tuples -> lists, numpy scalars -> Python, non-finite floats
    -> None."""
    if isinstance(x, Ordered):
        return _plain(x.to_dict())
    if is_dataclass(x) and not isinstance(x, type):
        return _plain(_fields(x))
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def to_json(result: Result | dict) -> dict:
    return result if isinstance(result, dict) else result.to_dict()


def from_json(d: dict) -> Result:
    """Rebuild a Result from ``to_json`` output (extra keys such as flattened metrics are ignored)."""
    t = d.get("type")
    if t == "infeasible" or ("infeasible" in d and t is None):
        return Infeasible(scenario=d.get("scenario", ""), kind=d.get("kind", ""), reason=d["infeasible"])
    cls = {"training": TrainingResult, "serving": ServingResult}.get(t)
    if cls is None:
        raise ConfigError(f"not a dsv3sim result (type={t!r}, schema={d.get('schema')!r})")
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in d.items() if k in names}
    if "sources" in kw:
        kw["sources"] = tuple(kw["sources"])
    return cls(**kw)


def save_json(results: Result | dict | list, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(results, list):
        data: Any = {"sweep": [to_json(r) for r in results]}
    elif isinstance(results, dict) and all(not isinstance(v, (int, float, str)) for v in results.values()) \
            and "schema" not in results and "sweep" not in results:
        data = {k: to_json(v) for k, v in results.items()}
    else:
        data = to_json(results)
    p.write_text(json.dumps(data, indent=1, allow_nan=False))
    return p


# Keys that mark a dict as one result, or another JSON the report renders (sweep rows, a validation matrix, a bare
# Chrome trace), rather than the {scenario name: result} wrapper of a study.
RESULT_MARKERS = (
    "step_time_s", "mfu", "tokens_per_s", "schema", "scenario", "kind", "timeline", "chrome_trace",
    "prefill_tokens_per_s_per_node", "decode_tokens_per_s_per_node", "sweep", "rows", "validation",
    "memory_per_gpu", "infeasible", "gpu_hours_per_trillion_tokens", "breakdown", "traceEvents", "cases",
)


def _as_dict(v):
    return v.to_dict() if hasattr(v, "to_dict") and not isinstance(v, dict) else v


def load_json(source) -> dict:
    """A result as a dict, the inverse of ``save_json``: from a dict, a Result object (``to_dict``), a list of rows
    (a sweep) or a JSON path."""
    if not isinstance(source, (str, Path)):
        data = _as_dict(source)
        return {"sweep": [_as_dict(r) for r in data]} if isinstance(data, list) else {
            k: _as_dict(v) for k, v in data.items()}
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"result JSON not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is not JSON: {e}") from e
    if not isinstance(data, (dict, list)):
        raise ConfigError(f"{p}: expected a JSON object (a result) or a list (sweep rows), got {type(data).__name__}")
    return {"sweep": data} if isinstance(data, list) else data


def is_result(d) -> bool:
    return isinstance(d, dict) and any(k in d for k in RESULT_MARKERS)


def split_results(data: dict, scenario: str | None = None) -> list[tuple[str, dict]]:
    """[(scenario name, result)]: one entry for a plain result, several when the file nests by scenario (a study, as
    ``save_json`` writes a dict of results); only ``scenario``'s when given (a ConfigError when it is not there)."""
    subs = [(k, v) for k, v in data.items() if is_result(v)]
    if is_result(data) or not subs or len(subs) != sum(isinstance(v, dict) for v in data.values()):
        subs = [("", data)]
    if scenario is not None and scenario not in (names := [h for h, _ in subs]):
        raise ConfigError(f"scenario {scenario!r} is not in this result (scenarios: {', '.join(names)})")
    return subs if scenario is None else [(h, r) for h, r in subs if h == scenario]
