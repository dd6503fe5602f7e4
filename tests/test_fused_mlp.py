"""The MLP with its activation in quack's GEMM epilogues (golf.kernels.fused_mlp): which path ``model.kernels``
takes and the errors when the fused one cannot run (CPU); on an SM90 GPU with quack-kernels installed, bf16
results no further from fp32 math than the reference's, LeakyReLU slopes 0 to 1, inside the compiled model."""

from __future__ import annotations

import types

import pytest
import torch

from golf.kernels import fused_mlp as fm
from golf.kernels import mode_for
from golf.models.gpt import MLP
from tests.helpers import profiled_compiled_step

needs_quack = pytest.mark.skipif(not torch.cuda.is_available() or fm.quack_problem() is not None,
                                 reason="needs an SM90+ GPU and quack-kernels (pip install -e '.[gpu]')")


def _cuda_like(dtype=torch.bfloat16):
    return types.SimpleNamespace(is_cuda=True, dtype=dtype)


def test_mode_for_the_mlp():
    assert mode_for("auto", "mlp") == "auto" and mode_for("torch", "mlp") == "torch"
    assert mode_for(("qk_norm_rope", "mlp"), "mlp") == "required"
    assert mode_for(("qk_norm_rope",), "mlp") == "torch"


def test_listed_mlp_without_quack_is_an_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(fm, "quack_problem", lambda: "quack-kernels does not import")
    act, problem = fm.plan("required", 0.5)
    assert act is None and problem == "quack-kernels does not import"
    with pytest.raises(RuntimeError, match="model.kernels lists mlp, but quack-kernels does not import"):
        fm.use_quack("required", _cuda_like(), problem)
    assert not fm.use_quack("auto", _cuda_like(), problem)
    assert not fm.use_quack("required", torch.ones(1), problem)  # CPU tensors always take the reference
    assert fm.plan("torch", 0.5)[0] is None


def test_slopes_and_dtypes_the_fused_mlp_cannot_take(monkeypatch):
    monkeypatch.setattr(fm, "quack_problem", lambda: None)
    monkeypatch.setattr(fm, "activation_name", lambda slope: f"act{slope}")
    assert fm.plan("auto", 0.5) == ("act0.5", None) and fm.plan("auto", None) == ("actNone", None)
    act, problem = fm.plan("required", 1.5)
    assert act is None and not fm.use_quack("auto", _cuda_like(), problem)
    with pytest.raises(RuntimeError, match=r"LeakyReLU slopes in \[0, 1\], got 1.5"):
        fm.use_quack("required", _cuda_like(), problem)
    assert fm.use_quack("auto", _cuda_like(), None)
    with pytest.raises(RuntimeError, match="takes bf16 inputs, got torch.float32"):
        fm.use_quack("required", _cuda_like(torch.float32), None)


def test_each_slope_and_direction_keys_its_own_compiled_kernel():
    """quack caches compiled GEMMs (also on disk) by the epilogue's semantic key: slopes must not share one."""
    keys = {fm._LeakyReluSq(s, g).__quack_semantic_key__() for s in (0.5, 0.25) for g in (False, True)}
    assert len(keys) == 4


def test_the_ops_shapes_for_torch_compile():
    """inductor sees the fused MLP as two ops returning fresh tensors; their fake forms give the real shapes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x, w_fc, w_proj = (torch.empty(*s, dtype=torch.bfloat16) for s in ((8, 16), (48, 16), (16, 48)))
        y, h, a = torch.ops.golf.fused_mlp(x, w_fc, w_proj, "relu_sq")
        grads = torch.ops.golf.fused_mlp_backward(y, x, w_fc, w_proj, h, a, "relu_sq")
    assert (y.shape, h.shape, a.shape) == ((8, 16), (8, 48), (8, 48))
    assert [g.shape for g in grads] == [x.shape, w_fc.shape, w_proj.shape]


@pytest.mark.parametrize("activation", ["relu2", "leaky_relu2"])
def test_mlp_on_cpu_is_the_module_path_bit_for_bit(activation):
    torch.manual_seed(0)
    fused, plain = MLP(64, 192, activation, 0.5, kernels="auto"), MLP(64, 192, activation, 0.5, kernels="torch")
    torch.nn.init.normal_(fused.proj.weight, std=0.05)
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 5, 64)
    assert torch.equal(fused(x), plain(x))


def test_mlp_in_eval_mode_runs_the_module_path(monkeypatch):
    calls = []
    monkeypatch.setattr(fm, "mlp", lambda *a: calls.append(a) or a[0])
    m = MLP(32, 64, "relu2", 0.5, kernels="auto")
    m(torch.randn(2, 32))
    assert len(calls) == 1
    m.eval()(torch.randn(2, 32))
    assert len(calls) == 1


def test_hooked_mlp_runs_unfused_so_calibration_sees_its_inputs():
    m = MLP(32, 64, "leaky_relu2", 0.5, kernels=("mlp",))
    seen = []
    m.proj.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].shape))
    m(torch.randn(4, 32))
    assert seen == [torch.Size([4, 64])]


@pytest.mark.gpu
@needs_quack
@pytest.mark.parametrize("M,dim,hidden,slope", [(4096, 512, 1536, 0.5), (1000, 256, 768, None), (2048, 512, 1024, 1.0),
                                                (2048, 512, 1024, 0.0)])
def test_fused_mlp_in_bf16_is_within_rounding_of_the_reference(M, dim, hidden, slope):
    """Against fp32 math the fused MLP's outputs and three gradients are no further than the bf16 reference's:
    its epilogue rounds act(h) once where the reference rounds h and then act(h)."""
    act = fm.activation_name(slope)
    errors = [fm.errors_vs_fp32(fn, M, dim, hidden, slope, seed=1)[1]
              for fn in (lambda *a: fm.fused_mlp(*a[:3], act), fm.reference)]
    assert all(f <= 1.25 * r + 1e-3 for f, r in zip(*errors)), errors


@pytest.mark.gpu
@needs_quack
def test_the_ops_pass_torch_library_opcheck():
    g = torch.Generator(device="cuda").manual_seed(3)
    x, w_fc, w_proj = (torch.randn(*s, device="cuda", generator=g).bfloat16() for s in ((256, 128), (384, 128), (128, 384)))
    act = fm.activation_name(0.5)
    torch.library.opcheck(torch.ops.golf.fused_mlp, (x, w_fc, w_proj, act))
    y, h, a = torch.ops.golf.fused_mlp(x, w_fc, w_proj, act)
    torch.library.opcheck(torch.ops.golf.fused_mlp_backward, (y, x, w_fc, w_proj, h, a, act))


@pytest.mark.gpu
@needs_quack
def test_compiled_model_runs_the_fused_mlp_and_matches_the_reference():
    """In the compiled model the fused MLP replaces inductor's activation kernels (the profile shows none left)
    and gives the reference's loss and fc gradient to bf16 tolerance."""
    from golf.models.gpt import GPT

    ids = torch.randint(0, 128, (4, 256), device="cuda")
    out = {}
    for kernels in (("qk_norm_rope", "xsa"), ("qk_norm_rope", "xsa", "mlp")):
        torch.manual_seed(0)
        m = GPT(vocab_size=128, num_layers=2, model_dim=256, num_heads=4, num_kv_heads=2, rope_dims=16,
                xsa_last_n=1, attn_kernel="flash", kernels=kernels, activation="leaky_relu2").cuda()
        for b in m.blocks:  # proj starts at zero: without this no gradient reaches fc
            torch.nn.init.normal_(b.mlp.proj.weight, std=0.02)
        loss, kernel_names = profiled_compiled_step(m, ids)
        names = sorted(kernel_names)
        activation_kernels = [n for n in names if n.startswith("triton_") and "leaky_relu" in n]
        assert bool(activation_kernels) == ("mlp" not in kernels), names
        out[kernels] = (loss, m.blocks[0].mlp.fc.weight.grad.clone(), names)
    (ref_loss, ref_grad, _), (loss, grad, names) = out.values()
    assert loss == pytest.approx(ref_loss, rel=1e-2)
    torch.testing.assert_close(grad, ref_grad, rtol=5e-2, atol=5e-3)
    print("kernels of the fused step:", [n for n in names if not n.startswith("triton_")])
