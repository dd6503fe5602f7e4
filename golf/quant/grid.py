"""The per-row symmetric integer grid every quantizer uses (RTN, clip search, GPTQ), for any bit width.

Row r with clip value c_r gets scale s_r = max(c_r / qmax, floor), stored as fp16, and
q = clamp(round(w / s_r), -qmax, qmax) with qmax = 2^(bits-1) - 1 (int5: 15, int6: 31, int8: 127), computed
against the stored (fp16) scale, so q is the nearest point of the grid the model is rebuilt on. Weights are
not clamped to c_r first: where the 1/qmax floor sets the scale an outlier above c_r still gets its nearest
grid point (the baseline's int8 clamped it to c_r; this differs in 2 of 24,576 test-vector entries with a
lower Hessian-weighted error).

The floor is the records' 1/qmax unless ``floor`` is given (``quant.scale_floor``). Where every |w| of a row
is below 1, as in a model trained for minutes on one GPU, 1/qmax sets the scale of every row: the grid is then
coarser than the weights need and no clip percentile changes it. A lower floor lets the grid follow the row's
range (more distinct values: more bytes after compression).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

# GPTQ-lite's candidate clip percentiles (#414); 1.0 is the row maximum.
PERCENTILES = (0.999, 0.9995, 0.9999, 0.99999, 1.0)


def qmax_for(bits: int) -> int:
    if not 2 <= bits <= 8:
        raise ValueError(f"quantization bits must be in 2..8 (int8 containers), got {bits}")
    return 2 ** (bits - 1) - 1


def row_clip(w: Tensor, percentile: float | None) -> Tensor:
    """Per-row clip value: the ``percentile`` quantile of |w| (None or 1.0 means the row max)."""
    a = w.float().abs()
    if percentile is None or percentile >= 1.0:
        return a.amax(dim=1)
    return torch.quantile(a, percentile, dim=1)


def row_clip_sigmas(w: Tensor, sigmas: float) -> Tensor:
    """SDClip (#1394 on): the row's clip is ``sigmas`` standard deviations of its entries (unbiased, as the
    records compute it), whatever its largest entry."""
    return sigmas * w.float().std(dim=1)


class ClipCache:
    """Row clips by (tensor name, percentile), each computed once: budget fitting quantizes the same weights at
    many floors and bit widths, and a row's quantile of |w| depends on neither (torch.quantile sorts every row)."""

    def __init__(self) -> None:
        self._clips: dict[tuple[str, float | None], Tensor] = {}

    def of(self, name: str, w: Tensor) -> Callable[[float | None], Tensor]:
        """``row_clip(w, percentile)`` for ``w`` under ``name``, remembered."""
        def clip(percentile: float | None) -> Tensor:
            key = (name, percentile)
            if key not in self._clips:
                self._clips[key] = row_clip(w, percentile)
            return self._clips[key]
        return clip

    def sigmas(self, name: str, w: Tensor, k: float) -> Callable[[float | None], Tensor]:
        """SDClip's row clips for ``w`` (the same for any percentile asked), remembered."""
        key = (name, ("sigmas", float(k)))
        if key not in self._clips:
            self._clips[key] = row_clip_sigmas(w, k)
        return lambda _percentile: self._clips[key]


MIN_SCALE = 1e-7  # the smallest floor: an all-zero row still gets a positive (fp16 subnormal) scale


def scale_floor(qmax: int, floor: float | None = None) -> float:
    """The smallest row scale: the records' 1/qmax, or ``floor`` (at least ``MIN_SCALE``)."""
    return 1.0 / qmax if floor is None else max(float(floor), MIN_SCALE)


def row_scales(clip: Tensor, qmax: int, dtype: torch.dtype = torch.float16, floor: float | None = None) -> Tensor:
    return (clip.float() / qmax).clamp_min(scale_floor(qmax, floor)).to(dtype)


def quantize_with_scales(w: Tensor, scales: Tensor, qmax: int) -> Tensor:
    return torch.clamp(torch.round(w.float() / scales.float()[:, None]), -qmax, qmax).to(torch.int8)


def quantize_rows(w: Tensor, clip: Tensor, qmax: int, scale_dtype: torch.dtype = torch.float16,
                  floor: float | None = None) -> tuple[Tensor, Tensor]:
    """Quantize 2-D ``w`` per row to int8 containers in [-qmax, qmax]; returns (q, scale)."""
    s = row_scales(clip, qmax, scale_dtype, floor)
    return quantize_with_scales(w, s, qmax).contiguous(), s.contiguous()


class ClipSearch(NamedTuple):
    q: Tensor
    scale: Tensor
    percentile: Tensor  # [rows] the candidate each row ended with


def search_clip(w: Tensor, qmax: int, percentiles: Sequence[float] = PERCENTILES, per_row: bool = False,
                floor: float | None = None, clip: Callable[[float], Tensor] | None = None) -> ClipSearch:
    """GPTQ-lite: among the candidate clip percentiles keep the one with the lowest reconstruction MSE, for the
    whole matrix (#414/#549/#1019) or row by row (#635, #1089). ``clip``: the row clips by percentile (a
    ``ClipCache``'s), default computed here."""
    w32 = w.float()
    clip = clip or (lambda pct: row_clip(w32, pct))
    best_q = best_s = best_err = best_p = None
    for pct in percentiles:
        q, s = quantize_rows(w32, clip(pct), qmax, floor=floor)
        err = (w32 - dequantize_rows(q, s)).pow(2).mean(dim=1)
        p = torch.full_like(err, pct)
        if best_q is None:
            best_q, best_s, best_err, best_p = q, s, err, p
        elif per_row:
            better = err < best_err
            best_q = torch.where(better[:, None], q, best_q)
            best_s, best_err = torch.where(better, s, best_s), torch.where(better, err, best_err)
            best_p = torch.where(better, p, best_p)
        elif err.mean() < best_err.mean():
            best_q, best_s, best_err, best_p = q, s, err, p
    return ClipSearch(best_q, best_s, best_p)


def quantize_tensor(w: Tensor, percentile: float | None, qmax: int) -> tuple[Tensor, Tensor]:
    """Per-tensor variant for non-2-D tensors: one fp32 scale."""
    w32 = w.float()
    if w32.numel() == 0:
        clip = 0.0
    elif percentile is None or percentile >= 1.0:
        clip = float(w32.abs().max())
    else:
        clip = float(torch.quantile(w32.abs().flatten(), percentile))
    scale = torch.tensor(clip / qmax if clip > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(w32 / scale), -qmax, qmax).to(torch.int8)
    return q.contiguous(), scale


def dequantize_rows(q: Tensor, scale: Tensor) -> Tensor:
    s = scale.float()
    return q.float() * (s.view(q.shape[0], *([1] * (q.ndim - 1))) if s.ndim else s)
