"""RMSNorm and rotary position embeddings in PyTorch: what the models call, and the references golf's fused
q/k kernels (``golf.kernels.qk_norm_rope``) match. Here, below the models, so kernels import nothing above them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rope_base_for(seq_len: int, base: float, rope_dims: int, ntk_seq_len: int | None) -> float:
    """The RoPE base at ``seq_len``: ``base``, or with the NTK-aware rescale the records apply silently
    (their Rotary is built with train_seq_len=1024): base * (T / ntk_seq_len) ** (d / (d - 2)) when
    T > ntk_seq_len. For d = 16, T = 2048 that is 10000 * 2 ** (16/14) ~ 22,082."""
    if ntk_seq_len is None or seq_len <= ntk_seq_len:
        return base
    return base * (seq_len / ntk_seq_len) ** (rope_dims / (rope_dims - 2))


def rotary_tables(seq_len: int, rope_dims: int, base: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos/sin tables [seq_len, rope_dims/2] for rotate-half RoPE over the first ``rope_dims`` channels."""
    inv_freq = 1.0 / (base ** (torch.arange(0, rope_dims, 2, dtype=torch.float32, device=device) / rope_dims))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on the first 2*cos.size(-1) channels of x [..., T, D] (cos/sin [T, r/2], broadcast
    over any dims between); pairs are (i, i + r/2); the remaining channels carry no position."""
    rd = 2 * cos.size(-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x_rot, x_pass = (x, None) if rd == x.size(-1) else (x[..., :rd], x[..., rd:])
    x1, x2 = x_rot.chunk(2, dim=-1)
    out = torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)
    return out if x_pass is None else torch.cat((out, x_pass), dim=-1)
