"""Late QAT: the grid, the soft-round ramp, the switch, and fake quantization inside a compiled step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golf.late_qat import LateQAT, QATConfig
from golf.models.gpt import GPT
from golf.models.qat import FakeQuant

SMALL = dict(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2, init="banked")


def _fq(**kw) -> FakeQuant:
    fq = FakeQuant()
    fq.configure(**{"mode": "ste", **kw})
    return fq


@pytest.mark.parametrize(("bits", "symmetric", "lo", "hi"),
                         [(6, False, -32, 31), (6, True, -31, 31), (5, False, -16, 15), (8, True, -127, 127)])
def test_ste_values_lie_on_the_grid(bits, symmetric, lo, hi):
    w = torch.randn(16, 40) * 0.3
    w[3, 7] = 5.0  # an outlier sets its row's scale
    fq = _fq(bits=bits, symmetric=symmetric, clip=0.9995)
    out = fq(w)
    s = (w.abs().amax(dim=1, keepdim=True) * 0.9995 / hi).clamp_min(1 / hi)
    q = out / s
    torch.testing.assert_close(q, q.round(), atol=1e-4, rtol=0)
    assert q.min() >= lo - 1e-4 and q.max() <= hi + 1e-4
    expect = torch.clamp(torch.round(w / s), lo, hi) * s
    torch.testing.assert_close(out, expect)


def test_the_qat_grid_follows_the_export_floor():
    """train.qat.scale_floor (from quant.scale_floor): with 0, rows of init scale get scale max|w| / qmax, the grid
    the export then uses; with null, the records' 1/qmax floor sets every such row. The config carries the
    export's floor into QAT, and stays null for quant=none."""
    from tests.conftest import compose_config

    w = torch.randn(16, 40) * 0.02
    s = w.abs().amax(dim=1, keepdim=True) / 31
    torch.testing.assert_close(_fq(scale_floor=0.0).scales(w), s)
    torch.testing.assert_close(_fq().scales(w), torch.full_like(s, 1 / 31))
    for overrides, floor in ((["quant=gptq_ar", "quant.scale_floor=0"], 0.0), (["quant=none"], None), ([], None)):
        assert compose_config(overrides).train.qat.scale_floor == floor


def test_ste_passes_the_gradient_straight_through():
    w = torch.randn(8, 16, requires_grad=True)
    g = torch.randn(8, 16)
    (_fq(bits=4)(w) * g).sum().backward()
    torch.testing.assert_close(w.grad, g)


def test_soft_round_ramps_to_rounding():
    """Mean error to hard rounding falls as alpha grows; away from the .5 boundary (where soft-round is
    continuous and rounding is not) alpha=200 agrees with rounding to within sigmoid(-200*0.05)."""
    fq = FakeQuant()
    fq.configure(mode="soft_round", bits=5, clip=1.0)
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(0)) * 0.2
    hard = _fq(bits=5)(w)
    s = fq.scales(w)
    frac = (w / s) - (w / s).floor()
    errs = []
    for alpha in (1.0, 4.0, 16.0, 200.0):
        fq.alpha.fill_(alpha)
        errs.append(float((fq(w) - hard).abs().mean()))
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.02 * errs[0]
    far = (frac - 0.5).abs() > 0.05
    torch.testing.assert_close(fq(w)[far], hard[far], atol=float(s.max()) * 1e-4, rtol=0)
    wg = w.clone().requires_grad_(True)
    fq.alpha.fill_(4.0)
    fq(wg).sum().backward()
    assert wg.grad.abs().sum() > 0  # gradients flow through the fractional part


def test_late_qat_switches_on_below_the_lr_threshold_and_ramps_alpha():
    model = GPT(**SMALL)
    ctl = LateQAT(QATConfig(mode="soft_round", bits=5, lr_below=0.15), model.qat)
    logs = []
    ctl.before_step(10, 0.5, 1000.0, None, 100, logs.append)
    assert model.qat.mode == "none" and not ctl.active
    ctl.before_step(60, 0.14, 6000.0, None, 100, logs.append)
    assert model.qat.mode == "soft_round" and ctl.start_step == 60 and float(model.qat.alpha) == 1.0
    ctl.before_step(80, 0.05, 8000.0, None, 100, logs.append)
    assert float(model.qat.alpha) == pytest.approx(1 + 15 * 20 / 40)
    assert logs == ["qat: soft_round int5 on at step 60 (lr_mult 0.140, 6.0s)"]
    by_time = LateQAT(QATConfig(mode="ste", last_fraction=0.15), GPT(**SMALL).qat)
    by_time.before_step(5, 1.0, 84_000.0, 100_000.0, 10**6, logs.append)
    assert not by_time.active
    by_time.before_step(6, 1.0, 85_000.0, 100_000.0, 10**6, logs.append)
    assert by_time.active
    # The H100 run of experiment=pr1019 at 180 s: warmdown 4000 steps x 0.69 s > 180 s, lr_mult 0.065 at step 1
    early, logs = LateQAT(QATConfig(mode="ste"), GPT(**SMALL).qat), []
    early.before_step(1, 0.065, 700.0, 180_000.0, 10**6, logs.append)
    assert early.active and len(logs) == 2 and "train.qat.mode=none" in logs[1] and "warmdown" in logs[1]
    with pytest.raises(ValueError, match="train.qat.mode"):
        QATConfig(mode="off")
    with pytest.raises(ValueError, match="train.qat.bits"):
        QATConfig(mode="ste", bits=1)


def _quantized_copy(model: GPT, fq: FakeQuant) -> GPT:
    """The model with every block matrix replaced by its fake-quantized value: what QAT must compute."""
    ref = GPT(**SMALL)
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        for lin in ref.quantized_linears():
            lin.weight.copy_(fq(lin.weight))
    return ref


def test_fake_quant_is_active_in_the_compiled_step_and_recompiles_at_most_once():
    """The records' class-attribute flag was folded away by torch.compile (#315). Here: compile, step with
    QAT off, switch on, step again: the compiled forward equals the model whose block matrices are all
    replaced by their quantized values (so every quantized matrix is reached), the gradients are the STE's,
    and the switch costs one compilation; ramping soft-round's alpha costs none."""
    from torch._inductor.compile_fx import compile_fx

    compiles = []

    def counting_inductor(gm, inputs):
        compiles.append(len(gm.graph.nodes))
        return compile_fx(gm, inputs)

    torch.manual_seed(0)
    model = GPT(**SMALL)
    with torch.no_grad():  # trained-looking weights: the output projections are not zero
        for lin in model.quantized_linears():
            lin.weight.normal_(0, 0.3)
    step = torch.compile(model, backend=counting_inductor, fullgraph=True, dynamic=False)
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    loss_off = step(x, y)
    loss_off.backward()
    assert len(compiles) == 1
    model.zero_grad()

    ctl = LateQAT(QATConfig(mode="ste", bits=3), model.qat)
    ctl.switch(True)
    loss_on = step(x, y)
    loss_on.backward()
    assert len(compiles) == 2  # one recompilation for the switch
    ref = _quantized_copy(model, model.qat)
    loss_ref = ref(x, y)
    loss_ref.backward()
    torch.testing.assert_close(loss_on, loss_ref, rtol=1e-5, atol=1e-5)
    assert abs(float(loss_on.detach()) - float(loss_off.detach())) > 1e-3  # far outside the 1e-5 match above
    for lin, rlin in zip(model.quantized_linears(), ref.quantized_linears()):
        torch.testing.assert_close(lin.weight.grad, rlin.weight.grad, rtol=1e-4, atol=1e-5)

    step(x, y)
    ctl.switch(False)
    step(x, y)
    soft = LateQAT(QATConfig(mode="soft_round", bits=3), model.qat)
    soft.switch(True)
    a = step(x, y)
    model.qat.alpha.fill_(16.0)
    b = step(x, y)
    assert len(compiles) == 3  # back to off: cached; soft_round: one more; alpha changes: none
    assert abs(float(a.detach()) - float(b.detach())) > 1e-4
    model.eval()
    torch.testing.assert_close(model(x, y), F.cross_entropy(model.logits(x).flatten(0, 1), y.flatten()))


def test_qat_needs_a_model_with_a_fake_quantizer():
    with pytest.raises(ValueError, match="train.qat.mode=ste but the model has no fake-quantizer"):
        LateQAT(QATConfig(mode="ste"), None)
