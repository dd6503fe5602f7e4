"""Fake quantization for quantization-aware training (techniques.md §3.8, §3.9).

One ``FakeQuant`` module per model is shared by every matrix the export quantizes (the block matrices).
Per row r of a weight W: s_r = max(clip * max_j |W_rj| / qmax, floor), detached (floor: the records' 1/qmax,
or ``scale_floor``, which follows ``quant.scale_floor`` so QAT trains on the grid the export uses), then
  ste:        W + stopgrad(clamp(round(W / s), qmin, qmax) * s - W)      (straight-through)
  soft_round: u = clamp(W / s, qmin, qmax); W_q = (floor(u) + sigmoid(alpha * (u - floor(u) - 1/2))) * s,
              gradients through the fractional part; alpha ramps 1 -> 16 while QAT runs (#1089).
The grid is [qmin, qmax] = [-2^(b-1), 2^(b-1) - 1] as in the records (``symmetric``: [-qmax, qmax], the
grid golf's exporters use).

``mode`` is none (off), ste or soft_round. Under ``torch.compile`` the Python attribute ``mode`` is
guarded: switching it recompiles once (the trainer pre-compiles that graph during warm-up), and ``alpha``
is a buffer, so ramping it recompiles nothing. The records' class-attribute flag was folded away by the compiler (#315's finding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golf.quant.grid import scale_floor as scale_floor_for

MODES = ("none", "ste", "soft_round")


def qat_range(bits: int, symmetric: bool) -> tuple[int, int]:
    if not 2 <= bits <= 8:
        raise ValueError(f"train.qat.bits must be in 2..8, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


class FakeQuant(nn.Module):
    def __init__(self):
        super().__init__()
        self.mode = "none"
        self.bits, self.clip, self.symmetric = 6, 1.0, False
        self.qmin, self.qmax = qat_range(6, False)
        self.floor = scale_floor_for(self.qmax)
        self.register_buffer("alpha", torch.ones(()), persistent=False)

    def configure(self, *, mode: str, bits: int = 6, clip: float = 1.0, symmetric: bool = False,
                  scale_floor: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"train.qat.mode must be one of {MODES}, got {mode!r}")
        if not 0 < clip <= 1:
            raise ValueError(f"train.qat.clip must be in (0, 1], got {clip}")
        self.qmin, self.qmax = qat_range(bits, symmetric)
        self.mode, self.bits, self.clip, self.symmetric = mode, bits, clip, symmetric
        self.floor = scale_floor_for(self.qmax, scale_floor)

    def scales(self, w: Tensor) -> Tensor:
        w32 = w.detach().float()
        return (w32.abs().amax(dim=-1, keepdim=True) * self.clip / self.qmax).clamp_min(self.floor)

    def forward(self, w: Tensor) -> Tensor:
        s = self.scales(w)
        w32 = w.float()
        if self.mode == "ste":
            q = torch.clamp(torch.round(w32.detach() / s), self.qmin, self.qmax) * s
            return w32 + (q - w32).detach()
        u = torch.clamp(w32 / s, self.qmin, self.qmax)
        lo = u.detach().floor()
        return (lo + torch.sigmoid(self.alpha * (u - lo - 0.5))) * s
