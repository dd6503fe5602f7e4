"""Building blocks shared by the models: the weight-cast linear layer and the matmul dtype. RMSNorm and RoPE live
in ``golf.kernels.rotary`` (the references golf's kernels match)."""

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
