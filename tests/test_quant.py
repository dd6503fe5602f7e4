"""The baseline's int8 export and the generic dequantizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf.quant.format import QuantizedState, dequantize_state
from golf.quant.grid import dequantize_rows, quantize_rows, row_clip
from golf.quant.int8 import Int8PerRow
from golf.quant.none import NoQuant


def test_int8_per_row_matches_baseline(testvector):
    tv = testvector("quantizers")
    W = torch.from_numpy(tv["W"])
    # The test vector is quantize_float_tensor on W itself; W (24,576 entries) is below the export's
    # keep-float size, so force quantization.
    q = Int8PerRow(keep_float_max_numel=0).quantize({"w": W})
    assert q.meta["w"] == {"scheme": "per_row", "q": "w.q", "scale": "w.scale", "dtype": "float32", "bits": 8}
    got_q, got_s = q.tensors["w.q"], q.tensors["w.scale"]
    assert got_q.dtype == torch.int8 and got_q.shape == W.shape
    assert got_s.dtype == torch.float16 and got_s.shape == (W.shape[0],)
    match = (got_q.numpy() == tv["int8_q"]).mean()
    assert match >= 0.99, f"only {match:.4%} of int8 entries match the baseline"
    np.testing.assert_array_equal(got_q.numpy(), tv["int8_q"])  # in fact exact
    np.testing.assert_array_equal(got_s.float().numpy(), tv["int8_scale"])
    assert q.stats["quantized_params"] == W.numel() == q.stats["params"]


def test_int8_default_treatment_rules():
    gen = torch.Generator().manual_seed(0)
    big2d = torch.randn(300, 256, generator=gen)            # 76,800 > 65,536: per row
    big3d = torch.randn(2, 200, 200, generator=gen)         # non-2-D and large: one scale
    exact = torch.randn(256, 256, generator=gen)            # exactly 65,536: still kept as float
    small = torch.randn(64, 32, generator=gen)              # small matrix: fp16
    control = torch.randn(512, generator=gen)               # control name: fp32
    ints = torch.arange(100_000, dtype=torch.int64)         # non-float: unchanged, however large
    flag = torch.tensor([True, False])
    state = {"blocks.0.mlp.fc.weight": big2d, "conv.weight": big3d, "blocks.0.attn.c_q.weight": exact,
             "blocks.1.attn.c_k.weight": small, "blocks.0.attn_scale": control, "blocks.0.resid_mix": control[:16],
             "skip_weights": control[:8].view(2, 4), "tok_count": ints, "mask": flag}
    q = Int8PerRow().quantize(state)
    m, t = q.meta, q.tensors

    assert m["blocks.0.mlp.fc.weight"]["scheme"] == "per_row"
    assert t["blocks.0.mlp.fc.weight.q"].dtype == torch.int8 and t["blocks.0.mlp.fc.weight.scale"].shape == (300,)
    assert m["conv.weight"]["scheme"] == "per_tensor"
    assert t["conv.weight.q"].shape == big3d.shape and t["conv.weight.scale"].ndim == 0
    assert t["conv.weight.scale"].dtype == torch.float32
    for name, stored in [("blocks.0.attn.c_q.weight", torch.float16), ("blocks.1.attn.c_k.weight", torch.float16),
                         ("blocks.0.attn_scale", torch.float32), ("blocks.0.resid_mix", torch.float32),
                         ("skip_weights", torch.float32), ("tok_count", torch.int64), ("mask", torch.bool)]:
        assert m[name] == {"scheme": "passthrough", "data": name, "dtype": str(state[name].dtype).removeprefix("torch.")}
        assert t[name].dtype == stored, name
    assert torch.equal(t["tok_count"], ints) and torch.equal(t["mask"], flag)
    assert torch.equal(t["blocks.0.attn_scale"], control)
    assert torch.equal(t["blocks.1.attn.c_k.weight"], small.half())
    assert q.stats["params"] == sum(v.numel() for v in state.values())
    assert q.stats["quantized_params"] == big2d.numel() + big3d.numel()
    assert q.stats["payload_bytes"] == sum(v.numel() * v.element_size() for v in t.values())


def test_int8_per_tensor_closed_form():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(3, 150, 150, generator=gen) * 4
    q = Int8PerRow(clip_percentile=0.999).quantize({"w": w})
    a = w.abs().flatten().double().numpy()
    clip = np.quantile(a, 0.999)  # linear interpolation, as torch.quantile
    scale = clip / 127
    assert float(q.tensors["w.scale"]) == pytest.approx(scale, rel=1e-5)  # float32 quantile
    expected = np.clip(np.round(np.clip(w.double().numpy(), -clip, clip) / scale), -127, 127)
    got = q.tensors["w.q"].numpy().astype(np.float64)
    assert (got == expected).mean() > 0.999  # ties of float32 vs float64 rounding aside
    assert np.abs(got - expected).max() <= 1


def test_int8_per_row_closed_form():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(70, 1000, generator=gen) * torch.linspace(0.5, 20, 70)[:, None]
    q = Int8PerRow(clip_percentile=0.99).quantize({"w": w})
    a = np.abs(w.double().numpy())
    clip = np.quantile(a, 0.99, axis=1)
    scale = np.maximum(clip / 127, 1 / 127)
    np.testing.assert_allclose(q.tensors["w.scale"].double().numpy(), scale, rtol=2**-10)
    expected = np.clip(np.round(np.clip(w.double().numpy(), -clip[:, None], clip[:, None]) / scale[:, None]), -127, 127)
    got = q.tensors["w.q"].numpy().astype(np.float64)
    assert (got == expected).mean() > 0.999 and np.abs(got - expected).max() <= 1


def test_int8_rejects_bad_percentile():
    with pytest.raises(ValueError, match="clip_percentile"):
        Int8PerRow(clip_percentile=0.0)
    with pytest.raises(ValueError, match="clip_percentile"):
        Int8PerRow(clip_percentile=1.5)


def test_dequantize_passthrough_exact_and_per_row_within_half_step():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(200, 400, generator=gen) * torch.linspace(0.1, 30, 200)[:, None]
    state = {"w": w, "attn_scale": torch.randn(64, generator=gen), "small": torch.randn(8, 8, generator=gen),
             "ids": torch.arange(10, dtype=torch.int32), "half": torch.randn(300, generator=gen).half()}
    quant = Int8PerRow(keep_float_max_numel=1000)
    q = quant.quantize(state)
    out = dequantize_state(q.tensors, q.meta)
    assert set(out) == set(state)
    for k, v in state.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
    assert torch.equal(out["attn_scale"], state["attn_scale"])
    assert torch.equal(out["ids"], state["ids"])
    assert torch.equal(out["half"], state["half"])
    assert torch.equal(out["small"], state["small"].half().float())  # fp16 storage, back to fp32
    # Per row: inside the clip range the error is at most half a step (plus the fp16 rounding of the scale).
    clip = row_clip(w, quant.clip_percentile)
    s32 = (clip / 127).clamp_min(1 / 127)
    err = (out["w"] - w).abs()
    inside = w.abs() <= clip[:, None]
    bound = (0.5 * s32 + 127 * (q.tensors["w.scale"].float() - s32).abs() + 1e-6)[:, None].expand_as(w)
    assert inside.float().mean() > 0.99
    assert (err[inside] <= bound[inside]).all()
    # Outside it, the value is rounded from the row's clip value, keeping its sign.
    outside = ~inside
    clipped = (torch.sign(w) * clip[:, None])[outside]
    assert ((out["w"][outside] - clipped).abs() <= bound[outside]).all()


def test_quantize_rows_grid():
    w = torch.tensor([[0.0, 1.0, -2.0, 3.0], [0.001, -0.002, 0.0, 0.0]])
    q, s = quantize_rows(w, torch.tensor([2.54, 0.5]), qmax=127, scale_dtype=torch.float32)
    assert s.tolist() == pytest.approx([0.02, 1 / 127])  # second row: the 1/qmax floor
    assert q.tolist() == [[0, 50, -100, 127], [0, 0, 0, 0]]  # 3.0 is clipped to 2.54 = 127 steps
    assert torch.allclose(dequantize_rows(q, s)[0], torch.tensor([0.0, 1.0, -2.0, 2.54]))
    # A 6-bit grid: scale 2/31; 0.9 -> 13.95 -> 14, -0.5 -> -7.75 -> -8, 5.0 -> clipped -> 31.
    q6, s6 = quantize_rows(torch.tensor([[0.9, -0.5, 5.0]]), torch.tensor([2.0]), qmax=31)
    assert s6.dtype == torch.float16 and q6.tolist() == [[14, -8, 31]]


def test_noquant_round_trip_exact():
    state = {"a": torch.randn(300, 300), "b": torch.arange(5)}
    q = NoQuant().quantize(state)
    out = dequantize_state(q.tensors, q.meta)
    assert all(torch.equal(out[k], v) and out[k].dtype == v.dtype for k, v in state.items())
    qb = NoQuant(store_dtype="bfloat16").quantize(state)
    assert qb.tensors["a"].dtype == torch.bfloat16 and qb.tensors["b"].dtype == torch.int64
    outb = dequantize_state(qb.tensors, qb.meta)
    assert outb["a"].dtype == torch.float32 and torch.equal(outb["a"], state["a"].bfloat16().float())


def test_dequantize_unknown_scheme_and_dtype():
    tensors = {"x": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"'x'.*unknown scheme 'int3_magic'"):
        dequantize_state(tensors, {"x": {"scheme": "int3_magic", "data": "x", "dtype": "float32"}})
    with pytest.raises(ValueError, match="unknown scheme None"):
        dequantize_state(tensors, {"x": {"data": "x", "dtype": "float32"}})
    with pytest.raises(ValueError, match="unknown dtype 'float99'"):
        dequantize_state(tensors, {"x": {"scheme": "passthrough", "data": "x", "dtype": "float99"}})
    with pytest.raises(ValueError, match="unknown dtype 'Tensor'"):
        dequantize_state(tensors, {"x": {"scheme": "passthrough", "data": "x", "dtype": "Tensor"}})


def test_quantized_state_records():
    qs = QuantizedState()
    qs.add_passthrough("a", torch.ones(2, dtype=torch.float64), torch.float16)
    qs.add_quantized("b", "per_row", torch.zeros(2, 2, dtype=torch.int8), torch.ones(2), torch.bfloat16, 6)
    assert qs.meta == {"a": {"scheme": "passthrough", "data": "a", "dtype": "float64"},
                       "b": {"scheme": "per_row", "q": "b.q", "scale": "b.scale", "dtype": "bfloat16", "bits": 6}}
    assert set(qs.tensors) == {"a", "b.q", "b.scale"} and qs.tensors["a"].dtype == torch.float16
    out = dequantize_state(qs.tensors, qs.meta)
    assert out["a"].dtype == torch.float64 and out["b"].dtype == torch.bfloat16
