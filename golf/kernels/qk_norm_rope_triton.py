"""The Triton kernels behind ``golf.kernels.qk_norm_rope`` (imported only where triton is), as the custom op
``golf::qk_norm_rope`` with its backward, so ``torch.compile(fullgraph=True)`` keeps them in the graph.

A program takes BLOCK rows (one head of one token each, D channels) of x [B, T, H, D] (contiguous). The forward
writes head-major [B, H, T, D]; the backward reads the output gradient in whatever strides it comes, recomputes
the row statistics from x and, with a gain, writes each row's share of the gain gradient (summed per head
afterwards, a [rows] tensor: no atomics, so the result is deterministic). Row derivative of the norm:
dx = rstd * (dn - n * mean(dn * n)); of the rotation: its transpose.

The forward loads and stores contiguous channels only: the row, then its two rotated halves again (from L1),
each under its own mask. On machine V that made it 1.3-1.8x faster than reading each channel's rotation partner
by a gather, which the backward keeps: there the same change was 1.2x slower (scripts/bench_kernels.py, same
call). Helpers never return loads through several values from a pointer they take: PyTorch 2.11's mutation
analysis would take that pointer as written and copy its tensor before every call.
"""

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

EPS = torch.finfo(torch.float32).eps
# (elements per program, warps) of each direction, from scripts/bench_kernels.py's sweep on machine V
FWD, BWD = (2048, 4), (4096, 8)


@triton.jit
def _rows(rows, T, H, D: tl.constexpr, HALF: tl.constexpr, BLOCK: tl.constexpr):
    """This program's rows: indices, channels, partner channels, row mask (1-D and 2-D), positions, table
    columns, which channels are the first rotated half, and the mask of the rotated channels. Helpers take no
    pointers: inductor's mutation analysis (PyTorch 2.11) takes a pointer passed to a helper returning several
    values as written, and then copies that input before every call."""
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    c = tl.arange(0, D)
    live = r < rows
    m = live[:, None]
    first = c < HALF
    rot = c < 2 * HALF
    p = tl.where(first, c + HALF, tl.where(rot, c - HALF, c))
    return r, c, p, live, m, (r // H) % T, tl.where(first, c, c - HALF), first, m & rot[None, :]


@triton.jit
def _gather(P, row, col, mask, other):
    return tl.load(P + row[:, None] + col[None, :], mask=mask, other=other).to(tl.float32)


@triton.jit
def _signed_sin(SIN, t, j, first, tm, HALF: tl.constexpr):
    """The signed sin each channel's partner is multiplied by (0 past the rotated channels; the cos is 1 there)."""
    sn = _gather(SIN, t * HALF, j, tm, 0.0)
    return tl.where(first[None, :], sn, -sn)


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
    x = _gather(X, r * D, c, m, 0.0)
    x1, x2 = _gather(X, r * D, j, m, 0.0), _gather(X, r * D + HALF, j, m, 0.0)
    t, h = (r // H) % T, r % H
    cs, sn = _gather(COS, t * HALF, j, m, 0.0), _gather(SIN, t * HALF, j, m, 0.0)
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
    r, c, p, live, m, t, j, first, tm = _rows(rows, T, H, D, HALF, BLOCK)
    x, xp = _gather(X, r * D, c, m, 0.0), _gather(X, r * D, p, m, 0.0)
    cs, sn = _gather(COS, t * HALF, j, tm, 1.0), _signed_sin(SIN, t, j, first, tm, HALF)
    rstd = tl.rsqrt(tl.sum(x * x, axis=1) / D + eps)
    h = r % H
    base = (r // (T * H)) * sb + h * sh + t * st
    dy = tl.load(DY + base[:, None] + c[None, :] * sd, mask=m, other=0.0).to(tl.float32)
    dyp = tl.load(DY + base[:, None] + p[None, :] * sd, mask=m, other=0.0).to(tl.float32)
    if HAS_GAIN:
        u = (x * cs + xp * sn) * rstd[:, None]
        tl.store(DG + r, tl.sum(dy * u, axis=1), mask=live)
        g = tl.load(G + h, mask=live, other=0.0).to(tl.float32)[:, None]
        dy = dy * g
        dyp = dyp * g
    dn = dy * cs - dyp * sn
    n = x * rstd[:, None]
    dx = rstd[:, None] * (dn - n * (tl.sum(dn * n, axis=1) / D)[:, None])
    tl.store(DX + r[:, None] * D + c[None, :], dx.to(DX.dtype.element_ty), mask=m)


def _launch(x: Tensor, cos: Tensor, config: tuple[int, int]) -> tuple[int, tuple[int], dict]:
    B, T, H, D = x.shape
    tile, warps = config
    rows, block = B * T * H, max(1, tile // D)
    return rows, (triton.cdiv(rows, block),), dict(D=D, HALF=cos.size(-1), BLOCK=block, num_warps=warps)


@triton_op("golf::qk_norm_rope", mutates_args=())
def norm_rope(x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor]) -> Tensor:  # noqa: UP045 (the op's schema)
    """y [B, H, T, D] for contiguous x [B, T, H, D], cos/sin [T, R/2] and gain [H] or None."""
    B, T, H, D = x.shape
    y = x.new_empty(B, H, T, D)
    rows, grid, meta = _launch(x, cos, FWD)
    wrap_triton(_qk_norm_rope_fwd)[grid](x, cos, sin, x if gain is None else gain, y, rows, T, H, EPS,
                                         HAS_GAIN=gain is not None, **meta)
    return y


@triton_op("golf::qk_norm_rope_backward", mutates_args=())
def norm_rope_backward(dy: Tensor, x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor]) -> tuple[Tensor, Tensor]:  # noqa: UP045, E501
    """(dx [B, T, H, D], dgain [H], empty without a gain) for dy [B, H, T, D] in any strides."""
    B, T, H, D = x.shape
    dx = torch.empty_like(x)
    rows, grid, meta = _launch(x, cos, BWD)
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
