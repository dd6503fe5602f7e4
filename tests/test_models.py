"""The model options against direct computations, the records' test vectors and their logged sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from golf.kernels import flash4
from golf.kernels.rotary import apply_rotary, rope_base_for, rotary_tables
from golf.kernels.xsa import exclusive
from golf.models.attention import attend, check_kernel, fa3_function, resolve_kernel
from golf.models.embeddings import SmearGate, bigram_index, engram_indices, trigram_index
from golf.models.gpt import GPT
from golf.models.layers import CastedLinear

SMALL = dict(vocab_size=64, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# The records' logged parameter counts (techniques.md §2.1): golf's presets are the same networks.
@pytest.mark.parametrize(("overrides", "params"), [
    (["model=baseline"], 17_059_912),
    (["model=xsa4"], 26_993_756),                                                                  # #414
    (["model=xsa_all"], 27_067_484),                                                               # #1019
    (["model=engram"], 30_666_843),                                                                # #1089
    (["model=xsa_all", "model.xsa_last_n=4", "model.bigram_buckets=1536", "model.bigram_dim=128"], 26_928_220),  # #549
    (["model=xsa_all", "model.xsa_last_n=4", "model.bigram_dim=80"], 26_952_796),                  # #593
    (["model=xsa_all", "model.xsa_last_n=4", "model.bigram_buckets=1536", "model.bigram_dim=128", "model.ve_dim=0",
      "model.ln_scale=false", "model.value_residual=true", "model.gated_attention=true"], 26_809_543),  # #635
])
def test_presets_have_the_records_parameter_counts(compose, overrides, params):
    model = instantiate(compose(overrides).model, _convert_="all")()
    assert _count(model) == params


def test_xsa_removes_the_own_value_component(testvector):
    tv = testvector("xsa")
    y, v = torch.from_numpy(tv["y"]), torch.from_numpy(tv["v"])
    out = exclusive(y, v)
    torch.testing.assert_close(out, torch.from_numpy(tv["out"]), rtol=1e-5, atol=1e-6)
    # Orthogonal to the token's own value of its KV group, and y minus a multiple of it.
    group = y.size(2) // v.size(2)
    v_rep = v.repeat_interleave(group, dim=2)
    cos = (out * v_rep).sum(-1) / (out.norm(dim=-1) * v_rep.norm(dim=-1))
    assert cos.abs().max() < 1e-5
    coef = ((y - out) * v_rep).sum(-1) / (v_rep * v_rep).sum(-1)
    torch.testing.assert_close(y - out, coef[..., None] * v_rep, rtol=1e-4, atol=1e-5)


def test_xsa_layers_are_the_last_n():
    model = GPT(**SMALL, xsa_last_n=3)
    assert [b.attn.xsa for b in model.blocks] == [False, True, True, True]
    with pytest.raises(ValueError, match="model.xsa_last_n must be in 0..num_layers=4"):
        GPT(**SMALL, xsa_last_n=5)


def test_hash_indices_match_the_records(testvector):
    tv = testvector("hash_indices")
    ids = torch.from_numpy(tv["ids"]).long()
    assert torch.equal(bigram_index(ids, 3072), torch.from_numpy(tv["bigram3072"]).long())
    assert torch.equal(engram_indices(ids, 8192, 2), torch.from_numpy(tv["engram8192_heads2_orders2"]).long())


def test_trigram_index_closed_form():
    ids = torch.tensor([[5, 7, 11, 13]])
    mod = 99
    expect = [mod, mod, ((36313 * 11) ^ (27191 * 7) ^ (51497 * 5)) % mod, ((36313 * 13) ^ (27191 * 11) ^ (51497 * 7)) % mod]
    assert trigram_index(ids, 100).tolist() == [expect]


def test_ntk_base_is_the_records_at_seq_2048():
    assert rope_base_for(2048, 10000.0, 16, 1024) == pytest.approx(10000 * 2 ** (16 / 14))
    assert rope_base_for(2048, 10000.0, 16, 1024) == pytest.approx(22_082, abs=1)
    assert rope_base_for(1024, 10000.0, 16, 1024) == 10000.0
    assert rope_base_for(4096, 10000.0, 16, None) == 10000.0


def test_partial_rope_rotates_only_its_channels():
    x = torch.randn(2, 10, 3, 64)
    cos, sin = rotary_tables(10, 16, 10000.0, torch.device("cpu"))
    out = apply_rotary(x, cos[:, None, :], sin[:, None, :])
    assert torch.equal(out[..., 16:], x[..., 16:])
    torch.testing.assert_close(out[..., :16].norm(dim=-1), x[..., :16].norm(dim=-1))
    # Pair (i, i+8) at position t is rotated by t * base^(-2i/16).
    t, i = 7, 3
    ang = t * 10000.0 ** (-2 * i / 16)
    a, b = x[0, t, 0, i], x[0, t, 0, i + 8]
    assert float(out[0, t, 0, i]) == pytest.approx(float(a * math.cos(ang) + b * math.sin(ang)), abs=1e-5)


def test_ln_scale_and_per_layer_slopes():
    model = GPT(**SMALL, ln_scale=True, activation="leaky_relu2", mlp_slopes=[0.1, 0.2], mlp_slope=0.3)
    assert [b.ln_scale for b in model.blocks] == [1.0, 1 / math.sqrt(2), 1 / math.sqrt(3), 0.5]
    assert [b.mlp.slope for b in model.blocks] == [0.1, 0.2, 0.3, 0.3]
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(model.blocks[3].norm(x), 0.5 * F.rms_norm(x, (64,)))
    h = torch.linspace(-2, 2, 9)
    mlp = model.blocks[0].mlp
    expect = torch.where(h > 0, h * h, 0.01 * h * h)
    torch.testing.assert_close(F.leaky_relu(h, mlp.slope).square(), expect)


def test_smear_gate_closed_form():
    sg = SmearGate(4)
    with torch.no_grad():
        sg.gate.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
    x = torch.randn(2, 6, 4)
    g = torch.sigmoid(sg.gate)
    expect = (1 - g) * x
    expect[:, 1:] += g * x[:, :-1]
    torch.testing.assert_close(sg(x), expect)


def test_gated_skips_blend_halfway_at_init_and_plain_skips_add():
    torch.manual_seed(0)
    gated = GPT(**SMALL, skips="gated", init="banked")
    plain = GPT(**SMALL, skips="plain", init="banked")
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "skip_gates" not in k})
    with torch.no_grad():
        for b in list(gated.blocks) + list(plain.blocks):  # make every block the identity: x_out = x_in
            b.attn_scale.zero_()
            b.mlp_scale.zero_()
    ids = torch.randint(0, 64, (2, 8))
    # 2 encoder layers push x0 twice; the decoder pops them: plain gives x0 + 2*x0 ... gated halves each time.
    x0 = F.rms_norm(gated.tok_emb(ids), (64,))
    torch.testing.assert_close(plain.hidden(ids), F.rms_norm(3 * x0, (64,)))
    torch.testing.assert_close(gated.hidden(ids), F.rms_norm(x0, (64,)))


def test_value_embedding_goes_to_the_chosen_layers_only():
    torch.manual_seed(0)
    model = GPT(**SMALL, ve_dim=16, ve_layers=[1, 3], init="banked")
    seen = []
    for i, b in enumerate(model.blocks):
        b.attn.register_forward_pre_hook(lambda m, args, i=i: seen.append((i, args[3] is not None)))
    model(torch.randint(0, 64, (1, 8)), torch.randint(0, 64, (1, 8)))
    assert seen == [(0, False), (1, True), (2, False), (3, True)]
    with pytest.raises(ValueError, match="model.ve_layers must index layers 0..3"):
        GPT(**SMALL, ve_dim=16, ve_layers=[4])


def test_value_residual_mixes_layer_zero_values():
    torch.manual_seed(0)
    model = GPT(**SMALL, value_residual=True, init="banked")
    x = torch.randn(1, 6, 64)
    cos, sin = rotary_tables(6, 16, 10000.0, torch.device("cpu"))
    attn = model.blocks[1].attn
    _, v1 = attn(x, cos, sin)
    v0 = torch.randn_like(v1)
    with torch.no_grad():
        attn.vr_lambda.copy_(torch.tensor([1.0, 0.0]))  # only layer 0's values
    out_v0, _ = attn(x, cos, sin, v0=v0)
    with torch.no_grad():
        attn.c_v.weight.zero_()  # this layer's own V no longer matters, v0 does
    out_again, _ = attn(x, cos, sin, v0=v0)
    torch.testing.assert_close(out_v0, out_again)


def test_gated_attention_starts_near_open():
    model = GPT(**SMALL, gated_attention=True)
    gate = model.blocks[0].attn.attn_gate
    assert torch.all(gate.weight == 0) and torch.allclose(gate.bias, torch.full((4,), 4.0))
    assert float(torch.sigmoid(gate.bias[0].detach())) == pytest.approx(0.982, abs=1e-3)


def test_banked_init_is_orthogonal_with_zero_outputs_and_mimetic_option():
    torch.manual_seed(0)
    model = GPT(**SMALL, init="banked")
    w = model.blocks[0].attn.c_q.weight.detach()
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)
    assert torch.all(model.blocks[0].attn.proj.weight == 0) and torch.all(model.blocks[0].mlp.proj.weight == 0)
    mim = GPT(**SMALL, init="banked", mimetic_vo_alpha=0.05)
    a = mim.blocks[2].attn
    hd = a.head_dim
    for h in range(a.num_heads):
        g = h // (a.num_heads // a.num_kv_heads)
        torch.testing.assert_close(a.proj.weight[h * hd:(h + 1) * hd], -0.05 * a.c_v.weight[g * hd:(g + 1) * hd])


def test_ortho_init_scales_projections():
    torch.manual_seed(0)
    model = GPT(**{**SMALL, "model_dim": 128}, init="ortho", ortho_proj_scale=True, bigram_buckets=32, bigram_dim=64)
    w = model.bigram.proj.weight.detach()  # 128 x 64: orthonormal columns x 1/sqrt(2L), L = 4
    torch.testing.assert_close(w.T @ w, torch.eye(64) / 8, atol=1e-5, rtol=0)
    q = model.blocks[0].attn.c_q.weight.detach()  # block matrices: orthogonal, unscaled
    torch.testing.assert_close(q @ q.T, torch.eye(128), atol=1e-5, rtol=0)


def test_default_init_gives_hash_projections_a_start():
    """With the baseline's init a zero hash table behind a zero projection would never move."""
    model = GPT(**SMALL, bigram_buckets=32, bigram_dim=16)
    assert model.bigram.proj.weight.abs().sum() > 0


def test_mtp_heads_train_but_are_never_exported():
    torch.manual_seed(0)
    model = GPT(**SMALL, mtp_heads=2, mtp_loss_weight=0.5)
    with torch.no_grad():
        for h in model.mtp_heads:
            h.weight.normal_()
    x, y = torch.randint(0, 64, (2, 12)), torch.randint(0, 64, (2, 12))
    h = model.hidden(x)
    main = F.cross_entropy(model.logits(x).flatten(0, 1), y.flatten())
    extra = [F.cross_entropy(model._project(h[:, :-(k + 1)], head).flatten(0, 1), y[:, k + 1:].flatten())
             for k, head in enumerate(model.mtp_heads)]
    model.train()
    torch.testing.assert_close(model(x, y), main + 0.5 * (extra[0] + extra[1]) / 2)
    model.eval()
    torch.testing.assert_close(model(x, y), main)
    exported = model.export_state_dict()
    assert not any(k.startswith("mtp_heads") for k in exported)
    fresh = GPT(**SMALL, mtp_heads=2)
    fresh.load_export_state_dict(exported)
    with pytest.raises(KeyError, match="missing"):
        fresh.load_export_state_dict({k: v for k, v in exported.items() if k != "tok_emb.weight"})


def test_param_groups_route_every_parameter_once():
    model = GPT(**SMALL, bigram_buckets=32, bigram_dim=16, ve_dim=16, ve_layers=[2, 3], smear_gate=True,
                gated_attention=True, value_residual=True, skips="gated", mtp_heads=1, tie_embeddings=False)
    groups = model.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    named = {id(p): n for n, p in model.named_parameters()}
    names = {role: {named[id(p)] for p in ps} for role, ps in groups.items()}
    assert names["embed"] == {"tok_emb.weight", "bigram.embed.weight", "ve.embed.weight"}
    assert names["proj"] == {"bigram.proj.weight", "ve.proj.weight"}
    assert names["head"] == {"lm_head.weight"}
    assert "blocks.0.attn.c_q.weight" in names["matrix"] and "mtp_heads.0.weight" in names["matrix"]
    assert {"smear.gate", "skip_gates", "bigram.scale", "blocks.0.attn.attn_gate.weight", "blocks.1.attn.vr_lambda",
            "ve_layer_scales.0"} <= names["scalar"]


def test_cast_for_training_keeps_matrices_fp32():
    model = GPT(**SMALL, bigram_buckets=32, bigram_dim=16, ve_dim=16, ve_layers=[3]).cast_for_training(torch.bfloat16)
    for name, p in model.named_parameters():
        want = torch.bfloat16 if name.endswith("embed.weight") or name == "tok_emb.weight" else torch.float32
        assert p.dtype == want, name


def test_bad_options_name_the_key():
    with pytest.raises(ValueError, match="model.activation"):
        GPT(**SMALL, activation="gelu")
    with pytest.raises(ValueError, match="model.skips"):
        GPT(**SMALL, skips="sometimes")
    with pytest.raises(ValueError, match="model.init"):
        GPT(**SMALL, init="xavier")
    with pytest.raises(ValueError, match="model.attn_kernel"):
        GPT(**SMALL, attn_kernel="fast")
    with pytest.raises(ValueError, match="model.rope_dims"):
        GPT(**SMALL, rope_dims=7)
    with pytest.raises(ValueError, match="alternatives"):
        GPT(**SMALL, bigram_buckets=8, engram_buckets=8)


def test_fa4_choice_where_it_cannot_run_is_refused():
    if flash4.problem() is None:
        pytest.skip("FlashAttention-4 runs here")
    with pytest.raises(ValueError, match="model.attn_kernel=fa4 but"):
        check_kernel("fa4")


def test_fa3_choice_without_flash_attn_interface_is_refused():
    if fa3_function() is not None:
        pytest.skip("flash_attn_interface is installed here")
    with pytest.raises(ValueError, match="flash_attn_interface"):
        check_kernel("fa3")


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["auto", "cudnn", "flash", "efficient", "math", "fa3", "fa4"])
def test_attention_kernels_agree_and_the_chosen_one_runs(kernel):
    """Every kernel gives the math kernel's output and gradients within bf16 tolerance, compiled, and the
    profiler sees the chosen backend's kernels (the global SDPA flags would not choose them in a compiled graph)."""
    if kernel == "fa3" and fa3_function() is None:
        pytest.skip("flash_attn_interface not installed")
    if kernel == "fa4" and flash4.problem() is not None:
        pytest.skip(flash4.problem())
    torch.manual_seed(0)
    q = torch.randn(4, 512, 8, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(4, 512, 4, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    dout = torch.randn_like(q)
    qf, kf, vf = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = attend(qf, kf, vf, "math")
    ref.backward(dout.float())
    resolved = resolve_kernel(kernel)
    fn = torch.compile(lambda a, b, c: attend(a, b, c, resolved), fullgraph=True)
    out = fn(q, k, v)
    out.backward(dout)
    assert float((out.float() - ref).norm() / ref.norm()) < 1e-2
    for got, want in ((q.grad, qf.grad), (k.grad, kf.grad), (v.grad, vf.grad)):
        assert float((got.float() - want).norm() / want.norm()) < 2e-2
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn(q, k, v).backward(dout)
        torch.cuda.synchronize()
    names = " ".join(e.name.lower() for e in prof.events())
    expect = {"cudnn": "cudnn", "flash": "flash", "efficient": "fmha", "math": "gemm",
              "fa3": "flashattnbwdsm90", "fa4": "flashattentionbackwardsm"}[resolved]
    assert expect in names, names[:2000]
    if resolved in ("cudnn", "fa3", "fa4"):
        assert "pytorch_flash" not in names


def test_model_trains_through_all_options_on_cpu():
    torch.manual_seed(0)
    model = GPT(**SMALL, activation="leaky_relu2", rope_dims=8, rope_ntk_seq_len=8, ln_scale=True, xsa_last_n=4,
                smear_gate=True, bigram_buckets=32, bigram_dim=16, trigram=True, ve_dim=16, ve_layers=[2, 3],
                value_residual=True, gated_attention=True, skips="gated", init="banked", mimetic_vo_alpha=0.05,
                mtp_heads=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 64, (4, 17)))
    losses = []
    for _ in range(8):
        loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_output_scales_fold_into_the_last_matrices():
    """attn_scale and mlp_scale multiply proj's weight rows: the same output and gradients as scaling the output
    over every token, and a block is still x + attn_scale * attn + mlp_scale * mlp."""
    torch.manual_seed(0)
    lin, x = CastedLinear(6, 4), torch.randn(3, 5, 6)
    s = (torch.rand(4) + 0.5).requires_grad_()
    folded, explicit = lin(x, s), s * F.linear(x, lin.weight)
    torch.testing.assert_close(folded, explicit)
    dy = torch.randn_like(folded)
    for a, b in zip(torch.autograd.grad(folded, [s, lin.weight], dy), torch.autograd.grad(explicit, [s, lin.weight], dy)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="without a bias"):
        CastedLinear(6, 4, bias=True)(x, s)

    m = GPT(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2.0)
    block = m.blocks[0]
    for p in (block.attn_scale, block.mlp_scale, block.attn.proj.weight, block.mlp.proj.weight):
        torch.nn.init.normal_(p, std=0.5)
    x, x0 = torch.randn(2, 8, 32), torch.randn(2, 8, 32)
    cos, sin = rotary_tables(8, 8, 10000.0, x.device)
    got, _ = block(x, x0, cos, sin)
    mix = block.resid_mix
    h = mix[0] * x + mix[1] * x0
    h = h + block.attn_scale * block.attn(block.norm(h), cos, sin)[0]
    torch.testing.assert_close(got, h + block.mlp_scale * block.mlp(block.norm(h)), rtol=1e-5, atol=1e-5)
