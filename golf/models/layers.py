"""Building blocks shared by the models: weight-cast linear layers and rotary position embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CastedLinear(nn.Linear):
    """A linear layer whose fp32 master weight is cast to the input's dtype at matmul time.

    ``skip_init`` leaves the weight uninitialised (no random draws), for models whose initialiser
    draws every matrix itself in the records' order. ``fake_quant`` (set by the model on the matrices
    the export quantizes) fake-quantizes the weight in training mode while QAT is on.
    """

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False, skip_init: bool = False,
                 bias: bool = False):
        if skip_init:
            super().__init__(in_features, out_features, bias=bias, device="meta")
            self.weight = nn.Parameter(torch.empty(out_features, in_features))
            if bias:
                self.bias = nn.Parameter(torch.zeros(out_features))
        else:
            super().__init__(in_features, out_features, bias=bias)
        self.zero_init = zero_init
        if zero_init:
            nn.init.zeros_(self.weight)
        object.__setattr__(self, "fake_quant", None)  # a shared FakeQuant, not a submodule of every layer

    def cast_weight(self, dtype: torch.dtype, row_scale: Tensor | None = None) -> Tensor:
        """The weight as the matmul sees it: fake-quantized while QAT trains, its rows (output channels) multiplied
        by ``row_scale`` if given, cast to ``dtype``."""
        fq = self.fake_quant
        w = fq(self.weight) if fq is not None and fq.mode != "none" and self.training else self.weight
        return (w if row_scale is None else w * row_scale.to(w.dtype)[:, None]).to(dtype)

    def forward(self, x: Tensor, row_scale: Tensor | None = None) -> Tensor:
        """x W^T (+ b), or with ``row_scale`` [out] the output scaled per channel, as (row_scale * W) folded into
        the weight: a [out, in] multiply instead of one over every token, and the scale's gradient then comes
        from the weight's gradient instead of a reduction over the tokens."""
        if row_scale is not None and self.bias is not None:
            raise ValueError("row_scale folds into a linear layer without a bias")
        return F.linear(x, self.cast_weight(x.dtype, row_scale), None if self.bias is None else self.bias.to(x.dtype))


def matmul_dtype(x: Tensor) -> torch.dtype:
    """The dtype a matmul on x runs in: autocast's on CUDA where it is on, else x's."""
    return torch.get_autocast_dtype("cuda") if x.is_cuda and torch.is_autocast_enabled("cuda") else x.dtype


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
