"""The Triton kernels behind ``golf.kernels.softcap_ce`` (imported only where triton is), as the custom ops
``golf::softcap_ce`` and its backward.

One program per row of logits x [N, V] (any float dtype, read once per pass in blocks of BLOCK): with the softcap
c, z = 2c sigmoid(2x / c), which is c tanh(x / c) + c (the shift cancels in the cross-entropy, and only exp is
needed). The forward keeps a running max (per block) and sum of exp(z - max) in fp32 and writes the row's log-sum-exp and
loss = lse - z[target]; nothing of size V is written. The backward reads x again and writes
    dx = g (softmax(z) - onehot(target)) 4 s (1 - s),   s = sigmoid(2x / c)
in x's dtype. Rows whose target is ``ignore`` (-100) get loss 0 and gradient 0.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import triton_op, wrap_triton

BLOCK, WARPS = 4096, 8            # the backward's
FWD_BLOCK, FWD_WARPS = 1024, 4    # the forward's: #1855's kernel's, which ran at 1.7 TB/s on an H100


@triton.jit
def _capped(x, inv_c, two_c):
    # scalars to fp32: compiled graphs pass Python floats as fp64, which would promote the running max
    s = 1.0 / (1.0 + tl.exp((-2.0 * x * inv_c).to(tl.float32)))
    return (two_c * s).to(tl.float32), s


@triton.jit
def _ce_fwd(X, TGT, LOSS, LSE, V, stride, inv_c, two_c, ignore, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = X + row * stride
    cols = tl.arange(0, BLOCK)
    # the block's max, not each lane's: one exp an element besides the cap's (#1855's kernel does the same)
    m = tl.max(tl.full([BLOCK], -1e30, tl.float32), axis=0)  # finite, fp32: exp(m - m_new) of the start is 0
    acc = tl.sum(tl.zeros([BLOCK], tl.float32), axis=0)
    for start in range(0, V, BLOCK):
        ok = start + cols < V
        x = tl.load(base + start + cols, mask=ok, other=0.0).to(tl.float32)
        z, _ = _capped(x, inv_c, two_c)
        z = tl.where(ok, z, -float("inf"))
        m_new = tl.maximum(m, tl.max(z, axis=0))
        acc = acc * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
        m = m_new
    lse = m + tl.log(acc)
    t = tl.load(TGT + row)
    valid = t != ignore
    xt = tl.load(base + tl.where(valid, t, 0)).to(tl.float32)
    zt, _ = _capped(xt, inv_c, two_c)
    tl.store(LOSS + row, tl.where(valid, lse - zt, 0.0))
    tl.store(LSE + row, lse)


@triton.jit
def _ce_bwd(X, TGT, LSE, G, DX, V, stride, dstride, inv_c, two_c, ignore, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    t = tl.load(TGT + row)
    g = tl.where(t != ignore, tl.load(G + row).to(tl.float32), 0.0)
    lse = tl.load(LSE + row)
    cols = tl.arange(0, BLOCK)
    for start in range(0, V, BLOCK):
        idx = start + cols
        ok = idx < V
        x = tl.load(X + row * stride + idx, mask=ok, other=0.0).to(tl.float32)
        z, s = _capped(x, inv_c, two_c)
        p = tl.exp(z - lse) - tl.where(idx == t, 1.0, 0.0)
        dx = g * p * 4.0 * s * (1.0 - s)
        tl.store(DX + row * dstride + idx, dx.to(DX.dtype.element_ty), mask=ok)


@triton_op("golf::softcap_ce", mutates_args=())
def softcap_ce(x: Tensor, target: Tensor, softcap: float) -> tuple[Tensor, Tensor]:
    """(loss [N] fp32, lse [N] fp32) for pre-cap logits x [N, V] (unit stride along V) and targets [N]."""
    N, V = x.shape
    loss = torch.empty(N, device=x.device, dtype=torch.float32)
    lse = torch.empty(N, device=x.device, dtype=torch.float32)
    wrap_triton(_ce_fwd)[(N,)](x, target, loss, lse, V, x.stride(0), 1.0 / softcap, 2.0 * softcap, -100,
                               BLOCK=min(FWD_BLOCK, triton.next_power_of_2(V)), num_warps=FWD_WARPS)
    return loss, lse


@triton_op("golf::softcap_ce_backward", mutates_args=())
def softcap_ce_backward(grad: Tensor, x: Tensor, target: Tensor, lse: Tensor, softcap: float) -> Tensor:
    N, V = x.shape
    dx = torch.empty(N, V, device=x.device, dtype=x.dtype)
    wrap_triton(_ce_bwd)[(N,)](x, target, lse, grad.contiguous(), dx, V, x.stride(0), dx.stride(0), 1.0 / softcap,
                               2.0 * softcap, -100, BLOCK=min(BLOCK, triton.next_power_of_2(V)), num_warps=WARPS)
    return dx


def _setup(ctx, inputs, output) -> None:
    x, target, softcap = inputs
    ctx.softcap = softcap
    ctx.save_for_backward(x, target, output[1])


def _backward(ctx, grad_loss: Tensor, _grad_lse):
    x, target, lse = ctx.saved_tensors
    return softcap_ce_backward(grad_loss, x, target, lse, ctx.softcap), None, None


softcap_ce.register_autograd(_backward, setup_context=_setup)
