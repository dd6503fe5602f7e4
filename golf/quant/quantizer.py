"""golf's quantizer: per-tensor treatment rules, then RTN, GPTQ-lite or GPTQ on the block matrices
(techniques.md §4.1-§4.4, §4.8).

Every tensor of the exported state falls in one class, first match wins:
  int      non-float tensors                                  -> stored as is
  small    float with <= ``keep_float_max_numel`` elements    -> ``float_dtype`` (fp32 if a ``keep_fp32_patterns`` name)
  matrix   a block matrix (``blocks.{i}.attn.{c_q,c_k,c_v,proj}``, ``blocks.{i}.mlp.{fc,proj}``)
                                                              -> ``matrix_bits`` by ``method``
  gate     (``gate_bits`` 8) the attention output gates         -> int8 rows at the row's max (#1736's quant gate)
  embed    the token embedding / untied head                  -> ``embed_bits`` (0: ``float_dtype``); with
                                                                ``embed_method: gptq``, GPTQ on the head's input Hessian
  table    hash and value-embedding tables                    -> ``table_bits``
  other    any other float tensor                             -> ``other_bits``
Non-matrix classes use per-row RTN at ``clip_percentile`` (the baseline's int8 rule); 2-D only, other
shapes one per-tensor scale. ``clip_sigmas`` (SDClip, #1394 on) replaces the percentile clip of a role (attn / mlp
block matrices, embed, table, other) by k standard deviations of each row: GPTQ then quantizes at that one clip.
``method``: rtn (clip at ``matrix_clip_percentile``), lite (GPTQ-lite clip search, ``search`` matrix | row) or
gptq (needs Hessians; a matrix without one falls back to lite).
A per-matrix bit width (``bits``, from the mixed-precision allocator) overrides ``matrix_bits``.
Fitting the budget (``golf.quant.fit``): ``allocate_max_bits`` > 0 promotes the most Hessian-sensitive layer
groups above ``matrix_bits`` while the estimate fits (keeping ``allocate_headroom``); ``prune_max_abs`` 1 or 2
zeroes the cheapest +-1 (+-2) entries when the artifact would be over the limit; ``fit_scale_floor`` (on by
default) scales every per-row grid's floor (``scale_floor``; null: the records' 1/qmax) by the smallest factor
whose artifact fits, before the allocation spends what is left.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from golf.quant.format import QuantizedState
from golf.quant.gptq import gptq, hessian_error
from golf.quant.grid import (
    MIN_SCALE,
    PERCENTILES,
    ClipCache,
    dequantize_rows,
    qmax_for,
    quantize_rows,
    quantize_tensor,
    row_scales,
    scale_floor,
    search_clip,
)
from golf.quant.lqer import LQERConfig, factors, pack

MATRIX = re.compile(r"^blocks\.(\d+)\.(attn\.(c_q|c_k|c_v|proj)|mlp\.(fc|proj))\.weight$")
METHODS = ("rtn", "lite", "gptq")
SIGMA_ROLES = ("attn", "mlp", "embed", "table", "other")  # SDClip's k by tensor role (block matrices: attn, mlp)
FLOAT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class FitOptions:
    """How a quantizer may be fitted to the byte budget: floor fitting, then bit allocation up to ``max_bits``
    (0: none) keeping ``headroom`` of the limit, then pruning of entries up to ``prune_max_abs`` (0: none)."""

    floor: bool = False
    max_bits: int = 0
    headroom: float = 0.02
    prune_max_abs: int = 0
    prune_real_checks: int = 6


def matrix_group(name: str) -> str | None:
    """``layer{i}.attn`` / ``layer{i}.mlp`` for a block matrix (the allocator's unit), else None."""
    m = MATRIX.match(name)
    return f"layer{m.group(1)}.{'attn' if m.group(2).startswith('attn') else 'mlp'}" if m else None


class Quantizer:
    def __init__(
        self,
        *,
        matrix_bits: int = 8,
        method: str = "rtn",
        matrix_clip_percentile: float = 0.9999984,
        percentiles: Sequence[float] = PERCENTILES,
        search: str = "matrix",
        gptq_block: int = 128,
        gptq_damp: float = 0.01,
        gptq_actorder: bool = True,
        embed_bits: int = 8,
        table_bits: int = 8,
        other_bits: int = 8,
        clip_percentile: float = 0.9999984,
        keep_float_max_numel: int = 65_536,
        float_dtype: str = "float16",
        keep_fp32_patterns: Sequence[str] = (),
        allocate_max_bits: int = 0,
        allocate_headroom: float = 0.02,
        prune_max_abs: int = 0,
        prune_real_checks: int = 6,
        scale_floor: float | None = None,
        fit_scale_floor: bool = True,
        clip_sigmas: Mapping[str, float] | None = None,
        embed_method: str = "rtn",
        gate_bits: int = 0,
        lqer: Mapping | None = None,
    ):
        if method not in METHODS:
            raise ValueError(f"quant.method must be one of {METHODS}, got {method!r}")
        if search not in ("matrix", "row"):
            raise ValueError(f"quant.search must be matrix or row, got {search!r}")
        if float_dtype not in FLOAT_DTYPES:
            raise ValueError(f"quant.float_dtype must be one of {sorted(FLOAT_DTYPES)}, got {float_dtype!r}")
        for key, pct in (("matrix_clip_percentile", matrix_clip_percentile), ("clip_percentile", clip_percentile)):
            if not 0 < pct <= 1:
                raise ValueError(f"quant.{key} must be in (0, 1], got {pct}")
        for key, b in (("matrix_bits", matrix_bits), ("embed_bits", embed_bits), ("table_bits", table_bits),
                       ("other_bits", other_bits)):
            if b != 0 or key == "matrix_bits":
                try:
                    qmax_for(b)
                except ValueError as e:
                    raise ValueError(f"quant.{key}: {e} (0 keeps the tensor in float_dtype, except matrix_bits)") from None
        self.matrix_bits, self.method, self.matrix_clip = matrix_bits, method, matrix_clip_percentile
        self.percentiles, self.search = tuple(percentiles), search
        self.gptq_kw = dict(block=gptq_block, damp=gptq_damp, actorder=gptq_actorder)
        self.class_bits = {"embed": embed_bits, "table": table_bits, "other": other_bits}
        self.clip_percentile, self.keep_float_max_numel = clip_percentile, keep_float_max_numel
        self.float_dtype, self.keep_fp32_patterns = FLOAT_DTYPES[float_dtype], tuple(keep_fp32_patterns)
        if allocate_max_bits and not matrix_bits < allocate_max_bits <= 8:
            raise ValueError(f"quant.allocate_max_bits must be above quant.matrix_bits={matrix_bits} and <= 8 "
                             f"(0: no allocation), got {allocate_max_bits}")
        if prune_max_abs not in (0, 1, 2) or not 0 <= allocate_headroom < 0.5:
            raise ValueError(f"quant.prune_max_abs must be 0, 1 or 2 and quant.allocate_headroom in [0, 0.5), got "
                             f"{prune_max_abs}, {allocate_headroom}")
        if scale_floor is not None and not 0 <= scale_floor < 1:
            raise ValueError(f"quant.scale_floor must be null (the records' 1/qmax) or in [0, 1), got {scale_floor}")
        self.scale_floor, self.fit_scale_floor, self.floor_factor = scale_floor, fit_scale_floor, 1.0
        self.allocate_max_bits, self.allocate_headroom = allocate_max_bits, allocate_headroom
        self.prune_max_abs, self.prune_real_checks = prune_max_abs, prune_real_checks
        if embed_method not in ("rtn", "gptq"):
            raise ValueError(f"quant.embed_method must be rtn or gptq (#1394: GPTQ on the tied embedding), got {embed_method!r}")
        if gate_bits not in (0, 8):
            raise ValueError(f"quant.gate_bits must be 0 (float, as other small tensors) or 8 (#1736's int8 rows), got {gate_bits}")
        self.embed_method, self.gate_bits = embed_method, gate_bits
        self.lqer = LQERConfig(**lqer) if isinstance(lqer, Mapping) else lqer
        self.clip_sigmas = dict(clip_sigmas or {})
        unknown = set(self.clip_sigmas) - set(SIGMA_ROLES)
        bad = {k: v for k, v in self.clip_sigmas.items() if v is not None and not v > 0}
        if unknown or bad:
            raise ValueError(f"quant.clip_sigmas takes roles {SIGMA_ROLES} with positive values (null: the percentile "
                             f"clip), got {dict(self.clip_sigmas)}")

    @property
    def fit(self) -> FitOptions:
        """What fitting the byte budget may do (``golf.quant.pack``); a grid without a floor has none to fit."""
        return FitOptions(floor=self.fit_scale_floor and self.scale_floor != 0, max_bits=self.allocate_max_bits,
                          headroom=self.allocate_headroom, prune_max_abs=self.prune_max_abs,
                          prune_real_checks=self.prune_real_checks)

    def floor_for(self, qmax: int) -> float:
        """The smallest row scale of a ``qmax`` grid: ``floor_factor`` of ``scale_floor`` (null: 1/qmax)."""
        return scale_floor(qmax, self.scale_floor) * self.floor_factor

    def with_floor_factor(self, factor: float) -> Quantizer:
        """This quantizer with its floors scaled by ``factor`` (what floor fitting chose: < 1 finer, > 1 coarser)."""
        out = copy.copy(self)
        out.floor_factor = float(factor)
        return out

    @property
    def needs_hessians(self) -> bool:
        """GPTQ needs them, and so does the allocator (sensitivity = trace(H) / columns)."""
        return self.method == "gptq" or self.embed_method == "gptq" or bool(self.allocate_max_bits)

    def quantizes_rows(self, state: Mapping[str, Tensor]) -> bool:
        """Whether any tensor of ``state`` goes on a per-row grid (and so has a floor to fit)."""
        for name, t in state.items():
            cls = self.classify(name, t)
            if t.ndim == 2 and (cls == "matrix" or (cls in self.class_bits and self.class_bits[cls])):
                return True
        return False

    def sigmas_for(self, name: str, cls: str) -> float | None:
        """SDClip's k for a tensor of class ``cls`` (a block matrix by its attn / mlp role), or None."""
        role = ("attn" if ".attn." in name else "mlp") if cls == "matrix" else cls
        return self.clip_sigmas.get(role)

    def classify(self, name: str, t: Tensor) -> str:
        if not t.is_floating_point():
            return "int"
        if self.gate_bits and name.endswith("attn.gate_w") and t.ndim == 2:
            return "gate"
        if t.numel() <= self.keep_float_max_numel:
            return "small"
        if MATRIX.match(name):
            return "matrix"
        if name in ("tok_emb.weight", "lm_head.weight"):
            return "embed"
        if name.endswith("embed.weight"):
            return "table"
        return "other"

    def quantize(self, state: Mapping[str, Tensor], hessians: Mapping[str, Tensor] | None = None,
                 bits: Mapping[str, int] | None = None, clips: ClipCache | None = None) -> QuantizedState:
        """Quantize a state dict; ``hessians`` by matrix name (gptq), ``bits`` per matrix (overrides); ``clips``:
        row clips kept across calls on the same state (budget fitting's probes)."""
        clips = clips or ClipCache()
        t0 = time.perf_counter()
        out = QuantizedState(stats={"params": 0, "quantized_params": 0, "classes": {}, "bits": {}, "method": self.method,
                                    "gptq": {"matrices": 0, "fallbacks": 0, "damping_retries": 0, "h_error": 0.0},
                                    "clip_rows": {}, "matrix_rows": 0, "floor_rows": 0})
        hessians, bits = hessians or {}, bits or {}
        for name, t in state.items():
            t = t.detach()
            cls = self.classify(name, t)
            out.stats["params"] += t.numel()
            out.stats["classes"][cls] = out.stats["classes"].get(cls, 0) + t.numel()
            if cls == "int":
                out.add_passthrough(name, t.cpu().contiguous())
            elif cls == "small":
                keep32 = any(p in name for p in self.keep_fp32_patterns)
                out.add_passthrough(name, t.cpu().contiguous(), torch.float32 if keep32 else self.float_dtype)
            elif cls == "gate":  # #1736's int8 rows at the row's max (no floor, no search)
                self._rtn(out, name, t, 8, 1.0, clips.of(name, t), floor=MIN_SCALE)
            elif cls != "matrix" and self.class_bits[cls] == 0:
                out.add_passthrough(name, t.cpu().contiguous(), self.float_dtype)
            else:
                k = self.sigmas_for(name, cls)
                clip = clips.of(name, t) if k is None else clips.sigmas(name, t, k)
                if cls == "matrix":
                    self._matrix(out, name, t, bits.get(name, self.matrix_bits), hessians.get(name), clip, k is not None)
                elif cls == "embed" and self.embed_method == "gptq":
                    self._matrix(out, name, t, self.class_bits[cls], hessians.get(name), clip, k is not None, "gptq")
                else:
                    self._rtn(out, name, t, self.class_bits[cls], self.clip_percentile, clip)
        gptq_names = out.stats.pop("gptq_names", [])
        if self.lqer is not None:
            self._correct(out, state, gptq_names)
        out.stats["payload_bytes"] = sum(v.numel() * v.element_size() for v in out.tensors.values())
        out.stats["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    def _correct(self, out: QuantizedState, state: Mapping[str, Tensor], names: list[str]) -> None:
        """LQER on the ``top_k`` GPTQ-quantized matrices with the largest error norm (the records' choice)."""
        errors = {}
        for name in names:
            m = out.meta[name]
            errors[name] = state[name].detach().float().cpu() - dequantize_rows(out.tensors[m["q"]], out.tensors[m["scale"]])
        chosen = sorted(errors, key=lambda n: -float(errors[n].norm()))[: self.lqer.top_k]
        for name in chosen:
            out.add_correction(name, pack(*factors(errors[name], self.lqer.rank), self.lqer))
        out.stats["lqer"] = {"matrices": chosen, "rank": self.lqer.rank, "asym": self.lqer.asym}

    def _rtn(self, out: QuantizedState, name: str, t: Tensor, b: int, percentile: float, clip,
             floor: float | None = None) -> None:
        qmax = qmax_for(b)
        if t.ndim == 2:
            q, s = quantize_rows(t, clip(percentile), qmax, floor=self.floor_for(qmax) if floor is None else floor)
            out.add_quantized(name, "per_row", q.cpu(), s.cpu(), t.dtype, b)
        else:
            q, s = quantize_tensor(t, percentile, qmax)
            out.add_quantized(name, "per_tensor", q.cpu(), s.cpu(), t.dtype, b)
        out.stats["quantized_params"] += t.numel()
        out.stats["bits"][str(b)] = out.stats["bits"].get(str(b), 0) + t.numel()

    def _count_floor(self, out: QuantizedState, s: Tensor, qmax: int) -> None:
        """Rows whose scale is the grid's floor (with the records' 1/qmax: every |w| in the row below 1): there
        the clip percentile cannot change anything, and the grid may be coarser than the row's range."""
        out.stats["matrix_rows"] += s.numel()
        floor = row_scales(torch.zeros(1, device=s.device), qmax, floor=self.floor_for(qmax))
        out.stats["floor_rows"] += int((s.float() <= floor.float()).sum())

    def _matrix(self, out: QuantizedState, name: str, t: Tensor, b: int, hessian: Tensor | None, clip,
                sdclip: bool = False, method: str | None = None) -> None:
        """``sdclip``: ``clip`` is SDClip's, one candidate (no percentile search); ``method``: instead of
        ``quant.method`` (the embedding's GPTQ)."""
        qmax = qmax_for(b)
        g = out.stats["gptq"]
        percentiles = (1.0,) if sdclip else self.percentiles
        method = method or self.method
        if method == "rtn":
            self._rtn(out, name, t, b, self.matrix_clip, clip)
            return self._count_floor(out, out.tensors[f"{name}.scale"], qmax)
        if method == "gptq" and hessian is not None:
            r = gptq(t, hessian, qmax, percentiles=percentiles, search=self.search, floor=self.floor_for(qmax),
                     clip=clip, **self.gptq_kw)
            q, s, chosen = r.q, r.scale, r.percentile
            g["matrices"] += 1
            out.stats.setdefault("gptq_names", []).append(name)
            g["damping_retries"] += r.retries
            g["h_error"] += hessian_error(t, q, s, hessian) / max(float(torch.diag(hessian.float()).sum()), 1e-30)
        else:
            if method == "gptq":
                g["fallbacks"] += 1
            q, s, chosen = search_clip(t, qmax, percentiles, per_row=self.search == "row",
                                       floor=self.floor_for(qmax), clip=clip)
        rows = out.stats["clip_rows"]
        for pct, n in zip(*torch.unique(chosen.cpu(), return_counts=True)):
            key = f"{float(pct):g}"
            rows[key] = rows.get(key, 0) + int(n)
        self._count_floor(out, s, qmax)
        out.add_quantized(name, "per_row", q.cpu(), s.cpu(), t.dtype, b)
        out.stats["quantized_params"] += t.numel()
        out.stats["bits"][str(b)] = out.stats["bits"].get(str(b), 0) + t.numel()
