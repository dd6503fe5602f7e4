"""Causal attention through FlashAttention-4's CuTe-DSL kernels (golf.kernels.flash4): where it may run and which
kernel ``auto`` picks (CPU); on an SM90+ GPU with the fa4 wheel, outputs and gradients against fp32 math, the ops'
contracts for torch.compile, and the compiled model's loss and gradients against cuDNN's."""

from __future__ import annotations

import pytest
import torch

from golf.kernels import flash4
from golf.models import attention
from golf.models.attention import attend, resolve_kernel
from tests.helpers import profiled_compiled_step

needs_fa4 = pytest.mark.skipif(not torch.cuda.is_available() or flash4.problem() is not None,
                               reason="needs an SM90+ GPU and FlashAttention-4 (pip install -e '.[gpu]')")


def test_auto_prefers_fa3_then_fa4_then_cudnn(monkeypatch):
    monkeypatch.setattr(attention, "_FA3", None)
    monkeypatch.setattr(flash4, "problem", lambda: None)
    assert resolve_kernel("auto") == "fa4"
    monkeypatch.setattr(attention, "_FA3", lambda *a, **k: None)
    assert resolve_kernel("auto") == "fa3"
    monkeypatch.setattr(attention, "_FA3", None)
    monkeypatch.setattr(flash4, "problem", lambda: "no CUDA device")
    assert resolve_kernel("auto") == "cudnn" and resolve_kernel("fa4") == "fa4"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_without_a_gpu_fa4_says_so():
    assert flash4.problem() == "no CUDA device"


def _qkv(B: int, T: int, H: int, Hkv: int, D: int, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, T, H, D, device="cuda", generator=g).bfloat16().requires_grad_()
    k, v = (torch.randn(B, T, Hkv, D, device="cuda", generator=g).bfloat16().requires_grad_() for _ in range(2))
    return q, k, v


@pytest.mark.gpu
@needs_fa4
@pytest.mark.parametrize("shape", [(2, 1024, 8, 4, 64), (1, 2048, 8, 8, 64), (3, 333, 4, 1, 128)])
def test_output_and_gradients_match_fp32_math(shape):
    """FA4 in bf16 is as close to fp32 math as cuDNN's SDPA in bf16 is (grouped K/V, a ragged length included)."""
    q, k, v = _qkv(*shape)
    dy = torch.randn_like(q)
    exact = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = attend(*exact, "math")
    ref_grads = torch.autograd.grad(ref, exact, dy.float())
    errors = {}
    for kernel in ("fa4", "cudnn"):
        out = attend(q, k, v, kernel)
        grads = torch.autograd.grad(out, (q, k, v), dy)
        errors[kernel] = [float((a.float() - e).norm() / e.norm()) for a, e in zip((out, *grads), (ref, *ref_grads))]
    assert all(e < 1e-2 for e in errors["fa4"]), errors
    assert all(f <= 2 * c + 1e-3 for f, c in zip(errors["fa4"], errors["cudnn"])), errors


@pytest.mark.gpu
@needs_fa4
def test_the_ops_contracts_for_torch_compile():
    q, k, v = (t.detach() for t in _qkv(2, 256, 8, 4, 64))
    scale = 64**-0.5
    torch.library.opcheck(torch.ops.golf.fa4_forward, (q, k, v, scale))
    out, lse = torch.ops.golf.fa4_forward(q, k, v, scale)
    torch.library.opcheck(torch.ops.golf.fa4_backward, (torch.randn_like(out), q, k, v, out, lse, scale))


@pytest.mark.gpu
@needs_fa4
def test_compiled_model_with_fa4_matches_cudnn():
    """The compiled GPT's loss and q-projection gradient with attn_kernel=fa4 are cuDNN's to bf16 tolerance, and
    its profile shows FA4's kernels and none of SDPA's."""
    from golf.models.gpt import GPT

    ids = torch.randint(0, 128, (4, 512), device="cuda")
    out = {}
    for kernel in ("cudnn", "fa4"):
        torch.manual_seed(0)
        m = GPT(vocab_size=128, num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2, rope_dims=16,
                xsa_last_n=1, attn_kernel=kernel, kernels="torch").cuda()
        for b in m.blocks:  # proj starts at zero: without this no gradient reaches q
            torch.nn.init.normal_(b.attn.proj.weight, std=0.02)
        loss, kernels = profiled_compiled_step(m, ids)
        names = " ".join(sorted(n.lower() for n in kernels))
        out[kernel] = (loss, m.blocks[0].attn.c_q.weight.grad.clone(), names)
    (ref_loss, ref_grad, _), (loss, grad, names) = out.values()
    assert "flashattentionforwardsm" in names and "flashattentionbackwardsm" in names, names[:3000]
    assert "cudnn" not in names and "pytorch_flash" not in names, names[:3000]
    assert loss == pytest.approx(ref_loss, rel=1e-2)
    torch.testing.assert_close(grad, ref_grad, rtol=5e-2, atol=5e-3)
