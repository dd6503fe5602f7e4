"""The MLP with its activation fused into the GEMMs: y = f(x W_fc^T) W_proj^T, f(h) = leaky(h, slope)^2
(ReLU^2 at slope 0).

Why a kernel of its own: inductor (PyTorch 2.11) writes h from cuBLAS, reads it back to write f(h), and in the
backward writes the activation gradient from cuBLAS and reads it back beside h. At the #1019 shapes on one H100
those two elementwise kernels took 43.7 ms of a 665 ms step and LeakyReLU^2 2.7 ms of each 28 ms batch of the
sliding eval (docs/benchmarks.md). Here the activation and its derivative run in the epilogue of the GEMM that
produces their input (golf.kernels.mlp_triton); the other three GEMMs of the backward stay with cuBLAS.
``mlp`` chooses as ``model.kernels`` says (golf.kernels); ``reference`` is the PyTorch form the tests hold the
kernel to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from golf.kernels import TRITON, use_triton

if TRITON:
    from golf.kernels import mlp_triton as _k


def reference(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float) -> Tensor:
    h = F.linear(x, w_fc)
    h = torch.relu(h) if slope == 0 else F.leaky_relu(h, negative_slope=slope)
    return F.linear(h.square(), w_proj)


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype


def mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float, mode: str = "auto") -> Tensor:
    """y [..., dim] for x [..., dim], w_fc [hidden, dim], w_proj [dim, hidden]; under autocast the operands are
    cast to its dtype, as F.linear's would be."""
    if not use_triton(mode, x) or x.size(-1) % _k.CONFIG[2]:
        return reference(x, w_fc, w_proj, slope)
    dt = _compute_dtype(x)
    x2 = x.reshape(-1, x.size(-1)).to(dt)
    keep = torch.is_grad_enabled() and (x.requires_grad or w_fc.requires_grad or w_proj.requires_grad)
    y = _k.mlp(x2.contiguous(), w_fc.to(dt).contiguous(), w_proj.to(dt).contiguous(), float(slope), keep)[0]
    return y.view(*x.shape[:-1], y.size(-1))
