"""The Triton kernels behind ``golf.kernels.qk_norm_rope`` (imported only where triton is), as the custom op
``golf::qk_norm_rope`` with its backward, so ``torch.compile(fullgraph=True)`` keeps them in the graph.

A program takes BLOCK rows (one head of one token each, D channels) of x [B, T, H, D] (contiguous). The forward
writes head-major [B, H, T, D]; the backward reads the output gradient in whatever strides it comes, recomputes
the row statistics from x and, with a gain, writes each row's share of the gain gradient (summed per head
afterwards, a [rows] tensor: no atomics, so the result is deterministic). Row derivative of the norm:
dx = rstd * (dn - n * mean(dn * n)); of the rotation: its transpose.

Every load and store is of contiguous channels: the row, then its two rotated halves again (from L1), each
written or read under its own mask, so none is a per-channel gather (the partner-channel gather ran the
backward at about 1.1 TB/s in the #1019 step, machine U). Helpers take no pointers they return loads through
as several values: PyTorch 2.11's mutation analysis would take such a pointer as written and copy its tensor
before every call.
"""

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

EPS = torch.finfo(torch.float32).eps
TILE, WARPS = 4096, 8  # elements per program (64 rows of a 64-wide head) and warps; scripts/bench_kernels.py sweeps them


@triton.jit
def _load(P, row, col, mask):
    return tl.load(P + row[:, None] + col[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _store(P, row, col, val, mask):
    tl.store(P + row[:, None] + col[None, :], val.to(P.dtype.element_ty), mask=mask)


@triton.jit
def _qk_norm_rope_fwd(X, COS, SIN, G, Y, rows, T, H, eps, D: tl.constexpr, HALF: tl.constexpr, HAS_GAIN: tl.constexpr,
                      BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    c, j = tl.arange(0, D), tl.arange(0, HALF)
    live = r < rows
    m = live[:, None]
    x = _load(X, r * D, c, m)
    x1, x2 = _load(X, r * D, j, m), _load(X, r * D + HALF, j, m)
    t, h = (r // H) % T, r % H
    cs, sn = _load(COS, t * HALF, j, m), _load(SIN, t * HALF, j, m)
    scale = tl.rsqrt(tl.sum(x * x, axis=1) / D + eps)
    if HAS_GAIN:
        scale = scale * tl.load(G + h, mask=live, other=0.0).to(tl.float32)
    s = scale[:, None]
    out = (r // (T * H)) * (H * T * D) + h * (T * D) + t * D
    _store(Y, out, c, x * s, m & (c >= 2 * HALF)[None, :])
    _store(Y, out, j, (x1 * cs + x2 * sn) * s, m)
    _store(Y, out + HALF, j, (x2 * cs - x1 * sn) * s, m)


@triton.jit
def _qk_norm_rope_bwd(DY, X, COS, SIN, G, DX, DG, rows, T, H, sb, sh, st, sd, eps, D: tl.constexpr, HALF: tl.constexpr,
                      HAS_GAIN: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    c, j = tl.arange(0, D), tl.arange(0, HALF)
    live = r < rows
    m = live[:, None]
    passing = m & (c >= 2 * HALF)[None, :]
    x = _load(X, r * D, c, m)
    x1, x2 = _load(X, r * D, j, m), _load(X, r * D + HALF, j, m)
    t, h = (r // H) % T, r % H
    cs, sn = _load(COS, t * HALF, j, m), _load(SIN, t * HALF, j, m)
    rstd = tl.rsqrt(tl.sum(x * x, axis=1) / D + eps)
    base = (r // (T * H)) * sb + h * sh + t * st
    dy = tl.where(passing, _load(DY, base, c * sd, m), 0.0)
    dy1, dy2 = _load(DY, base, j * sd, m), _load(DY, base + HALF * sd, j * sd, m)
    r2 = rstd[:, None]
    n, n1, n2 = x * r2, x1 * r2, x2 * r2
    if HAS_GAIN:  # the row's share of the gain gradient: dy . (the normed, rotated row)
        dg = tl.sum(dy * n, axis=1) + tl.sum(dy1 * (n1 * cs + n2 * sn), axis=1) + tl.sum(dy2 * (n2 * cs - n1 * sn), axis=1)
        tl.store(DG + r, dg, mask=live)
        g = tl.load(G + h, mask=live, other=0.0).to(tl.float32)[:, None]
        dy, dy1, dy2 = dy * g, dy1 * g, dy2 * g
    dn1, dn2 = dy1 * cs - dy2 * sn, dy2 * cs + dy1 * sn  # the rotation's transpose
    mean = ((tl.sum(dy * n, axis=1) + tl.sum(dn1 * n1, axis=1) + tl.sum(dn2 * n2, axis=1)) / D)[:, None]
    _store(DX, r * D, c, r2 * (dy - n * mean), passing)
    _store(DX, r * D, j, r2 * (dn1 - n1 * mean), m)
    _store(DX, r * D + HALF, j, r2 * (dn2 - n2 * mean), m)


def _launch(x: Tensor, cos: Tensor) -> tuple[int, tuple[int], dict]:
    B, T, H, D = x.shape
    rows, block = B * T * H, max(1, TILE // D)
    return rows, (triton.cdiv(rows, block),), dict(D=D, HALF=cos.size(-1), BLOCK=block, num_warps=WARPS)


@triton_op("golf::qk_norm_rope", mutates_args=())
def norm_rope(x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor]) -> Tensor:  # noqa: UP045 (the op's schema)
    """y [B, H, T, D] for contiguous x [B, T, H, D], cos/sin [T, R/2] and gain [H] or None."""
    B, T, H, D = x.shape
    y = x.new_empty(B, H, T, D)
    rows, grid, meta = _launch(x, cos)
    wrap_triton(_qk_norm_rope_fwd)[grid](x, cos, sin, x if gain is None else gain, y, rows, T, H, EPS,
                                         HAS_GAIN=gain is not None, **meta)
    return y


@triton_op("golf::qk_norm_rope_backward", mutates_args=())
def norm_rope_backward(dy: Tensor, x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor]) -> tuple[Tensor, Tensor]:  # noqa: UP045, E501
    """(dx [B, T, H, D], dgain [H], empty without a gain) for dy [B, H, T, D] in any strides."""
    B, T, H, D = x.shape
    dx = torch.empty_like(x)
    rows, grid, meta = _launch(x, cos)
    dg = torch.empty(rows if gain is not None else 0, device=x.device, dtype=torch.float32)
    wrap_triton(_qk_norm_rope_bwd)[grid](dy, x, cos, sin, x if gain is None else gain, dx, dg, rows, T, H, *dy.stride(),
                                         EPS, HAS_GAIN=gain is not None, **meta)
    return dx, (dg.view(-1, H).sum(0).to(gain.dtype) if gain is not None else dg)


def _setup(ctx, inputs, output) -> None:
    x, cos, sin, gain = inputs
    ctx.save_for_backward(x, cos, sin, gain)


def _backward(ctx, dy: Tensor):
    x, cos, sin, gain = ctx.saved_tensors
    dx, dg = norm_rope_backward(dy, x, cos, sin, gain)
    return dx, None, None, (dg if gain is not None else None)


norm_rope.register_autograd(_backward, setup_context=_setup)
