"""The April records' gates against their formulas (frontier.md §6-7): #1667's input SmearGate (and #1855's BOS fix),
the dense (#1736) and sparse (#1787/#1855) per-head attention output gates, and their errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golf.models.attention import CausalSelfAttention
from golf.models.embeddings import InputSmearGate
from golf.models.gpt import GPT


def test_input_smear_is_the_records_formula_and_an_identity_at_init():
    g = torch.Generator().manual_seed(0)
    smear = InputSmearGate(4, 16)
    e = torch.randn(2, 7, 16, generator=g)
    assert torch.equal(smear(e), e)
    with torch.no_grad():
        smear.weight.normal_(generator=g)
        smear.lam.fill_(0.7)
    ids = torch.randint(2, 9, (2, 7), generator=g)
    ids[0, 3] = 1  # a BOS
    first = ids == 1
    first[:, 0] = True
    want = e.clone()
    for b in range(2):
        for t in range(1, 7):
            gate = 0.7 * torch.sigmoid(e[b, t, :4] @ smear.weight[0])
            want[b, t] = e[b, t] + gate * e[b, t - 1] * (ids[b, t] != 1)
    torch.testing.assert_close(smear(e, first=first), want)
    leaky = want.clone()
    leaky[0, 3] = e[0, 3] + 0.7 * torch.sigmoid(e[0, 3, :4] @ smear.weight[0]) * e[0, 2]
    torch.testing.assert_close(smear(e), leaky)  # without the fix the BOS sees the previous document


@pytest.mark.parametrize("kind,scale", [("dense", 1.0), ("sparse", 0.5)])
def test_output_gate_scales_each_heads_output(kind, scale):
    torch.manual_seed(0)
    dim, heads = 32, 4
    plain = CausalSelfAttention(dim, heads, 2, 1.5, kernel="math")
    gated = CausalSelfAttention(dim, heads, 2, 1.5, kernel="math", out_gate=kind, gate_window=6, gate_scale=scale,
                                gate_init_std=0.005 if kind == "dense" else 0.0)
    assert gated.gate_w.shape == ((heads, dim) if kind == "dense" else (heads, 6))
    gated.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for m in (plain, gated):
            m.proj.weight.copy_(torch.eye(dim))
        gated.gate_w.normal_()
    x = torch.randn(2, 9, dim)
    cos, sin = torch.ones(9, 4), torch.zeros(9, 4)
    with torch.no_grad():
        y = plain(x, cos, sin)[0].view(2, 9, heads, dim // heads)
        src = x if kind == "dense" else x[..., :6]
        want = y * torch.sigmoid(scale * F.linear(src, gated.gate_w))[..., None]
        torch.testing.assert_close(gated(x, cos, sin)[0], want.reshape(2, 9, dim))


def test_gates_are_scalars_for_the_optimizer_and_bad_values_are_named():
    m = GPT(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, smear_gate="input",
            attn_out_gate="sparse")
    scalars = {id(p) for p in m.param_groups()["scalar"]}
    assert id(m.smear.weight) in scalars and id(m.blocks[0].attn.gate_w) in scalars
    for kw, match in ((dict(smear_gate="both"), "model.smear_gate"), (dict(attn_out_gate="wide"), "model.attn_out_gate"),
                      (dict(attn_out_gate="dense", gated_attention=True), "alternatives"),
                      (dict(smear_gate="input", gate_window=64), "model.gate_window")):
        with pytest.raises(ValueError, match=match):
            GPT(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, **kw)
