"""XSA, exclusive self-attention (techniques.md §2.3): each head's output y minus its component along the
token's own value v of its KV group, y - (y . v̂) v̂.

Why a kernel of its own: inductor (PyTorch 2.11) spends three kernels per layer on it, the norm of v, the dot
products (read from attention's output) and the subtraction writing proj's input; in the #1019
step about 23 ms (forward and backward) of the 674 on one H100, and 2.2 ms of each 30 ms batch of the sliding
eval (docs/benchmarks.md). The kernel reads y and v once and writes once, each way: the step went from 673.9 to
664.3 ms with it (on two machines), the eval batch from 30.1 to 29.2 ms. ``exclusive`` chooses as
``model.kernels`` says (golf.kernels); ``reference`` is the PyTorch form the tests hold the kernel to.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from golf.kernels import TRITON, use_triton

if TRITON:
    from golf.kernels import xsa_triton as _k


def reference(y: Tensor, v: Tensor) -> Tensor:
    """y [B, T, H, D], v [B, T, Hkv, D]: the query heads of a group are viewed as [B, T, Hkv, H/Hkv, D] so v is
    broadcast, never repeated."""
    B, T, H, D = y.shape
    hkv = v.size(2)
    yg = y.reshape(B, T, hkv, H // hkv, D)
    vn = F.normalize(v, dim=-1).unsqueeze(-2)
    return (yg - (yg * vn).sum(dim=-1, keepdim=True) * vn).reshape(B, T, H, D)


def exclusive(y: Tensor, v: Tensor, mode: str = "auto") -> Tensor:
    """XSA of y [B, T, H, D] against v [B, T, Hkv, D]; returns [B, T, H, D]."""
    if not use_triton(mode, y, v) or y.size(-1) & (y.size(-1) - 1):
        return reference(y, v)
    return _k.xsa(y, v.to(y.dtype))
