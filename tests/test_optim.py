"""The orthogonalisation routine, Muon (one process and 2 gloo ranks), the Muon/AdamW split and the schedule."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from golf.optim.muon import Muon
from golf.optim.muon_adam import MuonAdam
from golf.optim.orthogonalize import Orthogonalizer, coefficients_for, orthogonalize, singular_value_band
from golf.optim.schedule import WarmdownSchedule
from tests.helpers import free_port

NS5 = Orthogonalizer()
TURBO = Orthogonalizer("polar_express_aol", 4, "aol", "row_col")


def _rel_fro(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------- orthogonalize


@pytest.mark.parametrize(("ortho", "pairs"), [
    (NS5, [("G", "ns5"), ("G_tall", "ns5_tall")]),
    (Orthogonalizer("polar_express_aol", 4, "aol"), [("G", "turbo4"), ("G_tall", "turbo4_tall")]),
    (TURBO, [("G", "turbo4_rowcol")]),
])
def test_orthogonalize_is_the_records_function_bit_for_bit(testvector, ortho, pairs):
    """#1019's NS5 and #1089's Turbo-Muon (AOL + Polar Express + row_col), batched or one matrix at a time.

    Bit for bit on PyTorch's own bf16 GEMM, which the vectors were made with. oneDNN takes over bf16 matmuls
    on CPUs with AMX or AVX512-BF16 and sums in another order (one matrix of `ns5` then differs by 5e-3), so
    oneDNN is switched off for the exact comparison and held to the vectors' 1e-2 tolerance.
    """
    tv = testvector("muon_orthogonalize")
    for g, ref in pairs:
        G, expected = torch.from_numpy(tv[g]), torch.from_numpy(tv[ref])
        with torch.backends.mkldnn.flags(enabled=False):
            out = orthogonalize(G, **ortho.kwargs())
        assert out.dtype == torch.bfloat16 and out.shape == G.shape
        assert torch.equal(out.float(), expected.float())
        assert _rel_fro(orthogonalize(G, **ortho.kwargs()), expected) < 1e-2
        for i in range(G.shape[0]):
            assert _rel_fro(orthogonalize(G[i], **ortho.kwargs()), expected[i]) < 1e-2


@pytest.mark.gpu
def test_orthogonalize_cuda_matches_test_vectors(testvector):
    tv = testvector("muon_orthogonalize")
    for ortho, g, ref in ((NS5, "G", "ns5"), (NS5, "G_tall", "ns5_tall"), (TURBO, "G", "turbo4_rowcol")):
        out = orthogonalize(torch.from_numpy(tv[g]).cuda(), **ortho.kwargs()).cpu()
        assert _rel_fro(out, torch.from_numpy(tv[ref])) < 1e-2


SCHEDULES = [("quintic", 5, "frobenius", 1.0), ("polar_express", 5, "frobenius", 1.01),
             ("polar_express_aol", 4, "aol", 1.0), ("polar_express_aol", 4, "aol", 1.01)]


@pytest.mark.parametrize(("schedule", "steps", "pre", "safety"), SCHEDULES)
def test_orthogonalize_maps_singular_values_through_its_polynomials(schedule, steps, pre, safety):
    """In float64 the output's singular values are exactly p_k(...p_1(s)) of the preconditioned input's."""
    o = Orthogonalizer(schedule, steps, pre, safety=safety)
    G = torch.randn(2, 24, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = torch.linalg.svdvals(orthogonalize(G, coefficients=(), precondition=pre, dtype=torch.float64))
    for a, b, c in o.coefficients:
        s = a * s + b * s**3 + c * s**5
    out = torch.linalg.svdvals(orthogonalize(G, **o.kwargs(), dtype=torch.float64))
    torch.testing.assert_close(out.sort().values, s.sort().values, rtol=1e-10, atol=0)


@pytest.mark.parametrize(("schedule", "steps", "pre", "safety"), [s for s in SCHEDULES if s[3] > 1 or s[0] == "quintic"])
@pytest.mark.parametrize("shape", [(3, 48, 128), (2, 256, 512), (2, 384, 128)])
def test_orthogonalize_bf16_stays_in_the_promised_band(schedule, steps, pre, safety, shape):
    """bf16 singular values lie in the image of the input's singular-value range under the schedule's
    polynomials, up to bf16 rounding (1.5%). The quintic promises about [0.68, 1.13], Polar Express with its
    safety factor [0.876, 1.124] once the spectrum is in range."""
    o = Orthogonalizer(schedule, steps, pre, safety=safety)
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    s0 = torch.linalg.svdvals(orthogonalize(G.double(), coefficients=(), precondition=pre, dtype=torch.float64))
    lo, hi = singular_value_band(o.coefficients, float(s0.min()), float(s0.max()))
    sv = torch.linalg.svdvals(orthogonalize(G, **o.kwargs()).double())
    assert lo - 0.015 < float(sv.min()) and float(sv.max()) < hi + 0.015, (float(sv.min()), float(sv.max()), lo, hi)
    assert hi < 1.14 and (lo > 0.65 or s0.min() < 1e-2)


def test_polar_express_without_safety_leaves_its_band_in_bf16():
    """Why ``safety`` exists: from a Frobenius start the raw Polar Express coefficients overshoot in bf16."""
    G = torch.randn(3, 48, 128, generator=torch.Generator().manual_seed(0))
    raw = orthogonalize(G, coefficients=coefficients_for("polar_express", 5), c_first=True)
    assert float(torch.linalg.svdvals(raw.double()).max()) > 1.5


def test_row_col_post_norm_gives_unit_columns_and_near_unit_rows():
    G = torch.randn(4, 32, 96, generator=torch.Generator().manual_seed(2))
    out = orthogonalize(G, **TURBO.kwargs()).float()
    torch.testing.assert_close(out.norm(dim=-2), torch.ones(4, 96), atol=2e-2, rtol=0)
    assert float((out.norm(dim=-1) - 96**0.5 / 32**0.5).abs().max()) < 0.2 * 96**0.5 / 32**0.5


def test_orthogonalizer_rejects_bad_options():
    with pytest.raises(ValueError, match="optimizer.orthogonalize.schedule"):
        Orthogonalizer("cubic")
    with pytest.raises(ValueError, match="optimizer.orthogonalize.precondition"):
        Orthogonalizer(precondition="spectral")
    with pytest.raises(ValueError, match="optimizer.orthogonalize.post_norm"):
        Orthogonalizer(post_norm="col_row")
    with pytest.raises(ValueError, match="optimizer.orthogonalize.steps"):
        Orthogonalizer(steps=0)
    with pytest.raises(ValueError, match="optimizer.orthogonalize.safety"):
        Orthogonalizer(safety=0.9)


# ------------------------------------------------------------------------------------------------ Muon


def _reference_muon_step(params, grads, bufs, lr, momentum, nesterov=True, wd=0.0, wd_after=False, ortho=NS5):
    """Muon on single matrices: momentum, Nesterov, orthogonalise, scale, decoupled decay (before/after)."""
    for p, g, buf in zip(params, grads, bufs):
        buf.mul_(momentum).add_(g)
        u = g.add(buf, alpha=momentum) if nesterov else buf
        u = orthogonalize(u, **ortho.kwargs()).float() * max(1, u.size(0) / u.size(1)) ** 0.5
        if wd and not wd_after:
            p.mul_(1 - lr * wd)
        p.add_(u, alpha=-lr)
        if wd and wd_after:
            p.mul_(1 - lr * wd)


@pytest.mark.parametrize(("nesterov", "wd", "wd_after"), [(True, 0.0, False), (False, 0.0, False), (True, 0.5, False),
                                                          (True, 0.5, True)])
def test_muon_steps_match_reference(nesterov, wd, wd_after):
    gen = torch.Generator().manual_seed(3)
    shapes = [(16, 40), (48, 12), (16, 40)]  # wide, tall (scaled by sqrt(4) = 2), and a same-shape pair
    init = [torch.randn(s, generator=gen) for s in shapes]
    params = [torch.nn.Parameter(t.clone()) for t in init]
    ref_params = [t.clone() for t in init]
    ref_bufs = [torch.zeros_like(t) for t in init]
    lr, mu = 0.02, 0.9
    opt = Muon(params, lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd, wd_after_update=wd_after)
    for _ in range(3):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        _reference_muon_step(ref_params, grads, ref_bufs, lr, mu, nesterov, wd, wd_after)
        stacked = opt.state[params[0]]["momentum_buffer"]  # the (16, 40) pair, stacked
        assert torch.equal(stacked, torch.stack([ref_bufs[0], ref_bufs[2]]))
        for p, rp in zip(params, ref_params):
            torch.testing.assert_close(p.detach(), rp, rtol=0, atol=0.02 * lr)
    assert (params[1].detach() - init[1]).abs().mean() > 0.5 * lr  # it did move by ~lr * scale per step


def test_muon_update_scale_closed_form():
    """One step from a zero buffer with momentum 0: p -= lr * O(g) * sqrt(max(1, rows/cols))."""
    gen = torch.Generator().manual_seed(4)
    for shape in [(8, 24), (36, 9)]:
        g = torch.randn(shape, generator=gen)
        p = torch.nn.Parameter(torch.zeros(shape))
        p.grad = g.clone()
        Muon([p], lr=0.1, momentum=0.0, nesterov=True).step()
        expected = -0.1 * (orthogonalize(g).float() * max(1.0, shape[0] / shape[1]) ** 0.5)
        assert _rel_fro(p.detach(), expected) < 1e-2


def test_muon_bf16_momentum_survives_a_state_round_trip():
    p = torch.nn.Parameter(torch.randn(8, 16))
    opt = Muon([p], momentum_dtype=torch.bfloat16)
    p.grad = torch.randn(8, 16)
    opt.step()
    state = copy.deepcopy(opt.state_dict())
    opt2 = Muon([p], momentum_dtype=torch.bfloat16)
    opt2.load_state_dict(state)
    assert opt2.state[p]["momentum_buffer"].dtype == torch.bfloat16


def test_muon_reads_lr_and_momentum_after_a_state_restore():
    """The trainer restores the optimizer after its compile warm-up; load_state_dict replaces the param-group
    dicts, and the schedule's lr / momentum must still reach the step (a cached dict kept the warm-up's)."""
    p = torch.nn.Parameter(torch.randn(8, 16))
    opt = Muon([p], lr=0.1, momentum=0.95)
    saved = copy.deepcopy(opt.state_dict())
    p.grad = torch.randn(8, 16)
    opt.step()  # builds the shard layout
    opt.load_state_dict(saved)
    for g in opt.param_groups:
        g["lr"] = 0.0
    before = p.detach().clone()
    p.grad = torch.randn(8, 16)
    opt.step()
    assert torch.equal(p.detach(), before)


def test_muon_rejects_non_matrix():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(5))])


# ------------------------------------------------------------------------------------------- MuonAdam


def _small_model(**kw):
    from golf.models.gpt import GPT

    base = dict(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2)
    return GPT(**{**base, **kw})


def _routing(model, opt: MuonAdam) -> dict[str, list]:
    """name -> [(optimizer kind, lr, betas, weight decay)] for every parameter the optimizers hold."""
    names = {id(p): n for n, p in model.named_parameters()}
    where: dict[str, list] = {n: [] for n in names.values()}
    for o in opt.optimizers:
        for g in o.param_groups:
            for p in g["params"]:
                where[names[id(p)]].append((type(o).__name__, g["lr"], g.get("betas"), g["weight_decay"]))
    return where


@pytest.mark.parametrize("proj", ["adam", "muon"])
def test_muon_adam_routes_every_parameter_once(proj):
    model = _small_model(tie_embeddings=False, bigram_buckets=16, bigram_dim=8, ve_dim=8, ve_layers=[1])
    opt = MuonAdam(model, matrix_lr=0.04, embed_lr=0.05, head_lr=0.008, scalar_lr=0.03, proj_optimizer=proj,
                   embed_beta1=0.7, adam_weight_decay=0.04, muon_weight_decay=0.02)
    where = _routing(model, opt)
    assert all(len(v) == 1 for v in where.values()), {n: v for n, v in where.items() if len(v) != 1}
    assert where["blocks.0.attn.c_q.weight"] == [("Muon", 0.04, None, 0.02)]
    assert where["blocks.1.mlp.proj.weight"] == [("Muon", 0.04, None, 0.02)]
    for table in ("tok_emb.weight", "bigram.embed.weight", "ve.embed.weight"):
        assert where[table] == [("AdamW", 0.05, (0.7, 0.95), 0.04)], table
    assert where["lm_head.weight"] == [("AdamW", 0.008, (0.9, 0.95), 0.0)]  # the head never decays
    for scalar in ("blocks.0.resid_mix", "skip_weights", "blocks.1.attn.q_gain", "bigram.scale", "ve_layer_scales.0"):
        assert where[scalar] == [("AdamW", 0.03, (0.9, 0.95), 0.04)], scalar
    expect_proj = ("Muon", 0.04, None, 0.02) if proj == "muon" else ("AdamW", 0.03, (0.9, 0.95), 0.04)
    assert where["bigram.proj.weight"] == [expect_proj] and where["ve.proj.weight"] == [expect_proj]
    assert not opt.adam.defaults.get("fused") and not opt.syncs_gradients


def test_muon_adam_lr_multiplier_and_momentum():
    model = _small_model()
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
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)


def test_muon_adam_state_dict_round_trip():
    torch.manual_seed(0)
    a = _small_model()
    opt_a = MuonAdam(a, muon_momentum=0.9, muon_momentum_dtype="bfloat16")
    for seed in (1, 2):
        _set_grads(a, seed)
        opt_a.step()
    opt_a.zero_grad()
    assert all(p.grad is None for p in a.parameters())
    model_state = copy.deepcopy(a.state_dict())
    opt_state = copy.deepcopy(opt_a.state_dict())
    assert len(opt_state) == len(opt_a.optimizers)

    b = _small_model()
    b.load_state_dict(model_state)
    opt_b = MuonAdam(b, muon_momentum=0.9, muon_momentum_dtype="bfloat16")
    opt_b.load_state_dict(opt_state)
    for seed in (3, 4):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.set_lr_multiplier(0.5)
            _set_grads(m, seed)
            o.step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), n
    c = _small_model()  # a fresh optimizer (no restored state) takes a different path
    c.load_state_dict(model_state)
    opt_c = MuonAdam(c, muon_momentum=0.9, muon_momentum_dtype="bfloat16")
    for seed in (3, 4):
        opt_c.set_lr_multiplier(0.5)
        _set_grads(c, seed)
        opt_c.step()
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    with pytest.raises(ValueError):
        opt_b.load_state_dict(opt_state[:-1])


def test_grad_clip_equals_clipping_the_whole_gradient_first():
    """A clipped step equals an unclipped step on gradients scaled by clip / ||g|| (global norm)."""
    torch.manual_seed(0)
    a, b = _small_model(bigram_buckets=16, bigram_dim=8), _small_model(bigram_buckets=16, bigram_dim=8)
    b.load_state_dict(a.state_dict())
    _set_grads(a, 5)
    _set_grads(b, 5)
    total = torch.nn.utils.clip_grad_norm_(list(b.parameters()), 0.5)
    assert total > 0.5  # the clip is active
    MuonAdam(a, grad_clip_norm=0.5).step()
    MuonAdam(b).step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)
    with pytest.raises(ValueError, match="grad_clip_norm must be >= 0"):
        MuonAdam(a, grad_clip_norm=-1)


# ---------------------------------------------------------------------------------- Parallel Muon, gloo



def _rank_grads(model, rank: int, step: int) -> None:
    gen = torch.Generator().manual_seed(1000 * step + rank)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def _parallel_worker(rank: int, world: int, port: int, kw: dict, same: bool, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = _small_model(num_layers=3, bigram_buckets=16, bigram_dim=8)
    opt = MuonAdam(model, **kw)
    reduced = None
    for step in range(3):
        opt.set_muon_momentum(0.9)
        _rank_grads(model, 0 if same else rank, step)
        if step == 0:  # what the reduce-scatter gives this rank: its shard of every averaged stack
            opt.muon.launch_reduce()
            reduced = [s.clone() for s in opt.muon.wait_reduce()]
        opt.step()
        opt.zero_grad()
    torch.save({"state": model.state_dict(), "shards": reduced}, f"{out}.{rank}")
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # skip interpreter teardown: gloo's threads can abort it (SIGABRT, 'terminate called without an active exception')


@pytest.mark.parametrize(("kw", "same", "atol"), [
    (dict(parallel=True, muon_momentum_dtype="bfloat16", grad_clip_norm=0.0), True, 0.0),
    (dict(parallel=True, muon_momentum_dtype="float32", grad_clip_norm=0.3, proj_optimizer="muon"), False, 1e-6),
    (dict(parallel=True, muon_momentum_dtype="bfloat16", grad_clip_norm=0.3, adam_weight_decay=0.04), False, 5e-3),
])
def test_parallel_muon_on_two_gloo_ranks_equals_one_process(tmp_path, kw, same, atol):
    """Each rank holds its own gradients; one process steps on their average. Reduce-scatter, sharded
    orthogonalisation, all-gather, flat all-reduce and the global clip give the single-process result:
    exactly with identical gradients or an fp32 exchange; with the records' bf16 exchange the averaged
    gradient is rounded to bf16 first, and Newton-Schulz carries that rounding into the update."""
    out = str(tmp_path / "rank")
    mp.spawn(_parallel_worker, args=(2, free_port(), kw, same, out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    torch.manual_seed(0)
    model = _small_model(num_layers=3, bigram_buckets=16, bigram_dim=8)
    opt = MuonAdam(model, **{**kw, "parallel": False})
    for step in range(3):
        opt.set_muon_momentum(0.9)
        _rank_grads(model, 0, step)
        if not same:
            other = _small_model(num_layers=3, bigram_buckets=16, bigram_dim=8)
            _rank_grads(other, 1, step)
            for p, q in zip(model.parameters(), other.parameters()):
                p.grad = (p.grad + q.grad) / 2
        if step == 0:  # the two ranks' shards, concatenated, are the averaged stacks (padded to 2)
            opt.muon.launch_reduce()
            for mine, a, b in zip(opt.muon.wait_reduce(), ranks[0]["shards"], ranks[1]["shards"]):
                both = torch.cat([a, b]).float()
                assert not both[mine.size(0):].any()
                bf16 = atol > 1e-6  # summing two bf16 values rounds: one ulp (1/128 at |g| ~ 1-2)
                torch.testing.assert_close(both[: mine.size(0)], mine.float(), rtol=1e-2 if bf16 else 0,
                                           atol=1.6e-2 if bf16 else 1e-6)
        opt.step()
        opt.zero_grad()
    for got in (r["state"] for r in ranks):  # every rank ends with the same weights
        for n, p in model.state_dict().items():
            torch.testing.assert_close(got[n], p, rtol=0, atol=atol, msg=n)


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


def test_warmdown_fraction_closed_form():
    s = WarmdownSchedule(warmdown_fraction=0.25)
    assert s.lr_multiplier(10, 50_000.0, 100_000.0, None) == 1.0            # before the last quarter
    assert s.lr_multiplier(10, 90_000.0, 100_000.0, None) == pytest.approx(0.4)
    assert s.lr_multiplier(900, 0.0, None, 1000) == pytest.approx(0.4)       # by iterations without a cap
    assert s.lr_multiplier(1000, 0.0, None, 1000) == 0.0
    with pytest.raises(ValueError, match="schedule.warmdown_fraction"):
        WarmdownSchedule(warmdown_fraction=1.5)


def test_warmdown_capped_at_the_budget():
    """#1089: warmdown_ms = min(warmdown_iters * step_ms, cap); a short run then decays from its start."""
    capped, plain = WarmdownSchedule(warmdown_iters=4000, cap_at_budget=True), WarmdownSchedule(warmdown_iters=4000)
    # 1 s/step, 180 s budget: 4000 steps of warmdown is 4000 s. Plain: 170/4000; capped: 170/180.
    assert plain.lr_multiplier(10, 10_000.0, 180_000.0, None) == pytest.approx(170 / 4000)
    assert capped.lr_multiplier(10, 10_000.0, 180_000.0, None) == pytest.approx(170 / 180)




def test_schedule_reaches_every_group_after_the_warmup_restore():
    """Through the trainer: compile warm-up steps, state restore, then a schedule whose LR is 0 after the
    first step must freeze every parameter (a Muon that kept pre-restore group dicts still moved)."""
    from golf.dist import DistInfo
    from golf.logging import NullBackend
    from golf.trainer import TrainConfig, train
    from tests.helpers import RandomTokens

    class ZeroAfterFirst(WarmdownSchedule):
        def lr_multiplier(self, step, *args):
            return 1.0 if step == 0 else 0.0

    torch.manual_seed(0)
    model = _small_model()
    snaps = []
    opt = MuonAdam(model, parallel=True, muon_momentum_dtype="bfloat16", adam_weight_decay=0.04, muon_weight_decay=0.04)
    real_step = opt.step

    def step_and_snapshot():
        real_step()
        snaps.append({k: v.clone() for k, v in model.state_dict().items()})

    opt.step = step_and_snapshot
    cfg = TrainConfig(batch_tokens=256, seq_len=32, max_micro_batch_tokens=128, max_wallclock_seconds=0, iterations=3,
                      warmup_steps=2, compile=False, device="cpu")
    train(model=model, train_model=model, optimizer=opt, schedule=ZeroAfterFirst(), loader=RandomTokens(), cfg=cfg,
          dist_info=DistInfo(0, 1, 0, torch.device("cpu")), log=lambda *_: None, metrics=NullBackend(),
          autocast_dtype=None)
    after_first, end = snaps[2], snaps[-1]  # 2 warm-up steps, then the training steps
    for k, v in end.items():
        assert torch.equal(v, after_first[k]), k


def _records_1855_step(G: torch.Tensor) -> torch.Tensor:
    """#1855's MuonEq-R row normalisation and Polar Express, written out from frontier.md §8: rows to unit norm
    (fp32 norm, clamped at 1e-7), bf16, the wide orientation, X / (||X||_F + 1e-7), five (a, b, c) steps of
    A = X Xᵀ, B = b A + c (A A), X = a X + B X."""
    from golf.optim.orthogonalize import POLAR_EXPRESS_1787

    u = G / G.float().norm(dim=-1, keepdim=True).clamp_min(1e-7).to(G.dtype)
    X = u.bfloat16()
    tall = X.size(-2) > X.size(-1)
    X = X.mT if tall else X
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in POLAR_EXPRESS_1787:
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if tall else X


@pytest.mark.parametrize("shape", [(3, 64, 48), (2, 40, 96)])
def test_muoneq_r_with_the_1787_polar_express_is_the_records_step_bit_for_bit(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).bfloat16()
    ortho = Orthogonalizer("polar_express_1787", 5, pre_norm="row")
    assert torch.equal(orthogonalize(G, **ortho.kwargs()), _records_1855_step(G))
    with pytest.raises(ValueError, match="optimizer.orthogonalize.pre_norm"):
        Orthogonalizer(pre_norm="col")


def test_wd_taper_follows_1729_and_reaches_muon_only():
    from golf.optim.muon_adam import MuonAdam
    from golf.optim.schedule import WarmdownSchedule

    s = WarmdownSchedule(wd_taper_start=0.7, wd_taper_final=0.5)
    got = [s.wd_multiplier(0, ms, 1000.0, None) for ms in (0, 700, 850, 1000, 1200)]
    assert got == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.5])
    assert WarmdownSchedule().wd_multiplier(5, 900, 1000.0, None) == 1.0
    assert s.wd_multiplier(85, 0, None, 100) == pytest.approx(0.75)  # by steps without a wallclock cap
    from golf.models.gpt import GPT

    opt = MuonAdam(GPT(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2),
                   muon_weight_decay=0.095, adam_weight_decay=0.02)
    opt.set_wd_multiplier(0.5)
    assert [g["weight_decay"] for g in opt.muon.param_groups] == [pytest.approx(0.0475)]
    assert {g["weight_decay"] for g in opt.adam.param_groups if g["role"] != "head"} == {0.02}
    opt.set_wd_multiplier(1.0)
    assert opt.muon.param_groups[0]["weight_decay"] == pytest.approx(0.095)
    with pytest.raises(ValueError, match="schedule.wd_taper_start"):
        WarmdownSchedule(wd_taper_start=1.0)
