"""The per-row symmetric integer grid used by every quantizer (RTN, clip search, GPTQ).

A row r with clip value c_r gets scale s_r = max(c_r / qmax, 1 / qmax) (stored as ``scale_dtype``),
and q = clamp(round(clamp(w, -c_r, c_r) / s_r), -qmax, qmax).
"""

from __future__ import annotations

import torch
from torch import Tensor


def row_clip(w: Tensor, percentile: float | None) -> Tensor:
    """Per-row clip value: the ``percentile`` quantile of |w| (None or 1.0 means the row max)."""
    a = w.float().abs()
    if percentile is None or percentile >= 1.0:
        return a.amax(dim=1)
    return torch.quantile(a, percentile, dim=1)


def quantize_rows(w: Tensor, clip: Tensor, qmax: int, scale_dtype: torch.dtype = torch.float16) -> tuple[Tensor, Tensor]:
    """Quantize 2-D ``w`` per row to int8 containers in [-qmax, qmax]; returns (q, scale)."""
    w32 = w.float()
    scale = (clip.float() / qmax).clamp_min(1.0 / qmax)
    clipped = torch.maximum(torch.minimum(w32, clip[:, None]), -clip[:, None])
    q = torch.clamp(torch.round(clipped / scale[:, None]), -qmax, qmax).to(torch.int8)
    return q.contiguous(), scale.to(scale_dtype).contiguous()


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
    q = torch.clamp(torch.round(torch.clamp(w32, -clip, clip) / scale), -qmax, qmax).to(torch.int8)
    return q.contiguous(), scale


def dequantize_rows(q: Tensor, scale: Tensor) -> Tensor:
    s = scale.float()
    return q.float() * (s.view(q.shape[0], *([1] * (q.ndim - 1))) if s.ndim else s)
