"""The per-row grid, RTN / GPTQ-lite / GPTQ against the records' test vectors and a plain-loop GPTQ, the
treatment rules, and the generic dequantizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf.quant.format import QuantizedState, dequantize_state
from golf.quant.gptq import gptq, gptq_sweep, hessian_error, inverse_cholesky
from golf.quant.grid import dequantize_rows, qmax_for, quantize_rows, row_clip, search_clip
from golf.quant.none import NoQuant
from golf.quant.quantizer import Quantizer, matrix_group

INT8 = dict(keep_fp32_patterns=("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight"))


def _herr(W, q, s, H) -> float:
    return hessian_error(W, torch.as_tensor(q), torch.as_tensor(s), H)


def test_int8_matches_the_baseline_with_no_larger_error(testvector):
    tv = testvector("quantizers")
    W, H = torch.from_numpy(tv["W"]), torch.from_numpy(tv["H"])
    q = Quantizer(keep_float_max_numel=0, **INT8).quantize({"blocks.0.mlp.fc.weight": W})
    name = "blocks.0.mlp.fc.weight"
    assert q.meta[name] == {"scheme": "per_row", "q": f"{name}.q", "scale": f"{name}.scale", "dtype": "float32", "bits": 8}
    got_q, got_s = q.tensors[f"{name}.q"], q.tensors[f"{name}.scale"]
    assert got_q.dtype == torch.int8 and got_s.dtype == torch.float16
    np.testing.assert_array_equal(got_s.float().numpy(), tv["int8_scale"])
    # The baseline clamped weights to the clip before rounding; golf's one grid does not (2 entries differ).
    assert (got_q.numpy() == tv["int8_q"]).mean() > 0.9999
    assert _herr(W, got_q, got_s, H) <= _herr(W, tv["int8_q"], tv["int8_scale"], H)


def test_gptq_lite_is_the_records(testvector):
    tv = testvector("quantizers")
    W = torch.from_numpy(tv["W"])
    q, s, _ = search_clip(W, 31)
    np.testing.assert_array_equal(q.numpy(), tv["int6_lite_q"])
    np.testing.assert_array_equal(s.float().numpy(), tv["int6_lite_scale"])
    qr, sr, _ = search_clip(W, 31, per_row=True)  # per row never reconstructs worse than per matrix
    err = lambda q_, s_: float((W - dequantize_rows(q_, s_)).pow(2).mean())  # noqa: E731
    assert err(qr, sr) <= err(q, s) + 1e-12


def test_gptq_is_the_records_and_beats_lite(testvector):
    """#1019's quantize_int6_gptq on the test vector's W and H (a dead column included): every entry equal;
    Hessian-weighted error 24.1 against GPTQ-lite's 51.3."""
    tv = testvector("quantizers")
    W, H = torch.from_numpy(tv["W"]), torch.from_numpy(tv["H"])
    r = gptq(W, H, 31)
    np.testing.assert_array_equal(r.q.numpy(), tv["int6_gptq_q"])
    np.testing.assert_array_equal(r.scale.float().numpy(), tv["int6_gptq_scale"])
    assert r.dead_columns == 1 and r.retries == 0
    lite = search_clip(W, 31)
    assert _herr(W, r.q, r.scale, H) == pytest.approx(24.1, abs=0.1)
    assert _herr(W, *lite[:2], H) == pytest.approx(51.3, abs=0.1)


def _plain_gptq(W: torch.Tensor, H: torch.Tensor, scales: torch.Tensor, qmax: int, damp: float = 0.01) -> torch.Tensor:
    """GPTQ written as the textbook loop: act-order, then column by column, the error spread through H⁻¹
    restricted to the columns left (no blocks, no Cholesky trick), in float64."""
    W, H = W.double().clone(), H.double().clone()
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    perm = torch.argsort(torch.diag(H), descending=True)
    W, H = W[:, perm], H[perm][:, perm]
    s = scales.double()
    Q = torch.zeros_like(W)
    for i in range(W.shape[1]):
        Hinv = torch.linalg.inv(H[i:, i:])  # the inverse Hessian of the columns not yet quantized
        Q[:, i] = torch.clamp(torch.round(W[:, i] / s), -qmax, qmax)
        err = (W[:, i] - Q[:, i] * s) / Hinv[0, 0]
        W[:, i:] -= err[:, None] * Hinv[0, :][None, :]
    return Q[:, torch.argsort(perm)].to(torch.int8)


@pytest.mark.parametrize("bits", [5, 6, 8])
def test_gptq_equals_the_plain_loop_and_lowers_the_weighted_error(bits):
    gen = torch.Generator().manual_seed(bits)
    rows, cols, n = 48, 160, 400
    W = torch.randn(rows, cols, generator=gen) * 0.05
    X = torch.randn(n, cols, generator=gen) @ (torch.randn(cols, cols, generator=gen) * 0.2 + torch.eye(cols))
    H = X.T @ X / n  # a correlated, known Hessian
    qmax = qmax_for(bits)
    r = gptq(W, H, qmax, percentiles=(1.0,), block=32)
    ref = _plain_gptq(W, H, r.scale.float(), qmax)
    assert (r.q == ref).float().mean() > 0.99
    assert _herr(W, r.q, r.scale, H) == pytest.approx(_herr(W, ref, r.scale, H), rel=0.01)
    rtn = quantize_rows(W, row_clip(W, 1.0), qmax)
    assert _herr(W, r.q, r.scale, H) < 0.8 * _herr(W, *rtn, H)
    assert _herr(W, r.q, r.scale, H) < _herr(W, *search_clip(W, qmax)[:2], H)


def test_damping_is_retried_for_a_hessian_that_is_not_positive_definite():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(10, 64, generator=gen)
    H = X.T @ X - 0.5 * torch.eye(64)  # rank 10, eigenvalues down to -0.5: 1% damping (0.1) is not enough
    W = torch.randn(8, 64, generator=gen)
    r = gptq(W, H, 31)
    assert r.retries >= 1 and r.damp > 0.01 and "not positive definite" in r.notes[0]
    with pytest.raises(ValueError, match="not positive definite even with damping"):
        inverse_cholesky(-torch.eye(8), 0.01, retries=2)
    with pytest.raises(ValueError, match="does not fit a weight with 64 columns"):
        gptq(W, torch.eye(32), 31)


@pytest.mark.parametrize("bits", [5, 6, 7, 8])
@pytest.mark.parametrize("method", ["rtn", "lite", "gptq"])
def test_dequantized_values_lie_on_the_grid(bits, method):
    gen = torch.Generator().manual_seed(bits)
    W = torch.randn(40, 96, generator=gen) * torch.linspace(0.01, 2, 40)[:, None]
    H = torch.eye(96) + 0.1
    qz = Quantizer(matrix_bits=bits, method=method, keep_float_max_numel=0)
    name = "blocks.3.attn.c_k.weight"
    out = qz.quantize({name: W}, hessians={name: H})
    q, s = out.tensors[f"{name}.q"], out.tensors[f"{name}.scale"]
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.abs().max()) <= qmax and s.dtype == torch.float16
    back = dequantize_state(out.tensors, out.meta)[name]
    torch.testing.assert_close(back, q.float() * s.float()[:, None], rtol=0, atol=0)
    steps = back / s.float()[:, None]
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-4)
    assert out.meta[name]["bits"] == bits and out.stats["bits"] == {str(bits): W.numel()}


def test_treatment_rules_by_class():
    gen = torch.Generator().manual_seed(0)
    state = {
        "tok_emb.weight": torch.randn(1024, 512, generator=gen),            # embed
        "bigram.embed.weight": torch.randn(3072, 112, generator=gen),       # table
        "ve.embed.weight": torch.randn(1024, 128, generator=gen),           # table
        "blocks.0.attn.c_q.weight": torch.randn(512, 512, generator=gen),   # matrix
        "blocks.0.mlp.proj.weight": torch.randn(512, 1536, generator=gen),  # matrix
        "bigram.proj.weight": torch.randn(512, 112, generator=gen),         # small (57,344)
        "blocks.0.attn_scale": torch.randn(512, generator=gen),             # small, control
        "conv.weight": torch.randn(2, 200, 200, generator=gen),             # other, not 2-D
        "steps": torch.arange(100_000),                                     # int
    }
    qz = Quantizer(matrix_bits=6, method="lite", embed_bits=0, table_bits=8, keep_fp32_patterns=("attn_scale",))
    assert {n: qz.classify(n, t) for n, t in state.items()} == {
        "tok_emb.weight": "embed", "bigram.embed.weight": "table", "ve.embed.weight": "table",
        "blocks.0.attn.c_q.weight": "matrix", "blocks.0.mlp.proj.weight": "matrix", "bigram.proj.weight": "small",
        "blocks.0.attn_scale": "small", "conv.weight": "other", "steps": "int"}
    out = qz.quantize(state, bits={"blocks.0.mlp.proj.weight": 5})
    m, t = out.meta, out.tensors
    assert m["tok_emb.weight"]["scheme"] == "passthrough" and t["tok_emb.weight"].dtype == torch.float16
    assert m["bigram.embed.weight"]["bits"] == 8 and m["blocks.0.attn.c_q.weight"]["bits"] == 6
    assert m["blocks.0.mlp.proj.weight"]["bits"] == 5  # the allocator's override
    assert t["bigram.proj.weight"].dtype == torch.float16 and t["blocks.0.attn_scale"].dtype == torch.float32
    assert m["conv.weight"]["scheme"] == "per_tensor" and torch.equal(t["steps"], state["steps"])
    assert out.stats["classes"]["matrix"] == 512 * 512 + 512 * 1536
    assert out.stats["bits"] == {"6": 512 * 512, "5": 512 * 1536, "8": 3072 * 112 + 1024 * 128 + 80_000}
    assert matrix_group("blocks.10.mlp.fc.weight") == "layer10.mlp" and matrix_group("tok_emb.weight") is None


def test_one_sweep_over_stacked_candidates_equals_a_sweep_per_candidate():
    """search=matrix sweeps every clip candidate at once (rows are independent in GPTQ): each candidate's
    integers equal those of sweeping it alone."""
    g = torch.Generator().manual_seed(5)
    W, X = torch.randn(48, 200, generator=g), torch.randn(1000, 200, generator=g)
    U = inverse_cholesky(X.T @ X / 1000, 0.01)[0]
    scales = [quantize_rows(W, row_clip(W, p), 31)[1] for p in (0.999, 0.9999, 1.0)]
    stacked = gptq_sweep(W.repeat(3, 1), U, torch.cat(scales), 31, block=64).view(3, 48, 200)
    for j, s in enumerate(scales):
        assert torch.equal(stacked[j], gptq_sweep(W, U, s, 31, block=64))


def test_gptq_without_a_hessian_falls_back_to_lite():
    W = torch.randn(80, 900, generator=torch.Generator().manual_seed(1))
    out = Quantizer(matrix_bits=6, method="gptq").quantize({"blocks.0.mlp.fc.weight": W})
    assert out.stats["gptq"]["fallbacks"] == 1 and out.stats["gptq"]["matrices"] == 0
    q, s, _ = search_clip(W, 31)
    assert torch.equal(out.tensors["blocks.0.mlp.fc.weight.q"], q)


def test_lite_reports_the_clip_each_row_chose():
    """Rows of unit scale reconstruct better clipped below their maximum, so lite differs from RTN; the
    quantizer counts rows per chosen percentile and rows at the scale floor (the export log prints both), so
    "lite equals RTN" on weights of init scale can be told apart from lite not running."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(48, 512, generator=g)
    W[:16, 7] = 40.0
    out = Quantizer(matrix_bits=6, method="lite", search="row", keep_float_max_numel=0).quantize({"blocks.0.mlp.fc.weight": W})
    rows = out.stats["clip_rows"]
    assert sum(rows.values()) == 48
    assert sum(n for k, n in rows.items() if float(k) < 1) >= 40  # Gaussian rows and outlier rows clip
    rtn = Quantizer(matrix_bits=6, method="rtn", matrix_clip_percentile=1.0, keep_float_max_numel=0)
    assert not torch.equal(rtn.quantize({"blocks.0.mlp.fc.weight": W}).tensors["blocks.0.mlp.fc.weight.q"],
                           out.tensors["blocks.0.mlp.fc.weight.q"])
    assert out.stats["floor_rows"] == 0 and out.stats["matrix_rows"] == 48
    # Weights of init scale (every |w| < 1): the scale is the floor 1/31 whatever the clip, so lite == RTN.
    small = {"blocks.0.mlp.fc.weight": W[16:] * 0.02}
    lite_small, rtn_small = (Quantizer(matrix_bits=6, method=m, keep_float_max_numel=0).quantize(small) for m in ("lite", "rtn"))
    assert lite_small.stats["floor_rows"] == rtn_small.stats["floor_rows"] == 32
    assert torch.equal(lite_small.tensors["blocks.0.mlp.fc.weight.q"], rtn_small.tensors["blocks.0.mlp.fc.weight.q"])


def test_scale_floor_zero_lets_the_grid_follow_small_rows():
    """quant.scale_floor=0 on init-scale weights: each row's scale is its clip / qmax (closed form), no row sits
    at the floor, the reconstruction error of RTN, lite and GPTQ drops far below the records' floored grid, and
    lite's clip search matters again (it differs from RTN)."""
    g = torch.Generator().manual_seed(4)
    W = torch.randn(64, 256, generator=g) * 0.02
    X = torch.randn(2048, 256, generator=g)
    H = X.T @ X / X.shape[0]
    name = "blocks.0.mlp.fc.weight"

    def run(method: str, floor):
        q = Quantizer(matrix_bits=6, method=method, keep_float_max_numel=0, scale_floor=floor)
        out = q.quantize({name: W}, hessians={name: H})
        rebuilt = dequantize_rows(out.tensors[name + ".q"], out.tensors[name + ".scale"])
        return out, float((W - rebuilt).pow(2).mean())

    rtn0, err_rtn0 = run("rtn", 0.0)
    expect = (W.abs().amax(dim=1) / 31).clamp_min(0.0).half()  # matrix_clip_percentile 0.9999984 of 256: the max
    torch.testing.assert_close(rtn0.tensors[name + ".scale"], expect)
    assert rtn0.stats["floor_rows"] == 0
    for method in ("rtn", "lite", "gptq"):
        floored, err_floored = run(method, None)
        assert floored.stats["floor_rows"] == 64
        assert run(method, 0.0)[1] < err_floored / 20
    lite0, _ = run("lite", 0.0)
    assert not torch.equal(lite0.tensors[name + ".q"], rtn0.tensors[name + ".q"])
    with pytest.raises(ValueError, match="quant.scale_floor"):
        Quantizer(scale_floor=1.5)


def test_bad_options_name_the_key():
    with pytest.raises(ValueError, match="quant.method"):
        Quantizer(method="awq")
    with pytest.raises(ValueError, match="quant.matrix_bits"):
        Quantizer(matrix_bits=9)
    with pytest.raises(ValueError, match="quant.embed_bits"):
        Quantizer(embed_bits=1)
    with pytest.raises(ValueError, match="quant.clip_percentile"):
        Quantizer(clip_percentile=0.0)
    with pytest.raises(ValueError, match="quant.search"):
        Quantizer(search="column")


def test_per_tensor_closed_form():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(3, 150, 150, generator=gen) * 4
    q = Quantizer(clip_percentile=0.999).quantize({"w": w})
    clip = np.quantile(w.abs().flatten().double().numpy(), 0.999)
    assert float(q.tensors["w.scale"]) == pytest.approx(clip / 127, rel=1e-5)
    expected = np.clip(np.round(w.double().numpy() / (clip / 127)), -127, 127)
    got = q.tensors["w.q"].numpy().astype(np.float64)
    assert (got == expected).mean() > 0.999 and np.abs(got - expected).max() <= 1


def test_per_row_closed_form():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(70, 1000, generator=gen) * torch.linspace(0.5, 20, 70)[:, None]
    q = Quantizer(clip_percentile=0.99).quantize({"w": w})
    clip = np.quantile(np.abs(w.double().numpy()), 0.99, axis=1)
    scale = q.tensors["w.scale"].double().numpy()
    np.testing.assert_allclose(scale, np.maximum(clip / 127, 1 / 127), rtol=2**-10)
    expected = np.clip(np.round(w.double().numpy() / scale[:, None]), -127, 127)
    assert (q.tensors["w.q"].numpy() == expected).mean() > 0.999


def test_quantize_rows_grid():
    w = torch.tensor([[0.0, 1.0, -2.0, 3.0], [0.001, -0.002, 0.0, 0.9]])
    q, s = quantize_rows(w, torch.tensor([2.54, 0.5]), qmax=127, scale_dtype=torch.float32)
    assert s.tolist() == pytest.approx([0.02, 1 / 127])  # second row: the 1/qmax floor
    # 3.0 saturates at 127 steps; under the floor, 0.9 (above the 0.5 clip) keeps its own grid point (114).
    assert q.tolist() == [[0, 50, -100, 127], [0, 0, 0, 114]]
    q6, s6 = quantize_rows(torch.tensor([[0.9, -0.5, 5.0]]), torch.tensor([2.0]), qmax=31)
    assert s6.dtype == torch.float16 and q6.tolist() == [[14, -8, 31]]  # scale 2/31: 13.95, -7.75, saturated


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


def test_quantized_state_records():
    qs = QuantizedState()
    qs.add_passthrough("a", torch.ones(2, dtype=torch.float64), torch.float16)
    qs.add_quantized("b", "per_row", torch.zeros(2, 2, dtype=torch.int8), torch.ones(2), torch.bfloat16, 6)
    assert qs.meta == {"a": {"scheme": "passthrough", "data": "a", "dtype": "float64"},
                       "b": {"scheme": "per_row", "q": "b.q", "scale": "b.scale", "dtype": "bfloat16", "bits": 6}}
    out = dequantize_state(qs.tensors, qs.meta)
    assert out["a"].dtype == torch.float64 and out["b"].dtype == torch.bfloat16
