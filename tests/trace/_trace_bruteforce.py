"""Plain-Python loop versions of the trace statistics: the second, independent computation the tests compare
the vectorised numpy code against. No numpy tricks: dicts, sets and explicit loops, one token at a time."""

from __future__ import annotations

import math


def loads(ids, n_experts):
    out = []
    for layer in ids:
        c = [0] * n_experts
        for tok in layer:
            for e in tok:
                c[int(e)] += 1
        out.append(c)
    return out


def max_over_mean(row):
    return max(row) / (sum(row) / len(row))


def node_of(e, n_experts, ep, gpn):
    return (int(e) // (n_experts // ep)) // gpn


def gpu_of(e, n_experts, ep):
    return int(e) // (n_experts // ep)


def nodes_per_token(ids, n_experts, ep, gpn):
    hist, all_counts = {}, []
    per_node_counts = []
    for layer in ids:
        for tok in layer:
            per = {}
            for e in tok:
                n = node_of(e, n_experts, ep, gpn)
                per[n] = per.get(n, 0) + 1
            hist[len(per)] = hist.get(len(per), 0) + 1
            all_counts.append(len(per))
            per_node_counts.extend(per.values())
    return hist, all_counts, per_node_counts


def deepep_sends_every_source(tok, n_experts, ep, gpn):
    """Average over every source GPU of (IB sends, NVLink sends), simulating DeepEP's relay literally."""
    ib_total = nvl_total = 0
    for src in range(ep):
        src_node, src_local = src // gpn, src % gpn
        targets = sorted({gpu_of(e, n_experts, ep) for e in tok})
        nodes = sorted({g // gpn for g in targets})
        for n in nodes:
            if n != src_node:
                ib_total += 1                      # one RDMA copy to the node's relay
            relay = n * gpn + src_local            # same local index as the source
            for g in targets:
                if g // gpn == n and g != relay:
                    nvl_total += 1                 # relay forwards over NVLink
    return ib_total / ep, nvl_total / ep


def mutual_information_bits(pairs):
    joint, pa, pb = {}, {}, {}
    n = 0
    for a, b in pairs:
        joint[(a, b)] = joint.get((a, b), 0) + 1
        pa[a] = pa.get(a, 0) + 1
        pb[b] = pb.get(b, 0) + 1
        n += 1
    mi = 0.0
    for (a, b), c in joint.items():
        mi += c / n * math.log2((c / n) / ((pa[a] / n) * (pb[b] / n)))
    return mi


def limited_topk_one(scores, k, n_group, topk_group, group_score_topk):
    E = len(scores)
    per = E // n_group
    gscore = []
    for g in range(n_group):
        s = sorted(scores[g * per:(g + 1) * per], reverse=True)
        gscore.append((sum(s[:group_score_topk]), -g))
    keep = {-g for _, g in sorted(gscore, reverse=True)[:topk_group]}
    cand = [(scores[e], e) for e in range(E) if e // per in keep]
    cand.sort(key=lambda x: -x[0])
    return [e for _, e in cand[:k]]
