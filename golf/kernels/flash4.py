"""Causal attention through FlashAttention-4's CuTe-DSL kernels (``flash_attn.cute``, the ``flash-attn-4`` package of
Dao-AILab/flash-attention; the fa4 extra takes 4.0.0b36 from the package registry, measured here as beta27), which
run on Hopper (SM90) as well as Blackwell.

Why: the records call FlashAttention-3 (``flash_attn_interface``), which has no wheel in our package mirror; on
our H100 without it, the #1019 step spent 209.5 of its 604.5 GPU ms in cuDNN's attention (docs/benchmarks.md).
FA4 is pure Python over the CUTLASS DSL that quack-kernels (the fused MLP) already brings, so it installs wherever
that does. Its own ``flash_attn_func`` is an autograd.Function that torch.compile would trace into; here its
forward and backward are two custom ops returning fresh tensors, opaque to inductor, with explicit schemas (the
shipped artifact's minifier drops the annotations ``custom_op`` would infer them from).

Chosen by ``model.attn_kernel`` (golf.models.attention): ``fa4`` requires it, ``auto`` prefers FA3, then this,
then cuDNN.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from golf.kernels import cute_dsl_problem


@functools.cache
def problem() -> str | None:
    """Why FA4 cannot run here, or None when it can."""
    return cute_dsl_problem("flash_attn.cute.interface", "flash_attn.cute", (9, 10, 11),
                            "FlashAttention-4 runs on SM90, SM100 and SM110 GPUs, this one is {sm}",
                            "pip install -e '.[gpu]' (flash-attn-4 4.0.0b36, with nvidia-cutlass-dsl 4.6.2 or newer)")


@torch.library.custom_op("golf::fa4_forward", mutates_args=(),
                         schema="(Tensor q, Tensor k, Tensor v, float scale) -> (Tensor, Tensor)")
def _forward(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(out [B, T, H, D], lse [B, H, T] fp32) of causal attention, q [B, T, H, D] over k, v [B, T, Hkv, D]."""
    from flash_attn.cute.interface import _flash_attn_fwd

    out, lse, *_ = _flash_attn_fwd(q, k, v, softmax_scale=scale, causal=True, return_lse=True)
    return out, lse


@_forward.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    B, T, H, _ = q.shape
    return q.new_empty(B, T, H, v.size(-1)), q.new_empty(B, H, T, dtype=torch.float32)


@torch.library.custom_op("golf::fa4_backward", mutates_args=(),
                         schema="(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, float scale) "
                                "-> (Tensor, Tensor, Tensor)")
def _backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
              scale: float) -> tuple[Tensor, Tensor, Tensor]:
    from flash_attn.cute.interface import _flash_attn_bwd

    dq, dk, dv = _flash_attn_bwd(q, k, v, out, dout, lse, softmax_scale=scale, causal=True)[:3]
    return dq, dk, dv


@_backward.register_fake
def _(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
      scale: float) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, ctx.scale = inputs
    ctx.save_for_backward(q, k, v, *output)


def _grad(ctx, dout: Tensor, _dlse: Tensor | None):
    dq, dk, dv = _backward(dout, *ctx.saved_tensors, ctx.scale)
    return dq, dk, dv, None


_forward.register_autograd(_grad, setup_context=_setup_context)


def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal attention of q [B, T, H, D] over k, v [B, T, Hkv, D] (bf16 or fp16, on an SM90+ GPU), scaled by
    1/sqrt(D); returns [B, T, H, D]."""
    return _forward(q, k, v, q.size(-1) ** -0.5)[0]
