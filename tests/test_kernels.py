"""golf's Triton kernels (golf/kernels) against their PyTorch references: the q/k RMSNorm + RoPE + gain kernel
(forward and both gradients, partial and full RoPE, with and without a gain) and the XSA kernel (forward, both
gradients, 1 to 4 query heads per KV group, attention's head-major output strides, a zero value row), in fp32
(to float32 rounding) and bf16; compiled inside the model, where a profile must show the kernels running.
Without a GPU the fp32 comparison runs the kernels in Triton's interpreter (TRITON_INTERPRET=1, in a
subprocess: the switch is read when kernels are defined)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from golf.kernels import check_mode, triton_available
from golf.kernels import xsa as xsa_ops
from golf.kernels.qk_norm_rope import norm_rope, qkv_norm_rope, qkv_reference, qkv_wide_reference, reference
from golf.kernels.rotary import rotary_tables

needs_triton = pytest.mark.skipif(not (torch.cuda.is_available() and triton_available()),
                                  reason="needs a CUDA device and triton")


def test_mode_is_checked():
    with pytest.raises(ValueError, match="model.kernels must be one of"):
        check_mode("fused")
    if not triton_available():
        with pytest.raises(ValueError, match="triton does not import"):
            check_mode("triton")


def test_cpu_tensors_take_the_reference():
    x = torch.randn(2, 5, 4, 8)
    cos, sin = rotary_tables(5, 4, 10000.0, x.device)
    g = torch.rand(4)
    assert torch.equal(norm_rope(x, cos, sin, g, "auto"), reference(x, cos, sin, g))
    qkv = torch.randn(2, 5, 8, 8)
    got, want = qkv_norm_rope(qkv, 4, 2, cos, sin, g, "auto"), qkv_reference(qkv, 4, 2, cos, sin, g)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert torch.equal(want[2], qkv[:, :, 6:]) and torch.equal(want[1], reference(qkv[:, :, 4:6], cos, sin, None))


CASES = [(2, 100, 8, 64, 16, True), (3, 33, 4, 64, 16, False), (1, 64, 8, 64, 64, True), (2, 17, 2, 32, 8, True)]


def _case(B, T, H, D, R, dtype, gain, seed=0, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    x = (torch.randn(B, T, H, D, device=device, generator=g) * 3).to(dtype).requires_grad_()
    cos, sin = rotary_tables(T, R, 10000.0, x.device)
    w = (torch.rand(H, device=device, generator=g) + 0.5).requires_grad_() if gain else None
    dy = torch.randn(B, T, H, D, device=device, generator=g).to(dtype)
    return x, cos, sin, w, dy


def _run(fn, x, cos, sin, w, dy):
    y = fn(x, cos, sin, w)
    xs = [x] + ([w] if w is not None else [])
    grads = torch.autograd.grad(y, xs, dy)
    return [y.float()] + [t.float() for t in grads]


XSA_CASES = [(2, 50, 8, 4, 64), (3, 17, 4, 4, 32), (1, 33, 8, 2, 64)]  # B, T, H, Hkv, D


def _xsa_case(B, T, H, J, D, dtype, device):
    g = torch.Generator(device=device).manual_seed(1)
    y = torch.randn(B, H, T, D, device=device, generator=g).to(dtype).transpose(1, 2).requires_grad_()  # head-major
    v = torch.randn(B, T, J, D, device=device, generator=g).to(dtype)
    v[0, 0, 0] = 0.0  # |v| below F.normalize's eps
    return y, v.requires_grad_(), torch.randn(B, T, H, D, device=device, generator=g).to(dtype)


def check_xsa_fp32(device: str) -> None:
    from golf.kernels import xsa_triton as k

    for case in XSA_CASES:
        y, v, do = _xsa_case(*case, torch.float32, device)
        got = [k.xsa(y, v), *torch.autograd.grad(k.xsa(y, v), [y, v], do)]
        want = [xsa_ops.reference(y, v), *torch.autograd.grad(xsa_ops.reference(y, v), [y, v], do)]
        for name, a, b in zip(("o", "dy", "dv"), got, want):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5, msg=f"{name} of XSA case {case}")


def check_fp32(device: str) -> None:
    """The kernels (forward, and backward through autograd) against the references, fp32, on every case."""
    from golf.kernels import qk_norm_rope_triton as k

    check_xsa_fp32(device)

    for case in CASES:
        x, cos, sin, w, dy = _case(*case[:5], torch.float32, case[5], device=device)
        for layout, g in (("contiguous", dy), ("head-major", dy.transpose(1, 2).contiguous().transpose(1, 2))):
            got, want = _run(k.norm_rope, x, cos, sin, w, g), _run(reference, x, cos, sin, w, g)  # the op: also off CUDA
            for name, a, b in zip(("y", "dx", "dgain"), got, want):
                torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5, msg=f"{name} of case {case}, {layout} dy")
    check_qkv_fp32(device)


QKV_CASES = [(2, 17, 4, 2, 64, 16, True), (1, 9, 8, 4, 32, 32, False), (2, 5, 2, 1, 64, 64, True)]  # B T H Hkv D R gain


def check_qkv_fp32(device: str) -> None:
    """The fused projection's kernel: q, k, v and the gradients of qkv and the gain, with dk head-major (attention's
    other layout), against ``qkv_reference``."""
    from golf.kernels import qk_norm_rope_triton as k

    for B, T, H, J, D, R, gain in QKV_CASES:
        g = torch.Generator(device=device).manual_seed(2)
        x = (torch.randn(B, T, H + 2 * J, D, device=device, generator=g) * 3).requires_grad_()
        cos, sin = rotary_tables(T, R, 10000.0, x.device)
        w = (torch.rand(H, device=device, generator=g) + 0.5).requires_grad_() if gain else None
        dys = [torch.randn(B, T, H, D, device=device, generator=g),
               torch.randn(B, J, T, D, device=device, generator=g).transpose(1, 2),
               torch.randn(B, T, J, D, device=device, generator=g)]
        inputs = [x] + ([w] if gain else [])
        got, want = k.qkv_norm_rope(x, cos, sin, w, H, J), qkv_reference(x, H, J, cos, sin, w)
        got, want = [*got, *torch.autograd.grad(got, inputs, dys)], [*want, *torch.autograd.grad(want, inputs, dys)]
        for name, a, b in zip(("q", "k", "v", "dqkv", "dgain"), got, want):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5, msg=f"{name} of qkv case {(B, T, H, J, D, R)}")
    check_qkv_wide_fp32(device)


def check_qkv_wide_fp32(device: str) -> None:
    """K and V written at the query heads: outputs and the gradients of qkv, the gain and the value embedding, with
    and without v at its own heads (XSA's), dk head-major, against ``qkv_wide_reference``."""
    from golf.kernels import qk_norm_rope_triton as k

    for (B, T, H, J, D, R, gain), with_ve, grouped in zip(QKV_CASES, (True, False, True), (True, True, False)):
        g = torch.Generator(device=device).manual_seed(3)
        x = (torch.randn(B, T, H + 2 * J, D, device=device, generator=g) * 3).requires_grad_()
        cos, sin = rotary_tables(T, R, 10000.0, x.device)
        w = (torch.rand(H, device=device, generator=g) + 0.5).requires_grad_() if gain else None
        ve = torch.randn(B, T, J, D, device=device, generator=g).requires_grad_() if with_ve else None
        dys = [torch.randn(B, T, H, D, device=device, generator=g),
               torch.randn(B, H, T, D, device=device, generator=g).transpose(1, 2),
               torch.randn(B, T, H, D, device=device, generator=g),
               torch.randn(B, T, J, D, device=device, generator=g)]
        named = [(nm, t) for nm, t in (("dqkv", x), ("dgain", w), ("dve", ve)) if t is not None]
        inputs = [t for _, t in named]
        case = (B, T, H, J, D, R, with_ve, grouped)
        got = k.qkv_norm_rope_wide(x, cos, sin, w, ve, H, J, grouped)
        want = qkv_wide_reference(x, H, J, cos, sin, w, ve, grouped)
        n = 4 if grouped else 3
        got = [*got[:n], *torch.autograd.grad(got[:n], inputs, dys[:n])]
        want = [*want[:n], *torch.autograd.grad(want[:n], inputs, dys[:n])]
        names = ["q", "k", "v", "v own"][:n] + [nm for nm, _ in named]
        for name, a, b in zip(names, got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5, msg=f"{name} of wide qkv case {case}")


@pytest.mark.gpu
@needs_triton
def test_kernel_matches_the_reference_in_fp32():
    check_fp32("cuda")


@pytest.mark.skipif(not triton_available(), reason="needs triton (the dev extra installs it on Linux)")
def test_kernel_takes_power_of_two_rope_blocks_and_leaves_the_rest_to_the_reference():
    from golf.kernels import qk_norm_rope_triton as k

    assert [k.supported(64, r) for r in (16, 64, 32, 8, 2)] == [True] * 5
    assert [k.supported(64, r) for r in (24, 48, 12, 0, 3)] == [False] * 5  # R/2 or D/R not a power of two
    assert k.supported(32, 8) and not k.supported(96, 64)


@pytest.mark.skipif(not triton_available(), reason="needs triton (the dev extra installs it on Linux)")
def test_kernel_matches_the_reference_in_triton_interpreter():
    _in_interpreter("check_fp32")


def _in_interpreter(check: str) -> None:
    """Run ``tests.test_kernels.<check>('cpu')`` in a subprocess under Triton's interpreter (the switch is read when
    kernels are defined)."""
    root = Path(__file__).resolve().parents[1]
    code = f"from tests.test_kernels import {check}; {check}('cpu')"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TRITON_INTERPRET": "1"})
    assert out.returncode == 0, out.stderr[-3000:]


def _writes_seen_by_inductor(kernel, kwargs: dict) -> list[str]:
    """The arguments inductor's analysis of a user Triton kernel takes as written; an input it takes as written
    is copied before every call of the compiled graph (6-9 ms per #1019 step, machine T). Off a GPU the TTIR is
    generated for an H100 target."""
    import triton.runtime as rt
    from torch._higher_order_ops import triton_kernel_wrap as w
    from triton.backends.compiler import GPUTarget

    class H100:
        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

    prev = rt.driver._active
    if not torch.cuda.is_available():
        rt.driver.set_active(H100())
    try:
        if hasattr(w, "identify_accessed_tensors"):  # PyTorch >= 2.12
            return sorted(d.name for d in w.identify_accessed_tensors(kernel, kwargs, {}).read_writes.writes)
        return sorted(w.identify_mutated_tensors(kernel, kwargs, {}))
    finally:
        rt.driver._active = prev


@pytest.mark.skipif(not triton_available(), reason="needs triton (the dev extra installs it on Linux)")
def test_inductor_sees_each_kernel_write_only_its_outputs():
    from golf.kernels import qk_norm_rope_triton as qk
    from golf.kernels import xsa_triton as xs

    B, T, H, D = 2, 16, 4, 64
    x, y = torch.randn(B, T, H, D), torch.empty(B, H, T, D)
    tables = dict(COS=torch.randn(T, 8), SIN=torch.randn(T, 8), rows=B * T * H, T=T, H=H, eps=1e-6, D=D, NB=4,
                  HALF=8, BLOCK=32)
    # (gain, heads of x per token, first head, pass through, copies, an added tensor / v at its own heads too):
    # the last three are parts of a projection, the last two of the wide form's k and v
    for gain, xh, first, passing, rep, extra in ((True, H, 0, False, 1, False), (False, H, 0, False, 1, False),
                                                 (False, H + 2, 1, True, 1, False), (False, H + 2, 1, False, 2, False),
                                                 (False, H + 2, 1, True, 2, True)):
        g = torch.rand(H) if gain else x
        part = dict(XH=xh, FIRST=first, HAS_GAIN=gain, PASS=passing, REP=rep, HAS_ADD=extra)
        fwd = _writes_seen_by_inductor(qk._qk_norm_rope_fwd, dict(
            X=x, G=g, ADD=x.clone(), Y=y, Y2=torch.empty_like(x), COPY=extra, **part, **tables))
        bwd = _writes_seen_by_inductor(qk._qk_norm_rope_bwd, dict(
            DY=y, DY2=y.clone(), X=x, G=g, DX=torch.empty_like(x), DG=torch.empty(B * T * H),
            DADD=torch.empty_like(x), sb=1, st=1, sh=1, sd=1, HAS_DY2=extra, **part, **tables))
        want = (["Y", "Y2"] if extra else ["Y"], ["DX"] + ["DG"] * gain + ["DADD"] * extra)
        assert (fwd, sorted(bwd)) == (want[0], sorted(want[1])), (gain, passing, rep, extra, fwd, bwd)
    v = torch.randn(B, T, 2, D)
    common = dict(V=v, rows=B * T * 2, T=T, J=2, ys_b=1, ys_t=1, ys_h=1, ys_d=1, vs_b=1, vs_t=1, vs_j=1, vs_d=1,
                  eps=1e-12, D=D, G=2, BLOCK=32)
    assert _writes_seen_by_inductor(xs._xsa_fwd, dict(Y=x, OUT=torch.empty_like(x), **common)) == ["OUT"]
    assert _writes_seen_by_inductor(xs._xsa_bwd, dict(
        DO=x, Y=x.clone(), DY=torch.empty_like(x), DV=torch.empty_like(v), ds_b=1, ds_t=1, ds_h=1, ds_d=1,
        **common)) == ["DV", "DY"]


@pytest.mark.gpu
@needs_triton
def test_kernels_in_bf16_are_within_rounding_of_the_references():
    """bf16 in and out: the kernels round once, the references after each op; against fp32 math the kernels
    are no worse than the references."""
    x, cos, sin, w, dy = _case(4, 256, 8, 64, 16, torch.bfloat16, True)
    exact = _run(reference, x.detach().float().requires_grad_(), cos, sin, w, dy.float())
    got = _run(lambda *a: norm_rope(*a, "triton"), x, cos, sin, w, dy)
    ref = _run(reference, x, cos, sin, w, dy)
    for a, b, e in zip(got, ref, exact):
        assert (a - e).abs().max() <= 1.05 * (b - e).abs().max() + 1e-3
    y, v, do = _xsa_case(4, 256, 8, 4, 64, torch.bfloat16, "cuda")
    yf, vf = y.detach().float().requires_grad_(), v.detach().float().requires_grad_()
    exact = [xsa_ops.reference(yf, vf), *torch.autograd.grad(xsa_ops.reference(yf, vf), [yf, vf], do.float())]
    errors = []
    for fn in (lambda a, b: xsa_ops.exclusive(a, b, "triton"), xsa_ops.reference):
        out = [fn(y, v), *torch.autograd.grad(fn(y, v), [y, v], do)]
        errors.append([(a.float() - e).abs().max().item() for a, e in zip(out, exact)])
    assert all(k <= 1.05 * r + 1e-3 for k, r in zip(*errors)), errors


@pytest.mark.gpu
@needs_triton
def test_compiled_model_runs_the_kernel_and_matches_the_reference():
    from golf.models.gpt import GPT

    def model(mode):
        torch.manual_seed(0)
        m = GPT(vocab_size=128, num_layers=2, model_dim=128, num_heads=4, num_kv_heads=2, rope_dims=16,
                xsa_last_n=1, attn_kernel="flash", kernels=mode, activation="leaky_relu2").cuda()
        for b in m.blocks:  # proj starts at zero: without this no gradient reaches fc
            torch.nn.init.normal_(b.mlp.proj.weight, std=0.02)
        return m

    ids = torch.randint(0, 128, (2, 64), device="cuda")
    out = {}
    for mode in ("torch", "triton", ("qk_norm_rope", "xsa")):  # the last: q, k, v in three GEMMs
        m = model(mode)
        assert m.blocks[0].attn._fuses_qkv(ids, 16) == (mode == "triton"), mode
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.compile(m, fullgraph=True)(ids, ids)
        loss.backward()
        attn = m.blocks[0].attn
        out[mode] = (loss.item(), attn.q_gain.grad.clone(), m.blocks[0].mlp.fc.weight.grad.clone(),
                     *(c.weight.grad.clone() for c in (attn.c_q, attn.c_k, attn.c_v)))
        if mode == "triton":
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    torch.compile(m, fullgraph=True)(ids, ids).backward()
                torch.cuda.synchronize()
            names = {e.key for e in prof.key_averages()}
            for kernel in ("_qk_norm_rope_fwd", "_qk_norm_rope_bwd", "_xsa_fwd", "_xsa_bwd"):
                assert any(kernel in n for n in names), (kernel, sorted(names))
    for mode in ("triton", ("qk_norm_rope", "xsa")):
        assert out[mode][0] == pytest.approx(out["torch"][0], rel=1e-2)
        for got, want in zip(out[mode][1:], out["torch"][1:]):
            torch.testing.assert_close(got, want, rtol=5e-2, atol=5e-3)


@pytest.mark.gpu
@needs_triton
def test_wide_kv_matches_grouped_kv_and_skips_the_grouped_gradient_pass():
    """Under FA3 or FA4, K/V written at the query heads (``wide_kv``, on under auto) give the grouped form's loss and
    gradients (XSA and a value embedding included), and FA3's backward then converts dQ only, not dK and dV."""
    from golf.kernels import flash4
    from golf.models.attention import fa3_function
    from golf.models.gpt import GPT

    kernel = "fa3" if fa3_function() is not None else "fa4" if flash4.problem() is None else None
    if kernel is None:
        pytest.skip("neither FlashAttention-3 nor -4 runs here")

    def run(kernels, profile=False):
        torch.manual_seed(0)
        m = GPT(vocab_size=128, num_layers=2, model_dim=128, num_heads=4, num_kv_heads=2, rope_dims=16, xsa_last_n=2,
                ve_dim=16, ve_layers=[1], attn_kernel=kernel, kernels=kernels, activation="leaky_relu2").cuda()
        for b in m.blocks:
            torch.nn.init.normal_(b.mlp.proj.weight, std=0.02)
            torch.nn.init.normal_(b.attn.proj.weight, std=0.02)
        ids = torch.randint(0, 128, (2, 256), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        step = torch.compile(m, fullgraph=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) if profile else nullcontext() as prof:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step(ids, ids)
            loss.backward()
            torch.cuda.synchronize()
        grads = {n: p.grad.float().clone() for n, p in m.named_parameters() if p.grad is not None}
        return m, loss.item(), grads, prof

    wide, loss_w, grads_w, prof = run("auto", profile=True)
    grouped, loss_g, grads_g, _ = run(["qk_norm_rope", "qkv", "xsa"])
    assert all(b.attn.wide_kv for b in wide.blocks) and not any(b.attn.wide_kv for b in grouped.blocks)
    assert loss_w == pytest.approx(loss_g, rel=1e-2)
    assert grads_w.keys() == grads_g.keys() and "ve.embed.weight" in grads_w
    for name, g in grads_g.items():
        assert float((grads_w[name] - g).norm()) <= 3e-2 * float(g.norm()) + 1e-6, name
    if kernel == "fa3":
        converts = sum(e.count for e in prof.key_averages() if "PostprocessConvertdQ" in e.key)
        assert converts == 2, converts  # one dQ per layer; grouped K/V add a dK and a dV per layer


@pytest.mark.parametrize("mode", ["auto", "torch", "triton"])
def test_model_kernels_option_composes_and_builds(compose, mode):
    """``model.kernels`` from the command line reaches every attention layer; a CPU forward is the reference's."""
    if mode == "triton" and not triton_available():
        pytest.skip("needs triton")
    from hydra.utils import instantiate

    cfg = compose(["experiment=pr1019", f"model.kernels={mode}", "model.num_layers=2", "model.model_dim=256",
                   "model.bigram_buckets=16", "model.ve_dim=16", "model.xsa_last_n=2", "model.ve_layers=[0,1]"])
    model = instantiate(cfg.model)()
    assert {b.attn.kernels for b in model.blocks} == {b.mlp.kernels for b in model.blocks} == {mode}
    ids = torch.randint(0, model.vocab_size, (1, 16))
    torch.manual_seed(0)
    ref = instantiate(cfg.model, kernels="torch")()
    ref.load_state_dict(model.state_dict())
    assert torch.equal(model.logits(ids), ref.logits(ids))


def test_model_kernels_option_takes_a_list_of_kernel_names(compose):
    from hydra.utils import instantiate

    from golf.kernels import mode_for

    cfg = compose(["model.kernels=[qk_norm_rope]", "model.num_layers=2"])
    model = instantiate(cfg.model)()
    assert {b.attn.kernels for b in model.blocks} == {("qk_norm_rope",)}
    assert [mode_for(("qk_norm_rope",), n) for n in ("qk_norm_rope", "xsa", "mlp")] == ["auto", "torch", "torch"]
    assert {b.mlp.mode for b in instantiate(compose(["model.kernels=[xsa,mlp]", "model.num_layers=1"]).model)().blocks} \
        == {"required"}
    with pytest.raises(ValueError, match=r"lists unknown kernels \['gemm'\]"):
        instantiate(compose(["model.kernels=[xsa,gemm]", "model.num_layers=1"]).model)()


def test_wide_kv_is_chosen_for_fa3_and_fa4_with_grouped_kv_only(compose, monkeypatch):
    """K/V at the query heads where FA3/FA4 would accumulate grouped dK, dV: not for other kernels, K/V as wide as
    the queries, value residual (it mixes layer 0's V in after the projection) or a kernel list without wide_kv.
    On the CPU the layer still runs its references (the grouped path)."""
    from hydra.utils import instantiate

    import golf.models.attention as attention

    monkeypatch.setattr(attention, "check_kernel", lambda k: k)  # FA3 / FA4 need not run here to be chosen

    def wide(*overrides):
        model = instantiate(compose(["model.num_layers=1", "model.xsa_last_n=1", *overrides]).model)()
        return model, model.blocks[0].attn.wide_kv

    model, on = wide("model.attn_kernel=fa3")
    assert on
    assert wide("model.attn_kernel=fa4")[1]
    assert wide("model.attn_kernel=fa3", "model.kernels=[qk_norm_rope,qkv,wide_kv,xsa]")[1]
    assert not wide("model.attn_kernel=fa3", "model.kernels=[qk_norm_rope,qkv,xsa]")[1]
    assert not wide("model.attn_kernel=cudnn")[1]
    assert not wide("model.attn_kernel=fa3", "model.num_kv_heads=8")[1]
    assert not wide("model.attn_kernel=fa3", "model.value_residual=true")[1]
    ids = torch.randint(0, 64, (2, 16))
    assert torch.isfinite(model(ids, ids))


def test_model_kernels_option_rejects_unknown_values(compose):
    from hydra.utils import instantiate

    with pytest.raises(ValueError, match="model.kernels must be one of"):
        instantiate(compose(["model.kernels=fused", "model.num_layers=1"]).model)()


def check_softcap_ce(device: str) -> None:
    """The fused softcapped cross-entropy against its reference: loss and logit gradient, fp32, with a vocab that
    is not a multiple of the block and an ignored target."""
    from golf.kernels import softcap_ce, softcap_ce_triton

    g = torch.Generator().manual_seed(0)
    for V in (300, 8192 + 17):
        z = (torch.randn(6, V, generator=g) * 40).to(device).requires_grad_(True)
        t = torch.randint(0, V, (6,), generator=g).to(device)
        t[2] = -100
        per_row, lse = softcap_ce_triton.softcap_ce(z, t, 30.0)
        want_rows = softcap_ce.reference(z, t, 30.0, reduction="none")
        torch.testing.assert_close(per_row, want_rows, rtol=1e-5, atol=1e-5)
        (per_row * torch.arange(1, 7, device=device)).sum().backward()
        got = z.grad.clone()
        z.grad = None
        (softcap_ce.reference(z, t, 30.0, reduction="none") * torch.arange(1, 7, device=device)).sum().backward()
        torch.testing.assert_close(got, z.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not triton_available(), reason="needs triton (the dev extra installs it on Linux)")
def test_softcap_ce_matches_the_reference_in_triton_interpreter():
    _in_interpreter("check_softcap_ce")


@needs_triton
def test_softcap_ce_on_cuda_matches_the_reference_and_runs_in_the_compiled_model(tiny_gpt):
    check_softcap_ce("cuda")
    torch.manual_seed(0)
    model = tiny_gpt(vocab_size=1000, kernels=["softcap_ce"]).cuda()
    ref = tiny_gpt(vocab_size=1000, kernels="torch").cuda()
    ref.load_state_dict(model.state_dict())
    x = torch.randint(0, 1000, (4, 64), device="cuda")
    y = torch.randint(0, 1000, (4, 64), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = torch.compile(model, fullgraph=True)(x, y)
        want = ref(x, y)
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not triton_available(), reason="needs triton (the dev extra installs it on Linux)")
def test_softcap_ce_kernels_build_with_fp64_scalars():
    """Compiled graphs pass Python floats to user kernels as fp64: the kernels' loop-carried values must stay fp32
    (on an H100 a running max promoted to fp64 failed to compile). Triton's front end runs here for an SM90 target."""
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend
    from triton.compiler import ASTSource

    from golf.kernels import softcap_ce_triton as k

    backend = CUDABackend(GPUTarget("cuda", 90, 32))
    options = backend.parse_options({})
    ctx = ir.context()
    ir.load_dialects(ctx)
    backend.load_dialects(ctx)
    common = {"TGT": "*i64", "V": "i32", "stride": "i32", "inv_c": "fp64", "two_c": "fp64", "ignore": "i32",
              "BLOCK": "constexpr"}
    for fn, ptrs in ((k._ce_fwd, {"X": "*bf16", "LOSS": "*fp32", "LSE": "*fp32"}),
                     (k._ce_bwd, {"X": "*bf16", "LSE": "*fp32", "G": "*fp32", "DX": "*bf16", "dstride": "i32"})):
        names = list(inspect.signature(fn.fn).parameters)
        sig = {n: {**common, **ptrs}[n] for n in names}
        src = ASTSource(fn, sig, constexprs={"BLOCK": 1024})
        assert str(src.make_ir(GPUTarget("cuda", 90, 32), options, backend.get_codegen_implementation(options),
                               backend.get_module_map(), ctx))


def test_kernel_report_names_what_runs_and_why_not_faster(tiny_gpt):
    from golf.kernels.report import kernel_report

    cpu = torch.device("cpu")
    r = kernel_report(tiny_gpt(xsa_last_n="all", kernels="auto"), cpu)
    assert set(r) == {"attention", "qk_norm_rope", "xsa", "mlp", "cross_entropy"}
    assert r["attention"] == "SDPA (CPU)" and "CUDA tensors only" in r["qk_norm_rope"] and "no CUDA device" in r["mlp"]
    assert "opt-in" in r["cross_entropy"]
    r = kernel_report(tiny_gpt(kernels="torch", doc_mask=True), cpu)
    assert "xsa" not in r and "documents' mask" in r["attention"] and "leaves it to PyTorch" in r["qk_norm_rope"]
    assert "leaves the MLP to PyTorch" in r["mlp"]
    listed = kernel_report(tiny_gpt(kernels=["softcap_ce"]), cpu)
    assert "fused softcapped cross-entropy" in listed["cross_entropy"]
