"""Query/key preparation in one pass: per-head RMSNorm, (partial) rotate-half RoPE and the query gain.

What it computes, for x [B, T, H, D] (a head's row), cos/sin [T, R/2] and an optional gain [H]:
    n = x * rsqrt(mean(x^2) + eps)            (F.rms_norm's eps: float32's, as inductor's lowering uses)
    u = n with channels (i, i + R/2), i < R/2, rotated by the position's angle; channels >= R pass through
    y = u * gain[h]
Why a kernel of its own: in the #1019 step inductor (PyTorch 2.11) splits this into three kernels per tensor,
a 64-wide statistics reduction over 786,432 rows, the rotated half and the pass-through half, and writes the
result transposed for attention. On one H100 that came to about 60 ms of a 700 ms step for q alone, with
the statistics kernel at about 210 GB/s (docs/benchmarks.md). Here one program reads a block of rows once and
writes them once, and the backward recomputes the statistics from x instead of saving them.

``norm_rope`` is the one entry point: the Triton kernels on CUDA tensors when ``model.kernels`` asks for them
(golf.kernels), else the PyTorch reference (``reference``), which is also what the tests hold the kernels to.
Both return [B, T, H, D] in x's layout, token-major: ``attend`` hands attention transposed views, and cuDNN then
returns its output token-major too, which proj reads with no transpose copy (the layout FlashAttention-3 takes).
"""

from __future__ import annotations

from torch import Tensor

from golf.kernels import TRITON, use_triton
from golf.kernels.rotary import apply_rotary, rms_norm

if TRITON:
    from golf.kernels import qk_norm_rope_triton as _k


def reference(x: Tensor, cos: Tensor, sin: Tensor, gain: Tensor | None) -> Tensor:
    """The PyTorch form: rms_norm, then RoPE on [T, R/2] tables broadcast over heads, then the gain."""
    y = apply_rotary(rms_norm(x), cos[:, None, :], sin[:, None, :])
    return y if gain is None else y * gain.to(y.dtype)[None, None, :, None]


def norm_rope(x: Tensor, cos: Tensor, sin: Tensor, gain: Tensor | None, mode: str = "auto") -> Tensor:
    """y [B, T, H, D] for x [B, T, H, D], cos/sin [T, R/2] (float32 tables: rounded to x's dtype, as the
    reference does) and gain [H] or None; ``mode`` as ``model.kernels`` (golf.kernels). The kernels take R/2 and
    D/R powers of two (``qk_norm_rope_triton.supported``); other geometries run the reference."""
    if not use_triton(mode, x) or not _k.supported(x.size(-1), 2 * cos.size(-1)):
        return reference(x, cos, sin, gain)
    return _k.norm_rope(*_kernel_inputs(x, cos, sin, gain))


def _kernel_inputs(x: Tensor, cos: Tensor, sin: Tensor, gain: Tensor | None) -> tuple[Tensor, ...]:
    """x, cos, sin and gain as the kernels take them: contiguous, in x's dtype."""
    return x.contiguous(), cos.to(x.dtype).contiguous(), sin.to(x.dtype).contiguous(), \
        None if gain is None else gain.to(x.dtype)


def qkv_reference(qkv: Tensor, heads: int, kv_heads: int, cos: Tensor, sin: Tensor,
                  gain: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(q, k, v) of a [q | k | v] projection [B, T, heads + 2 kv_heads, D]: q and k through ``reference``."""
    q, k, v = qkv.split([heads, kv_heads, kv_heads], dim=2)
    return reference(q, cos, sin, gain), reference(k, cos, sin, None), v


def fuses_qkv(mode: str, x: Tensor, head_dim: int, rope_dims: int) -> bool:
    """Whether ``qkv_norm_rope`` runs its kernel for heads of ``head_dim`` with ``rope_dims`` rotated channels on
    x's device under ``mode`` (``model.kernels``'s ``qkv``): only then is one fused projection worth making."""
    return use_triton(mode, x) and _k.supported(head_dim, rope_dims)


def qkv_norm_rope(qkv: Tensor, heads: int, kv_heads: int, cos: Tensor, sin: Tensor, gain: Tensor | None,
                  mode: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """``qkv_reference`` in one pass (``golf::qkv_norm_rope``) where ``fuses_qkv``, else the reference."""
    if not fuses_qkv(mode, qkv, qkv.size(-1), 2 * cos.size(-1)):
        return qkv_reference(qkv, heads, kv_heads, cos, sin, gain)
    return _k.qkv_norm_rope(*_kernel_inputs(qkv, cos, sin, gain), heads, kv_heads)


def qkv_wide_reference(qkv: Tensor, heads: int, kv_heads: int, cos: Tensor, sin: Tensor, gain: Tensor | None,
                       ve: Tensor | None, grouped: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(q, k, v, v at its own heads or empty) of ``qkv_reference``, v plus ve [B, T, kv_heads, D], k and v repeated
    to the query heads (``repeat_interleave``: query head h reads KV head h // (heads / kv_heads))."""
    q, k, v = qkv_reference(qkv, heads, kv_heads, cos, sin, gain)
    if ve is not None:
        v = v + ve
    g = heads // kv_heads
    return q, k.repeat_interleave(g, dim=2), v.repeat_interleave(g, dim=2), v if grouped else v.new_empty(0)


def qkv_norm_rope_wide(qkv: Tensor, heads: int, kv_heads: int, cos: Tensor, sin: Tensor, gain: Tensor | None,
                       ve: Tensor | None, grouped: bool, mode: str = "auto") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``qkv_wide_reference`` in one pass (``golf::qkv_norm_rope_wide``) where ``fuses_qkv``, else the reference."""
    if not fuses_qkv(mode, qkv, qkv.size(-1), 2 * cos.size(-1)):
        return qkv_wide_reference(qkv, heads, kv_heads, cos, sin, gain, ve, grouped)
    return _k.qkv_norm_rope_wide(*_kernel_inputs(qkv, cos, sin, gain), None if ve is None else ve.contiguous(),
                                 heads, kv_heads, grouped)
