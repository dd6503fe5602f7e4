"""Quantizing to the byte budget: what the export stages call, once each (``golf.stages.export``).

``quantize``: floor fitting (``fit.fit_floor``: a finer grid where the budget has room, a coarser one where even
the records' floor is over), then the bit allocation (``fit.allocate_bits``) with what is left, then the
quantizer itself (GPTQ with the Hessians). ``compress``: pruning to the limit (``fit.prune_to_fit``) and the
real codec. Floor fitting works on estimates; where the real artifact comes out over the limit, ``compress``
fits the floor again against a target lowered by the miss and quantizes again (at most twice), so an artifact
whose floor was fitted does not end over the limit. What fitting did lands in ``fitting`` (results.json).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from golf.numerics import exact_fp32
from golf.quant.fit import ByteBudget, allocate_bits, fit_floor, prune_to_fit
from golf.quant.format import QuantizedState
from golf.quant.grid import ClipCache

Log = Callable[[str], None]
REFITS = 2
REFIT_MARGIN = 0.002  # of the limit, on top of the miss, when floor fitting runs again


@dataclass
class Quantized:
    """The quantize stage's product: the state, the quantizer as fitted, and what a refit would need."""

    qstate: QuantizedState
    quantizer: Any
    state: dict[str, Tensor]
    hessians: dict[str, Tensor] | None = None
    bits: dict[str, int] | None = None
    fitting: dict[str, Any] = field(default_factory=dict)
    clips: ClipCache = field(default_factory=ClipCache)


@dataclass
class Packed:
    """The compress stage's product: the state written and its encoded artifact."""

    qstate: QuantizedState
    blob: bytes
    fitting: dict[str, Any] = field(default_factory=dict)


def quantize(state: dict[str, Tensor], quantizer: Any, budget: ByteBudget, *, hessians: dict[str, Tensor] | None = None,
             log: Log = print, device_type: str = "cpu") -> Quantized:
    """Fit the floor, allocate bits, quantize (module docstring)."""
    fit, fitting, bits, q, clips = quantizer.fit, {}, None, quantizer, ClipCache()
    with exact_fp32(device_type):  # GPTQ's and the allocator's float32 matmuls without TF32
        if fit.floor and q.quantizes_rows(state):
            q = _fit_floor(state, q, budget, fit.headroom, fitting, log, clips)
        if fit.max_bits:
            t0 = time.perf_counter()
            bits, info = allocate_bits(state, hessians, q, budget, base_bits=q.matrix_bits, max_bits=fit.max_bits,
                                       headroom=fit.headroom, clips=clips)
            fitting["allocation"] = info = {**info, "seconds": round(time.perf_counter() - t0, 3)}
            log(f"allocation: layer groups by bits {info['bits_histogram']} (estimated model "
                f"{info['estimated_model_bytes']:,} B of {info['target_model_bytes']:,}) in {info['seconds']:.1f}s")
        qstate = q.quantize(state, hessians=hessians, bits=bits, clips=clips)
    return Quantized(qstate, q, state, hessians, bits, fitting, clips)


def _fit_floor(state, quantizer, budget: ByteBudget, headroom: float, fitting: dict, log: Log, clips: ClipCache):
    t0 = time.perf_counter()
    factor, info = fit_floor(state, quantizer, budget, headroom=headroom, clips=clips)
    fitting["scale_floor"] = info = {**info, "seconds": round(time.perf_counter() - t0, 3)}
    sampled = " on samples" if info.get("sampled") else ""
    log(f"floor fitting: floors x {factor:.4g} (estimated model {info['estimated_model_bytes']:,} B of "
        f"{info['target_model_bytes']:,}; {info['model_bytes_no_floor']:,} B without a floor, "
        f"{info['model_bytes_full_floor']:,} B at the full one{sampled}) in {info['seconds']:.1f}s, {info['probes']} probes")
    return quantizer.with_floor_factor(factor)


def compress(quantized: Quantized, budget: ByteBudget, *, log: Log = print, device_type: str = "cpu") -> Packed:
    """Prune to the limit where allowed, encode; refit the floor where its estimate missed (module docstring)."""
    fitting = dict(quantized.fitting)
    for attempt in range(REFITS + 1):
        qstate, blob = _encode(quantized, budget, fitting, log)
        over = budget.code_bytes + len(blob) - budget.limit
        if over <= 0 or "scale_floor" not in fitting or attempt == REFITS:
            break
        fitted = fitting["scale_floor"]
        missed = len(blob) - fitted["estimated_model_bytes"]  # what the estimate left out
        headroom = fitted["headroom"] + max(missed, over) / budget.limit + REFIT_MARGIN
        log(f"floor fitting: the artifact is {over:,} B over the limit ({missed:,} B above its estimate); fitting "
            f"again with {headroom:.2%} headroom")
        fitting.setdefault("refits", []).append({"over_bytes": over, "factor": fitting["scale_floor"]["factor"]})
        with exact_fp32(device_type):
            q = _fit_floor(quantized.state, quantized.quantizer, budget, headroom, fitting, log, quantized.clips)
            qstate = q.quantize(quantized.state, hessians=quantized.hessians, bits=quantized.bits, clips=quantized.clips)
            quantized = Quantized(qstate, q, quantized.state, quantized.hessians, quantized.bits, fitting, quantized.clips)
    return Packed(qstate, blob, fitting)


def _encode(quantized: Quantized, budget: ByteBudget, fitting: dict, log: Log) -> tuple[QuantizedState, bytes]:
    fit, qstate = quantized.quantizer.fit, quantized.qstate
    if not fit.prune_max_abs:
        return qstate, budget.encode(qstate)
    qstate, blob, info = prune_to_fit(qstate, budget, max_abs=fit.prune_max_abs, real_checks=fit.prune_real_checks)
    fitting["pruning"] = info
    if info["bytes_before"] <= budget.limit:
        log(f"pruning: not needed, {info['bytes_after']:,} B total fits ({info['headroom']:,} B headroom)")
    else:
        verdict = "fits" if info["fits"] else "STILL OVER: quant.fit_scale_floor=true coarsens the grid until it fits"
        log(f"pruning: {info['pruned']:,} of {info['candidates']:,} entries with |q| <= {info['max_abs']} zeroed, "
            f"{info['bytes_after']:,} B total ({verdict}), {info['real_compressions']} real compressions")
    return qstate, blob
