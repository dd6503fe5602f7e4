"""Newton–Schulz, Muon, the Muon/Adam split and the warmdown schedule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from golf.optim.muon import Muon
from golf.optim.muon_adam import MuonAdam
from golf.optim.newton_schulz import newton_schulz
from golf.optim.schedule import WarmdownSchedule


def _rel_fro(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


# -------------------------------------------------------------------------------------- Newton–Schulz


@pytest.mark.parametrize(("g", "ref"), [("G", "ns5"), ("G_tall", "ns5_tall")])
def test_newton_schulz_matches_baseline(testvector, g, ref):
    tv = testvector("muon_orthogonalize")
    G, expected = torch.from_numpy(tv[g]), torch.from_numpy(tv[ref])
    out = newton_schulz(G, steps=5)
    assert out.dtype == torch.bfloat16 and out.shape == G.shape
    assert _rel_fro(out, expected) < 1e-2
    # Batched over the leading dim: each matrix as if orthogonalised alone.
    for i in range(G.shape[0]):
        single = newton_schulz(G[i], steps=5)
        assert _rel_fro(single, expected[i]) < 1e-2
        assert _rel_fro(out[i], single) < 1e-2


@pytest.mark.gpu
def test_newton_schulz_cuda_matches_test_vectors(testvector):
    tv = testvector("muon_orthogonalize")
    for g, ref in (("G", "ns5"), ("G_tall", "ns5_tall")):
        out = newton_schulz(torch.from_numpy(tv[g]).cuda(), steps=5).cpu()
        assert _rel_fro(out, torch.from_numpy(tv[ref])) < 1e-2


def test_newton_schulz_approximately_orthogonal():
    G = torch.randn(2, 32, 80, generator=torch.Generator().manual_seed(0))
    X = newton_schulz(G, steps=5).double()
    # The quintic drives singular values into roughly [0.7, 1.2], not exactly 1.
    sv = torch.linalg.svdvals(X)
    assert sv.min() > 0.5 and sv.max() < 1.3


# ------------------------------------------------------------------------------------------------ Muon


def _reference_ns5(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """The records' zeropower_via_newtonschulz5 (one matrix). The root train_gpt.py writes
    ``b * A + c * A @ A``, i.e. (c A) A; the test vectors (#1019) equal c (A A) exactly in bf16, and the
    two groupings differ by ~3% (relative Frobenius) after 5 bf16 steps, so the reference follows the
    test vectors."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X /= X.norm() + eps
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.T if transposed else X


def test_reference_ns5_matches_test_vectors(testvector):
    tv = testvector("muon_orthogonalize")
    for g, ref in (("G", "ns5"), ("G_tall", "ns5_tall")):
        for G, expected in zip(torch.from_numpy(tv[g]), torch.from_numpy(tv[ref])):
            assert _rel_fro(_reference_ns5(G), expected) < 1e-2


def _reference_muon_step(params, grads, bufs, lr, momentum, nesterov=True, steps=5):
    """The baseline's Muon.step on single matrices (no process group)."""
    for p, g, buf in zip(params, grads, bufs):
        buf.mul_(momentum).add_(g)
        u = g.add(buf, alpha=momentum) if nesterov else buf
        u = _reference_ns5(u, steps)
        u = u * max(1, u.size(0) / u.size(1)) ** 0.5
        flat = u.reshape(-1).bfloat16()  # the baseline's bf16 update buffer
        p.add_(flat.view_as(p).to(p.dtype), alpha=-lr)


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_steps_match_reference(nesterov):
    gen = torch.Generator().manual_seed(3)
    shapes = [(16, 40), (48, 12), (16, 40)]  # wide, tall (scaled by sqrt(4) = 2), and a same-shape pair
    init = [torch.randn(s, generator=gen) for s in shapes]
    params = [torch.nn.Parameter(t.clone()) for t in init]
    ref_params = [t.clone() for t in init]
    ref_bufs = [torch.zeros_like(t) for t in init]
    lr, mu = 0.02, 0.9
    opt = Muon(params, lr=lr, momentum=mu, nesterov=nesterov, ns_steps=5)
    for _ in range(3):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        _reference_muon_step(ref_params, grads, ref_bufs, lr, mu, nesterov)
        for p, rp, rb in zip(params, ref_params, ref_bufs):
            assert torch.equal(opt.state[p]["momentum_buffer"], rb)
            # The same bf16 arithmetic (equal on CPU); allow a few bf16 ulps of one step's size for
            # other matmul kernels. A wrong momentum, Nesterov term, scale or lr is off by O(lr).
            torch.testing.assert_close(p.detach(), rp, rtol=0, atol=0.02 * lr)
    # The parameters did move by about lr * scale per step.
    moved = (params[1].detach() - init[1]).abs().mean()
    assert moved > 0.5 * lr


def test_muon_update_scale_closed_form():
    """One step from a zero buffer with momentum 0: p -= lr * NS(g) * sqrt(max(1, rows/cols))."""
    gen = torch.Generator().manual_seed(4)
    for shape in [(8, 24), (36, 9)]:
        g = torch.randn(shape, generator=gen)
        p = torch.nn.Parameter(torch.zeros(shape))
        p.grad = g.clone()
        Muon([p], lr=0.1, momentum=0.0, nesterov=True).step()
        expected = -0.1 * (_reference_ns5(g).float() * max(1.0, shape[0] / shape[1]) ** 0.5)
        assert _rel_fro(p.detach(), expected) < 1e-2


def test_muon_rejects_non_matrix():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(5))])


# ------------------------------------------------------------------------------------------- MuonAdam

MATRIX_SUFFIXES = ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight", "mlp.fc.weight",
                   "mlp.proj.weight")


def _routing(model, opt: MuonAdam) -> dict[str, list]:
    """name -> [(optimizer kind, lr)] for every parameter the optimizers hold."""
    names = {id(p): n for n, p in model.named_parameters()}
    where: dict[str, list] = {n: [] for n in names.values()}
    for o in opt.optimizers:
        for g in o.param_groups:
            for p in g["params"]:
                where[names[id(p)]].append((type(o).__name__, g["lr"]))
    return where


@pytest.mark.parametrize("tied", [True, False])
def test_muon_adam_routes_every_parameter_once(tiny_gpt, tied):
    model = tiny_gpt(tie_embeddings=tied)
    opt = MuonAdam(model, matrix_lr=0.04, embed_lr=0.05, head_lr=0.008, scalar_lr=0.03)
    where = _routing(model, opt)
    assert all(len(v) == 1 for v in where.values()), {n: v for n, v in where.items() if len(v) != 1}
    for name, [(kind, lr)] in where.items():
        if name.startswith("blocks.") and name.endswith(MATRIX_SUFFIXES):
            assert (kind, lr) == ("Muon", 0.04), name
        elif name == "tok_emb.weight":
            assert (kind, lr) == ("Adam", 0.05), name
        elif name == "lm_head.weight":
            assert not tied and (kind, lr) == ("Adam", 0.008), name
        else:  # norms' gains, q_gain, resid_mix (2-D but a control tensor), skip_weights
            assert (kind, lr) == ("Adam", 0.03), name
    assert ("Muon", 0.04) in where["blocks.0.attn.c_q.weight"]
    assert where["blocks.0.resid_mix"] == [("Adam", 0.03)] and where["skip_weights"] == [("Adam", 0.03)]
    assert ("lm_head.weight" in where) == (not tied)
    assert all(not o.defaults.get("fused") for o in opt.optimizers if isinstance(o, torch.optim.Adam))


def test_muon_adam_lr_multiplier_and_momentum(tiny_gpt):
    model = tiny_gpt()
    opt = MuonAdam(model, matrix_lr=0.04, embed_lr=0.05, scalar_lr=0.02)
    base = [[g["lr"] for g in o.param_groups] for o in opt.optimizers]
    for mult in (0.5, 0.25, 1.0, 0.0):  # always from the base rates, never compounding
        opt.set_lr_multiplier(mult)
        for o, lrs in zip(opt.optimizers, base):
            for g, lr in zip(o.param_groups, lrs):
                assert g["lr"] == lr * mult and g["base_lr"] == lr
    opt.set_muon_momentum(0.9)
    assert [g["momentum"] for g in opt.muon.param_groups] == [0.9]


def _set_grads(model, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def test_muon_adam_state_dict_round_trip(tiny_gpt):
    torch.manual_seed(0)
    a = tiny_gpt()
    opt_a = MuonAdam(a, muon_momentum=0.9)
    for seed in (1, 2):
        _set_grads(a, seed)
        opt_a.step()
    opt_a.zero_grad()
    assert all(p.grad is None for p in a.parameters())
    model_state = copy.deepcopy(a.state_dict())
    opt_state = copy.deepcopy(opt_a.state_dict())
    assert len(opt_state) == len(opt_a.optimizers)

    b = tiny_gpt()
    b.load_state_dict(model_state)
    opt_b = MuonAdam(b, muon_momentum=0.9)
    opt_b.load_state_dict(opt_state)
    for seed in (3, 4):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.set_lr_multiplier(0.5)
            _set_grads(m, seed)
            o.step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), n
    # A fresh optimizer (no restored state) takes a different path.
    c = tiny_gpt()
    c.load_state_dict(model_state)
    opt_c = MuonAdam(c, muon_momentum=0.9)
    for seed in (3, 4):
        opt_c.set_lr_multiplier(0.5)
        _set_grads(c, seed)
        opt_c.step()
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    with pytest.raises(ValueError):
        opt_b.load_state_dict(opt_state[:-1])


# ------------------------------------------------------------------------------------------- schedule


def test_warmdown_wallclock_closed_form():
    s = WarmdownSchedule(warmdown_iters=250)
    # step_ms = 100,000 / 100 = 1,000; warmdown_ms = 250,000; remaining = 20,000 -> 0.08
    assert s.lr_multiplier(100, 100_000.0, 120_000.0, None) == pytest.approx(0.08)
    assert s.lr_multiplier(100, 100_000.0, 120_000.0, 20_000) == pytest.approx(0.08)  # far from the step cap
    # Before the warmdown window: remaining 590,000 > warmdown_ms 25,000.
    assert s.lr_multiplier(100, 10_000.0, 600_000.0, None) == 1.0
    # Early in the window (remaining 200,000 of 250,000), exactly at its edge (continuous), past the cap.
    assert s.lr_multiplier(100, 100_000.0, 300_000.0, None) == pytest.approx(0.8)
    assert s.lr_multiplier(100, 100_000.0, 350_000.0, None) == pytest.approx(1.0)
    assert s.lr_multiplier(100, 130_000.0, 120_000.0, None) == 0.0
    # Step 0 uses elapsed / 1 as the step time.
    assert s.lr_multiplier(0, 10.0, 1_000.0, None) == pytest.approx(990 / 2_500)


def test_warmdown_iteration_rule():
    s = WarmdownSchedule(warmdown_iters=200)
    cases = {0: 1.0, 799: 1.0, 800: 1.0, 850: 0.75, 900: 0.5, 999: 0.005, 1000: 0.0, 1100: 0.0}
    for step, mult in cases.items():
        assert s.lr_multiplier(step, 1e9, None, 1000) == pytest.approx(mult), step
    # Fewer iterations than the warmdown: decays from the start.
    assert WarmdownSchedule(warmdown_iters=200).lr_multiplier(0, 0.0, None, 100) == pytest.approx(0.5)
    # No cap at all, or no warmdown: constant.
    assert s.lr_multiplier(10**6, 1e9, None, None) == 1.0
    assert WarmdownSchedule(warmdown_iters=0).lr_multiplier(1000, 1e9, 1.0, 1000) == 1.0


def test_warmdown_lr_floor():
    s = WarmdownSchedule(warmdown_iters=200, lr_floor=0.1)
    assert s.lr_multiplier(990, 0.0, None, 1000) == pytest.approx(0.1)
    assert s.lr_multiplier(900, 0.0, None, 1000) == pytest.approx(0.5)
    assert s.lr_multiplier(100, 130_000.0, 120_000.0, None) == pytest.approx(0.1)


def test_momentum_warmup():
    s = WarmdownSchedule(momentum_start=0.85, momentum_end=0.95, momentum_warmup_steps=500)
    assert s.muon_momentum(0) == pytest.approx(0.85)
    assert s.muon_momentum(250) == pytest.approx(0.90)
    assert s.muon_momentum(100) == pytest.approx(0.87)
    assert s.muon_momentum(500) == pytest.approx(0.95)
    assert s.muon_momentum(5000) == pytest.approx(0.95)
    assert WarmdownSchedule(momentum_warmup_steps=0).muon_momentum(0) == 0.95


def test_warmdown_rejects_negative():
    with pytest.raises(ValueError, match="warmdown_iters"):
        WarmdownSchedule(warmdown_iters=-1)


def test_muon_adam_fused_default_off_on_cpu(tiny_gpt):
    opt = MuonAdam(tiny_gpt())
    adams = [o for o in opt.optimizers if isinstance(o, torch.optim.Adam)]
    assert adams and all(o.param_groups[0]["fused"] in (False, None) for o in adams)
    assert np.isclose(adams[0].param_groups[0]["betas"][1], 0.95)


def test_grad_clip_norm_scales_all_gradients_to_the_global_norm():
    from golf.models.gpt import GPT
    from golf.optim.muon_adam import MuonAdam

    torch.manual_seed(0)
    model = GPT(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    total = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    before = {id(p): p.grad.clone() for p in model.parameters()}
    opt = MuonAdam(model, grad_clip_norm=0.5)
    for o in opt.optimizers:  # look at the clipped grads only
        o.step = lambda *a, **k: None
    opt.step()
    after = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert after == pytest.approx(0.5, rel=1e-4)
    p0 = next(model.parameters())
    assert torch.allclose(p0.grad, before[id(p0)] * (0.5 / total), rtol=1e-4)
    with pytest.raises(ValueError, match="grad_clip_norm must be >= 0"):
        MuonAdam(model, grad_clip_norm=-1)
