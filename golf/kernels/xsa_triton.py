"""The Triton kernels behind ``golf.kernels.xsa`` (imported only where triton is), as the custom op
``golf::xsa`` with its backward.

A program takes BLOCK (token, KV group) rows: the group's value v [D] and its G query heads' outputs y [G, D],
read in whatever strides they come (cuDNN returns attention's output in q's layout, token-major). With vn = v / max(|v|, eps):
    forward   o = y - (y . vn) vn                      per head, written [B, T, H, D] contiguous (proj's input)
    backward  dy = do - (do . vn) vn                   (the projection is symmetric)
              dvn = -sum over the G heads of ((y . vn) do + (do . vn) y)
              dv = (dvn - vn (vn . dvn)) / |v|         (F.normalize's backward; dvn / eps where |v| < eps)
The G heads are summed in registers, so dv needs neither atomics nor a second pass.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

EPS = 1e-12  # F.normalize's
TILE, WARPS = 1024, 2  # elements per program and warps: scripts/bench_kernels.py's sweep on machine Z


@triton.jit
def _offset(r, T, J: tl.constexpr, sb, st, sh, G: tl.constexpr, k: tl.constexpr):
    """Element offset (int64, without the channel) of head j*G + k of row r = (b, t, j) (int32: divisions by the
    constant J are shifts or multiplies, where int64 ones are long software routines) in a [B, T, J*G, D] tensor
    of strides sb, st, sh (G = 1, k = 0: the row's own slot, e.g. in v)."""
    return ((r // J) // T).to(tl.int64) * sb + ((r // J) % T).to(tl.int64) * st + ((r % J) * G + k).to(tl.int64) * sh


@triton.jit
def _xsa_fwd(Y, V, OUT, rows, T, J: tl.constexpr, ys_b, ys_t, ys_h, ys_d, vs_b, vs_t, vs_j, vs_d, eps,
             D: tl.constexpr, G: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    c = tl.arange(0, D)
    m = (r < rows)[:, None]
    v = tl.load(V + _offset(r, T, J, vs_b, vs_t, vs_j, 1, 0)[:, None] + c[None, :] * vs_d, mask=m, other=0.0).to(tl.float32)
    vn = v / tl.maximum(tl.sqrt(tl.sum(v * v, axis=1)), eps)[:, None]
    for k in tl.static_range(G):
        y = tl.load(Y + _offset(r, T, J, ys_b, ys_t, ys_h, G, k)[:, None] + c[None, :] * ys_d, mask=m,
                    other=0.0).to(tl.float32)
        o = y - tl.sum(y * vn, axis=1)[:, None] * vn
        tl.store(OUT + (r.to(tl.int64) * G + k)[:, None] * D + c[None, :], o.to(OUT.dtype.element_ty), mask=m)


@triton.jit
def _xsa_bwd(DO, Y, V, DY, DV, rows, T, J: tl.constexpr, ds_b, ds_t, ds_h, ds_d, ys_b, ys_t, ys_h, ys_d, vs_b, vs_t, vs_j, vs_d, eps,
             D: tl.constexpr, G: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    c = tl.arange(0, D)
    m = (r < rows)[:, None]
    v = tl.load(V + _offset(r, T, J, vs_b, vs_t, vs_j, 1, 0)[:, None] + c[None, :] * vs_d, mask=m, other=0.0).to(tl.float32)
    norm = tl.sqrt(tl.sum(v * v, axis=1))
    nrm = tl.maximum(norm, eps)
    vn = v / nrm[:, None]
    dvn = tl.zeros([BLOCK, D], dtype=tl.float32)
    for k in tl.static_range(G):
        yb = _offset(r, T, J, ys_b, ys_t, ys_h, G, k)
        db = _offset(r, T, J, ds_b, ds_t, ds_h, G, k)
        y = tl.load(Y + yb[:, None] + c[None, :] * ys_d, mask=m, other=0.0).to(tl.float32)
        do = tl.load(DO + db[:, None] + c[None, :] * ds_d, mask=m, other=0.0).to(tl.float32)
        s = tl.sum(y * vn, axis=1)[:, None]
        q = tl.sum(do * vn, axis=1)[:, None]
        tl.store(DY + (r.to(tl.int64) * G + k)[:, None] * D + c[None, :], (do - q * vn).to(DY.dtype.element_ty), mask=m)
        dvn -= s * do + q * y
    radial = tl.where(norm > eps, tl.sum(vn * dvn, axis=1), 0.0)[:, None]
    dv = (dvn - radial * vn) / nrm[:, None]
    tl.store(DV + r.to(tl.int64)[:, None] * D + c[None, :], dv.to(DV.dtype.element_ty), mask=m)


def _launch(v: Tensor) -> tuple[int, tuple[int], dict]:
    B, T, J, D = v.shape
    rows, block = B * T * J, max(1, TILE // D)
    return rows, (triton.cdiv(rows, block),), dict(D=D, BLOCK=block, num_warps=WARPS)


@triton_op("golf::xsa", mutates_args=())
def xsa(y: Tensor, v: Tensor) -> Tensor:
    """o [B, T, H, D] (contiguous) for y [B, T, H, D] and v [B, T, J, D], H a multiple of J, any strides."""
    B, T, H, D = y.shape
    o = torch.empty(B, T, H, D, device=y.device, dtype=y.dtype)
    rows, grid, meta = _launch(v)
    wrap_triton(_xsa_fwd)[grid](y, v, o, rows, T, v.size(2), *y.stride(), *v.stride(), EPS, G=H // v.size(2), **meta)
    return o


@triton_op("golf::xsa_backward", mutates_args=())
def xsa_backward(do: Tensor, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(dy [B, T, H, D], dv [B, T, J, D]), both contiguous, for the output gradient do in any strides."""
    B, T, H, D = y.shape
    dy = torch.empty(B, T, H, D, device=y.device, dtype=y.dtype)
    dv = torch.empty(v.shape, device=v.device, dtype=v.dtype)
    rows, grid, meta = _launch(v)
    wrap_triton(_xsa_bwd)[grid](do, y, v, dy, dv, rows, T, v.size(2), *do.stride(), *y.stride(), *v.stride(), EPS,
                                G=H // v.size(2), **meta)
    return dy, dv


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, do: Tensor):
    y, v = ctx.saved_tensors
    return xsa_backward(do, y, v)


xsa.register_autograd(_backward, setup_context=_setup)
