"""EMA and SWA arithmetic against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from golf.averaging import EMAConfig, SWAConfig, WeightAverager


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(3))
        self.b = nn.Parameter(torch.zeros(2, 2, dtype=torch.bfloat16))


def _run(avg: WeightAverager, model: _Two, values: list[float], mults: list[float]) -> None:
    for step, (v, m) in enumerate(zip(values, mults), start=1):
        with torch.no_grad():
            model.a.fill_(v)
            model.b.fill_(v)
        avg.update(step, m)


def test_ema_records_form_closed_form():
    """Constant decay d from step 0: e_T = d^T w_0 + sum_t (1 - d) d^(T-t) w_t."""
    model = _Two()
    d = 0.9
    avg = WeightAverager(model, EMAConfig(decay=d, warmup=False), SWAConfig())
    values = [1.0, 2.0, 4.0, 8.0]
    _run(avg, model, values, [1.0] * 4)
    T = len(values)
    expect = sum((1 - d) * d ** (T - t) * v for t, v in enumerate(values, start=1))  # w_0 = 0
    ema = avg.candidates()["ema"]
    assert float(ema[0][0]) == pytest.approx(expect, rel=1e-6)
    assert float(ema[1][0, 0]) == pytest.approx(expect, rel=1e-6)  # bf16 parameters averaged in fp32


def test_ema_warmup_decay_and_short_run_behaviour():
    avg = WeightAverager(_Two(), EMAConfig(decay=0.997), SWAConfig())
    assert [avg.ema_decay(t) for t in (0, 1, 10, 100)] == pytest.approx([0.1, 2 / 11, 11 / 20, 101 / 110])
    assert avg.ema_decay(5000) == 0.997
    # After 231 steps of weights moving from 0 to 1, the warm-up EMA is near the end weights; the records'
    # constant 0.997 is still half the initialisation (0.997^231 = 0.50).
    warm, cold = _Two(), _Two()
    a = WeightAverager(warm, EMAConfig(decay=0.997), SWAConfig())
    b = WeightAverager(cold, EMAConfig(decay=0.997, warmup=False), SWAConfig())
    vals = [t / 231 for t in range(1, 232)]
    _run(a, warm, vals, [1.0] * 231)
    _run(b, cold, vals, [1.0] * 231)
    assert float(a.candidates()["ema"][0][0]) > 0.85
    assert float(b.candidates()["ema"][0][0]) < 0.3


def test_swa_averages_the_snapshots_it_took():
    model = _Two()
    avg = WeightAverager(model, EMAConfig(), SWAConfig(every=2, lr_below=0.5))
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    mults = [1.0, 1.0, 1.0, 0.4, 0.3, 0.2, 0.1, 0.0]   # below 0.5 from step 4: snapshots at steps 4, 6, 8
    _run(avg, model, values, mults)
    assert avg.swa_count == 3 and avg.swa_first_step == 4
    assert float(avg.candidates()["swa"][0][0]) == pytest.approx((4 + 6 + 8) / 3)
    assert set(avg.candidates()) == {"raw", "swa"}


def test_swa_of_ema_snapshots_and_loading_a_candidate():
    model = _Two()
    avg = WeightAverager(model, EMAConfig(decay=0.5, warmup=False), SWAConfig(every=1, lr_below=2.0, source="ema"))
    _run(avg, model, [2.0, 4.0], [1.0, 1.0])
    # EMA after step 1: 1.0, after step 2: 2.5; SWA of those: 1.75.
    assert float(avg.candidates()["swa"][0][0]) == pytest.approx(1.75)
    avg.load(avg.candidates()["swa"])
    assert float(model.a[0].detach()) == pytest.approx(1.75) and model.b.dtype == torch.bfloat16


def test_bad_averaging_options_name_the_key():
    with pytest.raises(ValueError, match="train.ema.decay"):
        EMAConfig(decay=1.0)
    with pytest.raises(ValueError, match="train.swa.source"):
        SWAConfig(source="best")
