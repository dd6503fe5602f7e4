"""The Triton kernel behind ``golf.kernels.mlp`` (imported only where triton is): one GEMM, C = A @ B, with the
MLP's activation in its epilogue, as the custom op ``golf::mlp`` and its backward ``golf::mlp_backward``.

With f(h) = leaky(h)^2 (slope 0: ReLU^2) and f'(h) = 2 leaky(h) leaky'(h), the epilogue works on the
accumulator rounded to the operands' dtype first, as a GEMM writing h would have left it:
    ACT   h = x @ W_fc^T:    a = f(h) written, and h too when the backward will need it
    GRAD  g = dy @ W_proj:   dh = g * f'(h), reading h (the pre-activation saved by the forward)
so neither h's re-read for f nor the activation gradient g ever goes through memory. A program computes one
BM x BN tile over the whole K (a multiple of BK), tiles visited in groups of GROUP_M rows for L2 reuse.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

# (BM, BN, BK, warps, stages); scripts/bench_kernels.py --mlp sweeps them
CONFIG = (128, 256, 64, 8, 3)
GROUP_M = 8


@triton.jit
def _gemm_act(A, B, H, OUT, M, N, K, sa_m, sa_k, sb_k, sb_n, slope,
              GRAD: tl.constexpr, STORE_H: tl.constexpr, EVEN: tl.constexpr, IEEE: tl.constexpr,
              BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr):
    pid = tl.program_id(0)
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    per_group = GROUP * tiles_n
    first_m = (pid // per_group) * GROUP
    rows_in_group = min(tiles_m - first_m, GROUP)
    pid_m = first_m + (pid % per_group) % rows_in_group
    pid_n = (pid % per_group) // rows_in_group
    rm = pid_m.to(tl.int64) * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    pa = A + rm[:, None] * sa_m + rk[None, :] * sa_k
    pb = B + rk[:, None] * sb_k + rn[None, :] * sb_n
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for _ in range(0, K, BK):
        if EVEN:
            a, b = tl.load(pa), tl.load(pb)
        else:
            a = tl.load(pa, mask=(rm < M)[:, None], other=0.0)
            b = tl.load(pb, mask=(rn < N)[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision="ieee" if IEEE else "tf32")
        pa += BK * sa_k
        pb += BK * sb_k
    g = acc.to(OUT.dtype.element_ty).to(tl.float32)
    offs = rm[:, None] * N + rn[None, :]
    mask = (rm < M)[:, None] & (rn < N)[None, :]
    if GRAD:
        h = tl.load(H + offs, mask=mask, other=0.0).to(tl.float32)
        leak = tl.where(h > 0, h, h * slope)
        out = g * 2.0 * leak * tl.where(h > 0, 1.0, slope)
    else:
        leak = tl.where(g > 0, g, g * slope)
        out = leak * leak
        if STORE_H:
            tl.store(H + offs, g.to(H.dtype.element_ty), mask=mask)
    tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=mask)


def _gemm(a: Tensor, b: Tensor, h: Tensor, out: Tensor, slope: float, grad: bool, store_h: bool) -> None:
    """out [M, N] from a [M, K] and b [K, N] (any strides); h [M, N] read (grad) or written (store_h)."""
    M, K = a.shape
    N = b.size(1)
    bm, bn, bk, warps, stages = CONFIG
    if K % bk:
        raise ValueError(f"golf::mlp needs the model dim to be a multiple of {bk}, got {K}")
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
    wrap_triton(_gemm_act)[grid](a, b, h, out, M, N, K, *a.stride(), *b.stride(), slope,
                                 GRAD=grad, STORE_H=store_h, EVEN=M % bm == 0 and N % bn == 0,
                                 IEEE=a.dtype == torch.float32, BM=bm, BN=bn, BK=bk, GROUP=GROUP_M,
                                 num_warps=warps, num_stages=stages)


@triton_op("golf::mlp", mutates_args=())
def mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float, keep: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(y [M, dim], h, a) for x [M, dim], w_fc [hidden, dim], w_proj [dim, hidden]: y = f(x W_fc^T) W_proj^T.
    h (the pre-activation) is written only when ``keep`` (for the backward), else it is empty."""
    M, hidden = x.size(0), w_fc.size(0)
    a = torch.empty(M, hidden, device=x.device, dtype=x.dtype)
    h = torch.empty((M, hidden) if keep else (0, hidden), device=x.device, dtype=x.dtype)
    _gemm(x, w_fc.t(), h, a, slope, grad=False, store_h=keep)
    return a @ w_proj.t(), h, a


@triton_op("golf::mlp_backward", mutates_args=())
def mlp_backward(dy: Tensor, x: Tensor, w_fc: Tensor, w_proj: Tensor, h: Tensor, a: Tensor,
                 slope: float) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dw_fc, dw_proj) for the output gradient dy [M, dim]."""
    dh = torch.empty_like(h)
    _gemm(dy, w_proj, h, dh, slope, grad=True, store_h=False)
    return dh @ w_fc, dh.t() @ x, dy.t() @ a


def _setup(ctx, inputs, output) -> None:
    x, w_fc, w_proj, slope, keep = inputs
    if not keep:
        raise RuntimeError("golf::mlp was called with keep=False where a gradient is needed")
    ctx.slope = slope
    ctx.save_for_backward(x, w_fc, w_proj, output[1], output[2])


def _backward(ctx, dy: Tensor, _dh, _da):
    x, w_fc, w_proj, h, a = ctx.saved_tensors
    dx, dw_fc, dw_proj = mlp_backward(dy.contiguous(), x, w_fc, w_proj, h, a, ctx.slope)
    return dx, dw_fc, dw_proj, None, None


mlp.register_autograd(_backward, setup_context=_setup)
