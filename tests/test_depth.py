"""Depth recurrence and parallel residuals (golf.models.depth, ``Block.lanes``) against a naive re-implementation of
the records' formulas (frontier.md §3-4) run on the same modules: the virtual order and its U-Net pairing, the
shared weights seen once by the optimizer, GPT-J and two-lane layers, and the errors that name the key."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golf.kernels.rotary import rms_norm
from golf.models.depth import layer_order


def test_the_records_orders():
    # frontier.md §3: R1394 loop 4..5 x2 extra passes; R1493-R1855 loop 3..5 x2
    o = layer_order(11, (4, 5), 2)
    assert (o[: len(o) // 2], o[len(o) // 2:]) == ([0, 1, 2, 3, 4, 5, 4], [5, 4, 5, 6, 7, 8, 9, 10])
    o = layer_order(11, (3, 5), 2)
    assert (o[: len(o) // 2], o[len(o) // 2:]) == ([0, 1, 2, 3, 4, 5, 3, 4], [5, 3, 4, 5, 6, 7, 8, 9, 10])
    assert layer_order(11, (3, 5), 2, looping=False) == list(range(11))


def _randomize(model):
    torch.manual_seed(1)
    for p in model.parameters():
        torch.nn.init.normal_(p, mean=float(p.detach().mean()), std=0.1)
    return model.eval()


def _naive_hidden(model, ids, order):
    """The records' _forward_hidden, written out: skips by virtual position, lanes from the first parallel layer,
    the skip into lane 0 only, final = mean of the lanes."""
    x = x0 = model.embed(ids)
    T = ids.size(1)
    cos, sin = model._rope(T, T, ids.device, None)
    n_enc = len(order) // 2
    skips, lane0, lane1 = [], None, None
    for vi, i in enumerate(order):
        b = model.blocks[i]
        if b.lanes == 2 and lane0 is None:  # the lanes start from x before the first lane layer's skip
            lane0 = lane1 = x
        if vi >= n_enc and skips:
            s = model.skip_weights[vi - n_enc] * skips.pop()
            if lane0 is None:
                x = x + s
            else:
                lane0 = lane0 + s
        if b.lanes == 2:
            read = b.resid_mix[0] * lane0 + b.resid_mix[1] * x0
            a = b.attn_scale * _attn(b, b.norm(read), cos, sin)
            m = b.mlp_scale * _mlp(b, b.norm(lane1))
            rho, P = b.lane_resid, b.lane_post
            lane0, lane1 = rho[0] * lane0 + P[0, 0] * a + P[1, 0] * m, rho[1] * lane1 + P[0, 1] * a + P[1, 1] * m
            continue
        x = b.resid_mix[0] * x + b.resid_mix[1] * x0
        h = b.norm(x)
        if b.lanes == 1:
            x = x + b.attn_scale * _attn(b, h, cos, sin) + b.mlp_scale * _mlp(b, h)
        else:
            x = x + b.attn_scale * _attn(b, h, cos, sin)
            x = x + b.mlp_scale * _mlp(b, b.norm(x))
        if vi < n_enc:
            skips.append(x)
    return rms_norm(x if lane0 is None else 0.5 * (lane0 + lane1))


def _attn(b, h, cos, sin):
    a = b.attn
    B, T, D = h.shape
    q = a.c_q(h).view(B, T, a.num_heads, a.head_dim)
    k = a.c_k(h).view(B, T, a.num_kv_heads, a.head_dim)
    v = a.c_v(h).view(B, T, a.num_kv_heads, a.head_dim)

    def rot(t):
        t = F.rms_norm(t, (t.size(-1),))
        half = t.size(-1) // 2
        t1, t2 = t[..., :half], t[..., half:]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        return torch.cat((t1 * c + t2 * s, -t1 * s + t2 * c), dim=-1)

    q, k = rot(q) * a.q_gain[None, None, :, None], rot(k)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                       enable_gqa=True).transpose(1, 2)
    return F.linear(y.reshape(B, T, D), a.proj.weight)


def _mlp(b, h):
    return F.linear(torch.relu(F.linear(h, b.mlp.fc.weight)).square(), b.mlp.proj.weight)


CASES = {
    "loop": dict(num_layers=6, loop_layers=[2, 3], loop_repeats=2),
    "gptj": dict(num_layers=5, parallel_from=3, parallel_lanes=1),
    "two_lanes": dict(num_layers=6, parallel_from=4),
    "loop+two_lanes": dict(num_layers=6, loop_layers=[1, 2], loop_repeats=1, parallel_from=-2, ln_scale=True),
}


@pytest.mark.parametrize("case", CASES)
def test_trunk_equals_the_records_formula(tiny_gpt, case):
    model = _randomize(tiny_gpt(**CASES[case]))
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.hidden(ids)
        want = _naive_hidden(model, ids, model.layer_order())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the sliding eval's last block (queries of the last positions only) agrees
        torch.testing.assert_close(model.hidden(ids, last=4), got[:, -4:], rtol=1e-5, atol=1e-5)


def test_the_loop_switches_and_shares_its_weights(tiny_gpt):
    model = _randomize(tiny_gpt(num_layers=6, loop_layers=[2, 3], loop_repeats=2, loop_from=0.4))
    assert model.skip_weights.size(0) == 5  # min(5, 5) of the 10 virtual layers; 3 without the loop
    ids = torch.randint(0, 96, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        on = model.hidden(ids)
        model.looping = False
        off = model.hidden(ids)
        want_off = _naive_hidden(model, ids, list(range(6)))
    torch.testing.assert_close(off, want_off, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(on, off)
    groups = model.param_groups()
    ids_seen = [id(p) for ps in groups.values() for p in ps]
    assert len(ids_seen) == len(set(ids_seen)) == len(list(model.parameters()))
    # a decode state holds a cache per virtual layer: greedy decoding equals the full forward
    model.looping = True
    state = model.decode_state(16)
    with torch.no_grad():
        step = torch.cat([model.decode(ids[:, :4], state)] + [model.decode(ids[:, t:t + 1], state) for t in range(4, 10)],
                         dim=1)
        torch.testing.assert_close(step, model.logits(ids), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kw,match", [
    (dict(loop_layers=[3, 1], loop_repeats=1), "model.loop_layers"),
    (dict(loop_layers=[1, 2], loop_repeats=-1), "model.loop_repeats"),
    (dict(loop_layers=[1, 2], loop_repeats=1, loop_from=1.0), "model.loop_from"),
    (dict(parallel_from=0), "model.parallel_from=0 puts a parallel layer in the U-Net's encoder"),
    (dict(parallel_from=2, parallel_lanes=3), "model.parallel_lanes"),
])
def test_bad_options_are_refused_by_name(tiny_gpt, kw, match):
    with pytest.raises(ValueError, match=match):
        tiny_gpt(num_layers=4, **kw)
