"""The Triton kernels behind ``golf.kernels.qk_norm_rope`` (imported only where triton is), as the custom ops
``golf::qk_norm_rope`` (one tensor of heads), ``golf::qkv_norm_rope`` (the [q | k | v] heads of one fused
projection: q and k prepared, v copied out, and in the backward one gradient in the projection's layout, so the
three input-gradient GEMMs are one) and ``golf::qkv_norm_rope_wide`` (the same with k and v written at the query
heads, each KV head repeated: FlashAttention's backward then writes dK, dV directly instead of accumulating a group's
heads in fp32 and converting; the repeats' gradients are summed here, in registers, as they are read), with their
backwards, so ``torch.compile(fullgraph=True)`` keeps them in the graph. All run the same two kernels, the
projection's once per part (q, k, then v, which passes through), each part's rows read from, and the gradient
written to, their place in the projection's layout.

A program takes BLOCK rows (one head of one token each, D channels) of x [B, T, H, D] (contiguous). It sees each row
as NB = D / R blocks of two halves of R/2 channels, [BLOCK, NB, R/2] twice: the first block's halves are RoPE's
pairs (i, i + R/2), the other blocks pass through (cos 1, sin 0). Every load is then contiguous within a half (16
bytes for R = 16 in bf16), with no gathers of a channel's rotation partner: on machine V gathers had made the
backward 1.9x slower than the forward. Stores join the halves back in registers and write whole rows: a store per
half leaves every other 16 bytes to a second instruction, which cost the wide form's forward, three quarters of
whose bytes are writes, 31.1 ms per #1019 step against 17.8 ms with whole rows (machines FL, FM). The forward writes
y in x's layout [B, T, H, D] (attention then gets
token-major heads, cuDNN returns its output token-major, and proj reads that without a transpose copy: 3.6 ms of the
baseline's step on machine X); the backward reads the output gradient in whatever strides it comes, recomputes the
row statistics from x and, with a gain, writes each row's share of the gain gradient (summed per head afterwards: no
atomics, so the result is deterministic). Row derivative of the norm: dx = rstd * (dn - n * mean(dn * n)); of the
rotation: its transpose.

Row indices are int32 and the head count a constant, so (t, h) = ((r / H) % T, r % H) costs shifts and one
int32 division, where int64 divisions are long software routines; offsets are int64. Helpers take no pointers
through which they return several loads: PyTorch 2.11's mutation analysis would take that pointer as written and
copy its tensor before every call.
"""

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

EPS = torch.finfo(torch.float32).eps
# (elements per program, warps) of each direction, from scripts/bench_kernels.py's sweeps on machines Y and Z
FWD, BWD = (1024, 4), (1024, 2)


def supported(head_dim: int, rope_dims: int) -> bool:
    """Whether the kernels take this geometry: R/2 and D/R powers of two (every record's: R = 16 or R = D)."""
    half, blocks = rope_dims // 2, head_dim // max(rope_dims, 1)
    return (rope_dims % 2 == 0 and half > 0 and head_dim % rope_dims == 0
            and half & (half - 1) == 0 and blocks & (blocks - 1) == 0)


@triton.jit
def _rows(rows, T, H: tl.constexpr, XH: tl.constexpr, FIRST: tl.constexpr, D: tl.constexpr, NB: tl.constexpr,
          HALF: tl.constexpr, BLOCK: tl.constexpr):
    """This program's rows r (int32) of H heads per token, their mask [BLOCK] and [BLOCK, 1, 1], the mask [1, NB, 1]
    of the rotated block, the channel offsets [1, NB, HALF] of each block's first half (add HALF for the second),
    the rows' offsets (int64) in a tensor of these H heads and in x (XH heads per token, these from FIRST on),
    their row indices in x (int64, [BLOCK]), positions t and heads h."""
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = r < rows
    b = tl.arange(0, NB)[None, :, None]
    c = b * (2 * HALF) + tl.arange(0, HALF)[None, None, :]
    tok, h = r // H, r % H
    xrow = tok.to(tl.int64) * XH + FIRST + h
    return (r, live, live[:, None, None], b == 0, c, r.to(tl.int64)[:, None, None] * D + c,
            xrow[:, None, None] * D + c, xrow, tok % T, h)


@triton.jit
def _rstd(xa, xb, D: tl.constexpr, eps):
    return tl.rsqrt(tl.sum(tl.sum(xa * xa + xb * xb, axis=2), axis=1) / D + eps)


@triton.jit
def _load(P, off, mask):
    return tl.load(P + off, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _table(P, t, mask, rotated, past, HALF: tl.constexpr):
    """cos (past = 1) or sin (past = 0) [BLOCK, NB, HALF] of each row's position t: the table's in the first
    block, ``past`` in the others."""
    j = t[:, None, None] * HALF + tl.arange(0, HALF)[None, None, :]
    return tl.where(rotated, _load(P, j, mask & rotated), past)


@triton.jit
def _store_rows(P, row, live, ya, yb, D: tl.constexpr):
    """Store the halves ya, yb [BLOCK, NB, HALF] as whole rows of D channels at P + row * D (row [BLOCK], int64):
    one contiguous store per row, where a store per half leaves every other 16 bytes to a second instruction."""
    y = tl.reshape(tl.permute(tl.join(ya, yb), (0, 1, 3, 2)), (ya.shape[0], D))
    tl.store(P + row[:, None] * D + tl.arange(0, D)[None, :], y.to(P.dtype.element_ty), mask=live[:, None])


@triton.jit
def _qk_norm_rope_fwd(X, COS, SIN, G, ADD, Y, Y2, rows, T, H: tl.constexpr, XH: tl.constexpr, FIRST: tl.constexpr,
                      eps, D: tl.constexpr, NB: tl.constexpr, HALF: tl.constexpr, HAS_GAIN: tl.constexpr,
                      PASS: tl.constexpr, REP: tl.constexpr, HAS_ADD: tl.constexpr, COPY: tl.constexpr,
                      BLOCK: tl.constexpr):
    r, live, m, rotated, c, yo, xo, xrow, t, h = _rows(rows, T, H, XH, FIRST, D, NB, HALF, BLOCK)
    xa, xb = _load(X, xo, m), _load(X, xo + HALF, m)
    if PASS:  # v's heads of a [q | k | v] projection, copied out (plus the value embedding)
        if HAS_ADD:
            xa, xb = xa + _load(ADD, yo, m), xb + _load(ADD, yo + HALF, m)
        ya, yb = xa, xb
        if COPY:  # v at its own heads too, beside the copies at the query heads
            _store_rows(Y2, r.to(tl.int64), live, ya, yb, D)
    else:
        cs, sn = _table(COS, t, m, rotated, 1.0, HALF), _table(SIN, t, m, rotated, 0.0, HALF)
        scale = _rstd(xa, xb, D, eps)
        if HAS_GAIN:
            scale = scale * tl.load(G + h, mask=live, other=0.0).to(tl.float32)
        s = scale[:, None, None]
        ya, yb = (xa * cs + xb * sn) * s, (xb * cs - xa * sn) * s
    for k in tl.static_range(REP):  # REP copies of each row: heads h * REP + k
        _store_rows(Y, r.to(tl.int64) * REP + k, live, ya, yb, D)


@triton.jit
def _qk_norm_rope_bwd(DY, DY2, X, COS, SIN, G, DX, DG, DADD, rows, T, H: tl.constexpr, XH: tl.constexpr,
                      FIRST: tl.constexpr, sb, st, sh, sd, eps, D: tl.constexpr, NB: tl.constexpr,
                      HALF: tl.constexpr, HAS_GAIN: tl.constexpr, PASS: tl.constexpr, REP: tl.constexpr,
                      HAS_DY2: tl.constexpr, HAS_ADD: tl.constexpr, BLOCK: tl.constexpr):
    r, live, m, rotated, c, yo, xo, xrow, t, h = _rows(rows, T, H, XH, FIRST, D, NB, HALF, BLOCK)
    do = (((r // H) // T).to(tl.int64) * sb + (h * REP).to(tl.int64) * sh + t.to(tl.int64) * st)[:, None, None] + c * sd
    da, db = _load(DY, do, m), _load(DY, do + HALF * sd, m)
    for k in tl.static_range(1, REP):  # the row's copies at the query heads: their gradients summed
        da, db = da + _load(DY, do + k * sh, m), db + _load(DY, do + k * sh + HALF * sd, m)
    if HAS_DY2:  # and the gradient of v at its own heads (contiguous)
        da, db = da + _load(DY2, yo, m), db + _load(DY2, yo + HALF, m)
    if PASS:
        dxa, dxb = da, db
        if HAS_ADD:
            _store_rows(DADD, r.to(tl.int64), live, dxa, dxb, D)
    else:
        xa, xb = _load(X, xo, m), _load(X, xo + HALF, m)
        cs, sn = _table(COS, t, m, rotated, 1.0, HALF), _table(SIN, t, m, rotated, 0.0, HALF)
        rstd = _rstd(xa, xb, D, eps)[:, None, None]
        if HAS_GAIN:
            ua, ub = (xa * cs + xb * sn) * rstd, (xb * cs - xa * sn) * rstd
            tl.store(DG + r, tl.sum(tl.sum(da * ua + db * ub, axis=2), axis=1), mask=live)
            g = tl.load(G + h, mask=live, other=0.0).to(tl.float32)[:, None, None]
            da, db = da * g, db * g
        na, nb = xa * rstd, xb * rstd
        dna, dnb = da * cs - db * sn, db * cs + da * sn
        mean = (tl.sum(tl.sum(dna * na + dnb * nb, axis=2), axis=1) / D)[:, None, None]
        dxa, dxb = rstd * (dna - na * mean), rstd * (dnb - nb * mean)
    _store_rows(DX, xrow, live, dxa, dxb, D)


def _launch(x: Tensor, heads: int, cos: Tensor, config: tuple[int, int]) -> tuple[int, tuple[int], dict]:
    B, T, _, D = x.shape
    tile, warps = config
    half = cos.size(-1)
    rows, block = B * T * heads, max(1, tile // D)
    return rows, (triton.cdiv(rows, block),), dict(D=D, NB=D // (2 * half), HALF=half, BLOCK=block, num_warps=warps)


def _segments(x: Tensor, hq: int, hk: int, rep: int) -> list[tuple[int, int, bool, int]]:
    """(first head, heads, pass through, copies of each head) of each part of x: all its heads, or a [q | k | v]
    projection's three, k's and v's heads each written ``rep`` times."""
    H = x.size(2)
    return [(0, H, False, 1)] if not hk else [(0, hq, False, 1), (hq, hk, False, rep), (hq + hk, H - hq - hk, True, rep)]


def _forward(x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor], hq: int, hk: int, rep: int = 1,  # noqa: UP045
             add: Optional[Tensor] = None, grouped: bool = False) -> list[Tensor]:  # noqa: UP045
    """[y] for the heads of x, or with hk > 0 [q, k, v] for x's first hq, next hk and remaining heads, k's and v's
    heads each repeated ``rep`` times (v plus ``add``), then with ``grouped`` v once more at its own heads; one
    launch per part."""
    B, T, H, D = x.shape
    outs = []
    for first, n, passing, r in _segments(x, hq, hk, rep):
        y = x.new_empty(B, T, n * r, D)
        copy = x.new_empty(B, T, n, D) if passing and grouped else None
        a = add if passing else None
        g = gain if first == 0 else None
        rows, grid, meta = _launch(x, n, cos, FWD)
        wrap_triton(_qk_norm_rope_fwd)[grid](
            x, cos, sin, x if g is None else g, x if a is None else a, y, y if copy is None else copy, rows, T, n, H,
            first, EPS, HAS_GAIN=g is not None, PASS=passing, REP=r, HAS_ADD=a is not None, COPY=copy is not None,
            **meta)
        outs += [y] if copy is None else [y, copy]
    return outs


def _backward(dys: list[Tensor], x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor], hq: int,  # noqa: UP045
              hk: int, rep: int = 1, add: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:  # noqa: UP045
    """(dx in x's layout, dgain (empty without a gain), dadd (empty without ``add``)) for the gradients of
    ``_forward``'s outputs, in any strides; a gradient after the parts' is that of the grouped v."""
    B, T, H, D = x.shape
    dx = torch.empty_like(x)
    dg = torch.empty(0, device=x.device, dtype=torch.float32)
    dadd = x.new_empty(0) if add is None else torch.empty_like(add)
    parts = _segments(x, hq, hk, rep)
    extra = dys[len(parts)].contiguous() if len(dys) > len(parts) else None
    for dy, (first, n, passing, r) in zip(dys, parts):
        rows, grid, meta = _launch(x, n, cos, BWD)
        g = gain if first == 0 else None
        if g is not None:
            dg = torch.empty(rows, device=x.device, dtype=torch.float32)
        dy2 = extra if passing else None
        wrap_triton(_qk_norm_rope_bwd)[grid](
            dy, dy if dy2 is None else dy2, x, cos, sin, x if g is None else g, dx, dg,
            dadd if passing and add is not None else dx, rows, T, n, H, first, *dy.stride(), EPS,
            HAS_GAIN=g is not None, PASS=passing, REP=r, HAS_DY2=dy2 is not None, HAS_ADD=passing and add is not None,
            **meta)
    dgain = dg.view(-1, hq if hk else H).sum(0).to(gain.dtype) if gain is not None else dg
    return dx, dgain, dadd


@triton_op("golf::qk_norm_rope", mutates_args=())
def norm_rope(x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor]) -> Tensor:  # noqa: UP045 (the op's schema)
    """y [B, T, H, D] (contiguous) for contiguous x [B, T, H, D], cos/sin [T, R/2] and gain [H] or None."""
    return _forward(x, cos, sin, gain, x.size(2), 0)[0]


@triton_op("golf::qk_norm_rope_backward", mutates_args=())
def norm_rope_backward(dy: Tensor, x: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor]) -> tuple[Tensor, Tensor]:  # noqa: UP045, E501
    """(dx [B, T, H, D], dgain [H], empty without a gain) for dy [B, T, H, D] in any strides."""
    return _backward([dy], x, cos, sin, gain, x.size(2), 0)[:2]


@triton_op("golf::qkv_norm_rope", mutates_args=())
def qkv_norm_rope(qkv: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor], heads: int,  # noqa: UP045
                  kv_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(q [B, T, heads, D] normalised, rotated and scaled by gain [heads], k [B, T, kv_heads, D] normalised and
    rotated, v [B, T, kv_heads, D] as it is) from one projection qkv [B, T, heads + 2 kv_heads, D] (contiguous),
    in one pass; each output contiguous."""
    q, k, v = _forward(qkv, cos, sin, gain, heads, kv_heads)
    return q, k, v


@triton_op("golf::qkv_norm_rope_backward", mutates_args=())
def qkv_norm_rope_backward(dq: Tensor, dk: Tensor, dv: Tensor, qkv: Tensor, cos: Tensor, sin: Tensor,
                           gain: Optional[Tensor], heads: int, kv_heads: int) -> tuple[Tensor, Tensor]:  # noqa: UP045
    """(dqkv in qkv's layout, dgain [heads], empty without a gain) for dq, dk, dv in any strides."""
    return _backward([dq, dk, dv], qkv, cos, sin, gain, heads, kv_heads)[:2]


@triton_op("golf::qkv_norm_rope_wide", mutates_args=())
def qkv_norm_rope_wide(qkv: Tensor, cos: Tensor, sin: Tensor, gain: Optional[Tensor], ve: Optional[Tensor],  # noqa: UP045
                       heads: int, kv_heads: int, grouped: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``qkv_norm_rope`` with k and v written at the query heads, [B, T, heads, D], each KV head repeated
    heads / kv_heads times (``repeat_interleave``'s order, the grouping attention uses), v plus ve
    [B, T, kv_heads, D] (contiguous) if given; and that v at its own heads if ``grouped`` (else empty)."""
    outs = _forward(qkv, cos, sin, gain, heads, kv_heads, heads // kv_heads, ve, grouped)
    q, k, v, own = outs if grouped else (*outs, qkv.new_empty(0))
    return q, k, v, own


@triton_op("golf::qkv_norm_rope_wide_backward", mutates_args=())
def qkv_norm_rope_wide_backward(dq: Tensor, dk: Tensor, dv: Tensor, dv_own: Optional[Tensor], qkv: Tensor,  # noqa: UP045
                                cos: Tensor, sin: Tensor, gain: Optional[Tensor], ve: Optional[Tensor], heads: int,  # noqa: UP045
                                kv_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(dqkv, dgain, dve; each empty where its input is None) for the gradients of ``qkv_norm_rope_wide``'s outputs
    (dv_own None where v was not returned at its own heads): each KV head's copies' gradients summed in registers."""
    dys = [dq, dk, dv] + ([] if dv_own is None else [dv_own])
    return _backward(dys, qkv, cos, sin, gain, heads, kv_heads, heads // kv_heads, ve)


def _setup(ctx, inputs, output) -> None:
    x, cos, sin, gain, *heads = inputs
    ctx.heads = heads
    ctx.save_for_backward(x, cos, sin, gain)


def _grad(ctx, *dys: Tensor):
    x, cos, sin, gain = ctx.saved_tensors
    if ctx.heads:
        dx, dg = qkv_norm_rope_backward(*dys, x, cos, sin, gain, *ctx.heads)
    else:
        dx, dg = norm_rope_backward(*dys, x, cos, sin, gain)
    return dx, None, None, (dg if gain is not None else None), *(None for _ in ctx.heads)


def _setup_wide(ctx, inputs, output) -> None:
    x, cos, sin, gain, ve, heads, kv_heads, grouped = inputs
    ctx.heads, ctx.grouped = (heads, kv_heads), grouped
    ctx.save_for_backward(x, cos, sin, gain, ve)


def _grad_wide(ctx, dq: Tensor, dk: Tensor, dv: Tensor, dv_own: Tensor):
    x, cos, sin, gain, ve = ctx.saved_tensors
    own = dv_own if ctx.grouped else None
    dx, dg, dve = qkv_norm_rope_wide_backward(dq, dk, dv, own, x, cos, sin, gain, ve, *ctx.heads)
    return dx, None, None, (dg if gain is not None else None), (dve if ve is not None else None), None, None, None


norm_rope.register_autograd(_grad, setup_context=_setup)
qkv_norm_rope.register_autograd(_grad, setup_context=_setup)
qkv_norm_rope_wide.register_autograd(_grad_wide, setup_context=_setup_wide)
