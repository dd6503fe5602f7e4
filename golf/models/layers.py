"""Building blocks shared by the models: weight-cast linear layers and rotary position embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CastedLinear(nn.Linear):
    """A bias-free linear layer whose fp32 master weight is cast to the input's dtype at matmul time."""

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False):
        super().__init__(in_features, out_features, bias=False)
        self.zero_init = zero_init
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, dim: int, base: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos/sin tables [seq_len, dim/2] for rotate-half RoPE over ``dim`` channels."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on the first 2*cos.size(-1) channels of x [B, H, T, D]; the rest pass through."""
    rd = 2 * cos.size(-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x_rot, x_pass = (x, None) if rd == x.size(-1) else (x[..., :rd], x[..., rd:])
    x1, x2 = x_rot.chunk(2, dim=-1)
    out = torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)
    return out if x_pass is None else torch.cat((out, x_pass), dim=-1)
