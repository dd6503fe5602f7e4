"""Fitting the artifact to the byte budget (techniques.md §4.5, §4.6): code + compressed model <= limit.

Sizes are estimated with the codec's fast sibling (brotli-11 takes ~35 s per 16 MB, brotli-5 under 1 s),
scaled to the real codec by one real measurement, and confirmed with the real codec.
Allocation (#1089): block matrices are grouped by (layer, attn|mlp); a group's sensitivity is the mean of
trace(H) / columns over its matrices. Every group starts at ``base_bits``; in decreasing sensitivity the
first group is promoted to the widest width up to ``max_bits`` that fits, every later one by one bit if it
fits; a group's extra bytes at a width are those of its clip-searched integers and scales. The target keeps
``headroom`` (#1089: 2%) for pruning to absorb the estimate's error.
Pruning (#1019 +-1, #1089 +-1/+-2): entries of the block matrices with 0 < |q| <= ``max_abs`` are zeroed
cheapest first, cost s_row² q². Bisection on the estimate (affine in the fast sibling's size through the real
unpruned and fully pruned sizes) gives a count; the real codec confirms it, gallops from it towards the
boundary (below a fit in steps of 1, 2, 4, ... entries; above an overshoot in steps of 0.5% of the candidates,
doubling) and bisects it with the real checks left. Real
compressed sizes are not monotone in the count at a fine scale (zeroing 2,000 entries grew an lzma artifact
by 624 bytes), so the count is the fewest the real checks found, exactly the fewest for a monotone codec.
Floor fitting (``quant.fit_scale_floor``): a row whose clip / qmax is below the grid's floor gets the floor as
its scale; the records' floor 1/qmax sets every row of a model trained for minutes (all |w| < 1), a grid far
coarser than its weights need. Fitting scales every floor by the smallest factor in [0, 1] whose artifact is
estimated within the limit less ``headroom``: sizes at factors 0 (the rows' own grids), 1/4, 1/2 and 1 (the
records' floor) through the real codec, in parallel; then bisection between the two measured factors that
bracket the target, on zlib-1's size mapped affinely through theirs. A payload over 4 MB is measured on a
systematic sample (every 8th 4 KiB block; within 1% of the whole on #1019-sized int6 states, over rather than
under where the grid is coarse), so lzma-9 costs an eighth of a compression per anchor. Where the records'
floor is still over, the factor doubles (up to 64) first. The probes round without Hessians (RTN or the clip
search: GPTQ's codes compress alike, and the rows' clips are computed once for every probe); pruning absorbs
what the estimate missed, and ``golf.quant.pack`` checks the real artifact, so a run with floor fitting ends
within the limit whatever the model. A uniform step for every row at the floor is what rate-distortion theory
asks of a uniform quantizer under an entropy budget (equal distortion slopes), where pruning zeroes only the
smallest codes.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from golf.compress.artifact import artifact_payload, encode_artifact, encode_payload
from golf.compress.codecs import Zlib
from golf.quant.format import QuantizedState
from golf.quant.grid import ClipCache, qmax_for, search_clip
from golf.quant.quantizer import matrix_group


@dataclass(frozen=True)
class ByteBudget:
    """Code + model against the limit, through the artifact's codec."""

    limit: int           # decimal bytes for code + model (16,000,000)
    code_bytes: int
    compressor: Any

    def encode(self, q: QuantizedState) -> bytes:
        return encode_artifact(q.tensors, q.meta, self.compressor)

    def model_bytes(self, q: QuantizedState) -> int:
        return len(self.encode(q))

    def total(self, q: QuantizedState) -> int:
        return self.code_bytes + self.model_bytes(q)

    def target(self, headroom: float) -> float:
        """Model bytes that leave ``headroom`` (a fraction of the limit) free."""
        return (1.0 - headroom) * self.limit - self.code_bytes


SAMPLE_ABOVE = 4 << 20   # payloads larger than this are sized on a sample
SAMPLE_EVERY, SAMPLE_BLOCK = 8, 4096


def estimated_model_bytes(q: QuantizedState, compressor: Any) -> tuple[int, bool]:
    """(model bytes through the real codec, whether estimated on a sample): a large payload is sized on every
    SAMPLE_EVERY-th block of SAMPLE_BLOCK bytes, scaled by the payload's length over the sample's."""
    payload = artifact_payload(q.tensors, q.meta)
    if len(payload) <= SAMPLE_ABOVE:
        return len(encode_payload(payload, compressor)), False
    step = SAMPLE_BLOCK * SAMPLE_EVERY
    sample = b"".join(payload[i : i + SAMPLE_BLOCK] for i in range(0, len(payload), step))
    return round(len(compressor.compress(sample)) * len(payload) / len(sample)), True


def fast_bytes(tensors: dict[str, Tensor], compressor: Any) -> int:
    """Bytes of ``tensors`` (sorted by name, raw) through the codec's fast sibling."""
    data = b"".join(t.reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes()
                    for _, t in sorted(tensors.items()))
    fast = compressor.fast() if hasattr(compressor, "fast") else compressor
    return len(fast.compress(data))


# ------------------------------------------------------------------------------------------- allocation


def sensitivities(hessians: dict[str, Tensor]) -> dict[str, float]:
    per_group = defaultdict(list)
    for name, H in hessians.items():
        g = matrix_group(name)
        if g is not None:
            per_group[g].append(float(torch.diag(H.float()).sum()) / H.shape[0])
    return {g: sum(v) / len(v) for g, v in per_group.items()}


def allocate_bits(state: dict[str, Tensor], hessians: dict[str, Tensor], quantizer, budget: ByteBudget, *,
                  base_bits: int, max_bits: int, headroom: float = 0.02,
                  clips: ClipCache | None = None) -> tuple[dict[str, int], dict]:
    """Bits per block matrix (see the module docstring) and a record of the decision."""
    clips = clips or ClipCache()
    groups = defaultdict(list)
    for name in state:
        if quantizer.classify(name, state[name]) == "matrix":
            groups[matrix_group(name)].append(name)
    sens = sensitivities({n: h for n, h in hessians.items() if n in state})
    order = sorted(groups, key=lambda g: -sens.get(g, 0.0))

    def group_proxy(g: str, b: int) -> int:
        tensors = {}
        for n in groups[g]:
            q, s, _ = search_clip(state[n], qmax_for(b), quantizer.percentiles, per_row=quantizer.search == "row",
                                  floor=quantizer.floor_for(qmax_for(b)), clip=clips.of(n, state[n]))
            tensors[n + ".q"], tensors[n + ".s"] = q, s
        return fast_bytes(tensors, budget.compressor)

    base_state = quantizer.quantize(state, bits={n: base_bits for ns in groups.values() for n in ns}, clips=clips)  # lite
    real_base = budget.model_bytes(base_state)
    ratio = real_base / max(fast_bytes(base_state.tensors, budget.compressor), 1)
    target = budget.target(headroom)
    estimate, bits, log = float(real_base), {g: base_bits for g in groups}, []
    cost = {g: {base_bits: group_proxy(g, base_bits)} for g in order}
    for rank, g in enumerate(order):
        for b in range(max_bits if rank == 0 else base_bits + 1, base_bits, -1):
            cost[g][b] = group_proxy(g, b)
            extra = ratio * (cost[g][b] - cost[g][base_bits])
            if estimate + extra <= target:
                bits[g], estimate = b, estimate + extra
                log.append({"group": g, "bits": b, "estimated_extra_bytes": round(extra)})
                break
    per_matrix = {n: bits[g] for g, ns in groups.items() for n in ns}
    info = {"base_bits": base_bits, "max_bits": max_bits, "headroom": headroom, "target_model_bytes": round(target),
            "estimated_model_bytes": round(estimate), "base_model_bytes": real_base, "proxy_ratio": round(ratio, 4),
            "groups": {g: {"bits": bits[g], "sensitivity": sens.get(g)} for g in order}, "promoted": log,
            "bits_histogram": {str(b): sum(1 for g in order if bits[g] == b) for b in sorted(set(bits.values()))}}
    return per_matrix, info


# ---------------------------------------------------------------------------------------- floor fitting


MAX_FLOOR_FACTOR = 64.0  # above the records' floor: a grid this coarse rounds nearly every weight to 0
FLOOR_ANCHORS = (0.0, 0.25, 0.5, 1.0)  # factors whose real size is measured (in parallel) before bisecting


def fit_floor(state: dict[str, Tensor], quantizer, budget: ByteBudget, *, headroom: float = 0.02,
              steps: int = 6, clips: ClipCache | None = None) -> tuple[float, dict]:
    """The factor to scale the grid floors by, and a record of the search (module docstring). Where even the
    records' floor is over, the factor doubles past 1 (a coarser grid) until the artifact fits. ``clips``: row
    clips shared with the caller's later quantization of the same state."""
    target = budget.target(headroom)
    clips = clips or ClipCache()
    # zlib-1 probes: 10x faster than lzma-1 on an int6 payload and as close once mapped (benchmarks.md)
    probe_codec = Zlib(level=1, shuffle=getattr(budget.compressor, "shuffle", 0))
    sampled = []

    def probe(factor: float) -> QuantizedState:
        return quantizer.with_floor_factor(factor).quantize(state, clips=clips)

    def real_bytes(q: QuantizedState) -> int:
        size, on_sample = estimated_model_bytes(q, budget.compressor)
        sampled.append(on_sample)
        return size

    qs = {f: probe(f) for f in FLOOR_ANCHORS}
    with ThreadPoolExecutor(len(qs)) as pool:  # the codecs release the GIL: all anchors in the time of one
        real = dict(zip(qs, pool.map(real_bytes, qs.values())))
    info = {"target_model_bytes": round(target), "headroom": headroom, "model_bytes_no_floor": real[0.0],
            "model_bytes_full_floor": real[1.0], "real_compressions": len(qs), "probes": len(qs)}
    if real[0.0] <= target:  # the rows' own grids fit
        return 0.0, {**info, "factor": 0.0, "estimated_model_bytes": real[0.0], "sampled": any(sampled)}
    hi = 1.0
    while real[hi] > target and hi < MAX_FLOOR_FACTOR:
        hi *= 2
        qs[hi] = probe(hi)
        real[hi] = real_bytes(qs[hi])
        info["real_compressions"] += 1
        info["probes"] += 1
    info["sampled"] = any(sampled)
    if real[hi] > target:  # pruning's turn
        return hi, {**info, "factor": hi, "estimated_model_bytes": real[hi]}
    hi = min(f for f in real if real[f] <= target)  # the bracket between neighbouring measured factors
    lo = max(f for f in real if f < hi)
    fast = {f: fast_bytes(qs[f].tensors, probe_codec) for f in (lo, hi)}
    slope = (real[lo] - real[hi]) / (fast[lo] - fast[hi]) if fast[lo] != fast[hi] else 1.0
    top, est_hi = hi, float(real[hi])
    for _ in range(steps):  # bisection on the probe codec's size, mapped affinely through the bracket's real sizes
        mid = (lo + hi) / 2
        est = real[top] + slope * (fast_bytes(probe(mid).tensors, probe_codec) - fast[top])
        info["probes"] += 1
        lo, hi, est_hi = (lo, mid, est) if est <= target else (mid, hi, est_hi)
    return hi, {**info, "factor": hi, "estimated_model_bytes": round(est_hi)}


# --------------------------------------------------------------------------------------------- pruning


def _candidates(q: QuantizedState, max_abs: int) -> tuple[list[str], Tensor, Tensor, Tensor]:
    """(q-tensor keys, tensor index, flat index, cost) of every entry with 0 < |q| <= max_abs, cheapest first."""
    keys, which, where, costs = [], [], [], []
    for _, m in sorted(q.meta.items()):
        if m.get("scheme") != "per_row" or m.get("bits", 8) >= 8:
            continue
        qt, s = q.tensors[m["q"]], q.tensors[m["scale"]].float()
        a = qt.abs()
        idx = torch.nonzero(((a > 0) & (a <= max_abs)).flatten()).squeeze(1)
        rows = idx // qt.shape[1]
        keys.append(m["q"])
        which.append(torch.full_like(idx, len(keys) - 1))
        where.append(idx)
        costs.append(s[rows].square() * a.flatten()[idx].float().square())
    if not keys:
        return [], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0)
    order = torch.argsort(torch.cat(costs), stable=True)
    return keys, torch.cat(which)[order], torch.cat(where)[order], torch.cat(costs)[order]


def _pruned(q: QuantizedState, keys: list[str], which: Tensor, where: Tensor, n: int) -> QuantizedState:
    out = QuantizedState(tensors=dict(q.tensors), meta=q.meta, stats=q.stats)
    for k, key in enumerate(keys):
        idx = where[:n][which[:n] == k]
        if idx.numel():
            t = q.tensors[key].clone()
            t.view(-1)[idx] = 0
            out.tensors[key] = t
    return out


def prune_to_fit(q: QuantizedState, budget: ByteBudget, *, max_abs: int = 1, real_checks: int = 6,
                 blob: bytes | None = None) -> tuple[QuantizedState, bytes, dict]:
    """Few cheapest +-1 (..+-max_abs) entries zeroed so that code + model <= limit (module docstring); returns
    the state, its encoded artifact and a record. ``blob``: ``q`` already encoded."""
    blobs: dict[int, bytes] = {0: budget.encode(q) if blob is None else blob}
    start = budget.code_bytes + len(blobs[0])
    info = {"max_abs": max_abs, "bytes_before": start, "pruned": 0, "candidates": 0, "real_compressions": 1}
    if start <= budget.limit:
        return q, blobs[0], {**info, "bytes_after": start, "fits": True, "headroom": budget.limit - start}
    keys, which, where, _ = _candidates(q, max_abs)
    N = int(which.numel())
    info["candidates"] = N
    states: dict[int, QuantizedState] = {0: q}

    def real(n: int) -> int:
        if n not in blobs:
            states[n] = _pruned(q, keys, which, where, n)
            blobs[n] = budget.encode(states[n])
        return budget.code_bytes + len(blobs[n])

    full = real(N)
    info["real_compressions"] += 1
    if full > budget.limit:
        return states[N], blobs[N], {**info, "pruned": N, "bytes_after": full, "fits": False,
                                     "headroom": budget.limit - full}
    # Affine in the fast codec's size, through the two real sizes measured (unpruned and fully pruned): the
    # artifact has parts pruning does not touch (header, tables, scales).
    f0, fN = fast_bytes(q.tensors, budget.compressor), fast_bytes(states[N].tensors, budget.compressor)
    slope = (full - start) / (fN - f0) if fN != f0 else start / max(f0, 1)
    estimate = lambda n: start + slope * (fast_bytes(_pruned(q, keys, which, where, n).tensors, budget.compressor) - f0)  # noqa: E731
    lo, hi = 0, N
    while hi - lo > 1:  # the estimate's answer
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if estimate(mid) <= budget.limit else (mid, hi)
    known_over, known_fit, best, probe = 0, N, (N, full), hi
    down, up = 1, max(1, N // 200)  # gallop steps: below a fit from 1 entry, above an overshoot from 0.5% (#1089)
    for _ in range(real_checks):  # from the estimate: gallop towards the boundary, then bisect it
        size = real(probe)
        info["real_compressions"] += 1
        if size <= budget.limit:
            known_fit, best = probe, (probe, size)
        else:
            known_over = probe
        if known_fit - known_over <= 1:
            break
        if known_over > 0 and known_fit < N:
            probe = (known_over + known_fit) // 2
        elif size <= budget.limit:
            probe, down = max(known_over + 1, probe - down), down * 2
        else:
            probe, up = min(known_fit - 1, probe + up), up * 2
    n, size = best
    return states[n], blobs[n], {**info, "pruned": n, "bytes_after": size, "fits": True, "headroom": budget.limit - size,
                                 "fewest_found": known_fit - known_over <= 1}
