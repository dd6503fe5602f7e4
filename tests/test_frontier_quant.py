"""The April records' quantization against #1855's own functions (vectors made by running its
``gptq_quantize_weight`` and ``_quantize_gate_int8_row`` on seeded tensors; its outputs are kept, not its code):
SDClip GPTQ at int6 for an MLP and an attention matrix and at int7 for the embedding, and the int8 gate rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from golf.quant.format import dequantize_state
from golf.quant.quantizer import Quantizer

VECTORS = Path(__file__).parent / "vectors" / "frontier_quant_1855.npz"
NAMES = {"mlp": "blocks.0.mlp.fc.weight", "attn": "blocks.0.attn.c_q.weight", "embed": "tok_emb.weight"}


@pytest.fixture(scope="module")
def vec():
    return dict(np.load(VECTORS))


@pytest.mark.parametrize("role", ["mlp", "attn", "embed"])
def test_sdclip_gptq_is_the_records_bit_for_bit(vec, role):
    W, H = torch.from_numpy(vec[f"{role}_W"]), torch.from_numpy(vec[f"{role}_H"])
    bits, k = int(vec[f"{role}_bits"]), float(vec[f"{role}_k"])
    q = Quantizer(method="gptq", matrix_bits=bits, embed_bits=bits, embed_method="gptq", clip_sigmas={role: k},
                  scale_floor=1e-10, fit_scale_floor=False, keep_float_max_numel=0)
    name = NAMES[role]
    out = q.quantize({name: W}, hessians={name: H})
    assert torch.equal(out.tensors[f"{name}.q"], torch.from_numpy(vec[f"{role}_q"]))
    assert torch.equal(out.tensors[f"{name}.scale"], torch.from_numpy(vec[f"{role}_scale"]))
    assert out.stats["gptq"]["matrices"] == 1 and out.stats["gptq"]["fallbacks"] == 0


def test_quant_gate_is_the_records_int8_rows(vec):
    W = torch.from_numpy(vec["gate_W"])
    name = "blocks.3.attn.gate_w"
    out = Quantizer(gate_bits=8).quantize({name: W})
    assert torch.equal(out.tensors[f"{name}.q"], torch.from_numpy(vec["gate_q"]))
    scale, want = out.tensors[f"{name}.scale"], torch.from_numpy(vec["gate_scale"])
    live = W.abs().amax(dim=1) > 0  # an all-zero row: the record's scale underflows fp16 to 0, golf keeps 1.2e-7
    assert torch.equal(scale[live], want[live]) and (scale[~live] > 0).all() and not want[~live].any()
    back = dequantize_state(out.tensors, out.meta)[name]
    assert (back - W).abs().max() <= torch.from_numpy(vec["gate_scale"]).float().max() / 2 + 1e-6
    assert Quantizer().classify(name, W) == "small"  # off unless chosen: kept in float like other small tensors


def test_sdclip_and_embed_options_are_checked():
    with pytest.raises(ValueError, match="quant.clip_sigmas"):
        Quantizer(clip_sigmas={"head": 12.0})
    with pytest.raises(ValueError, match="quant.embed_method"):
        Quantizer(embed_method="lite")
    with pytest.raises(ValueError, match="quant.gate_bits"):
        Quantizer(gate_bits=6)
    assert Quantizer(method="rtn", embed_method="gptq").needs_hessians


def test_calibration_collects_the_heads_hessian(tiny_gpt):
    from golf.calibration.hessians import collect_hessians

    torch.manual_seed(0)
    model = tiny_gpt()
    batches = [torch.randint(0, 96, (2, 16)) for _ in range(3)]
    hessians, tokens = collect_hessians(model, batches)
    with torch.no_grad():
        h = torch.cat([model.hidden(b).reshape(-1, 32) for b in batches])
    torch.testing.assert_close(hessians["tok_emb.weight"], h.T @ h / tokens, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("asym", [True, False])
def test_lqer_packs_the_error_as_the_record_does(vec, asym):
    from golf.quant.lqer import LQERConfig, correction, factors, pack

    W, q, s = (torch.from_numpy(vec[k]) for k in ("mlp_W", "mlp_q", "mlp_scale"))
    E = W.float() - q.float() * s.float()[:, None]
    got = pack(*factors(E, 4), LQERConfig(rank=4, asym=asym, group=64, bits=4))
    tag = "asym" if asym else "sym"
    for k in ("A", "sA", "B", "sB"):
        assert torch.equal(got[k], torch.from_numpy(vec[f"lqer_{tag}_q{k}" if k in ("A", "B") else f"lqer_{tag}_{k}"])), k
    assert (E - correction(got)).norm() < E.norm()  # the correction reduces the error


def test_lqer_corrects_the_worst_matrices_and_round_trips(vec):
    """Through the quantizer: the top_k GPTQ matrices by error norm get a correction, stored in the state (so the
    byte budget counts it) and added back by the generic dequantizer."""
    W, H = torch.from_numpy(vec["mlp_W"]), torch.from_numpy(vec["mlp_H"])
    state = {f"blocks.{i}.mlp.fc.weight": W * (1 + i) for i in range(3)}
    hess = {n: H for n in state}
    kw = dict(method="gptq", matrix_bits=6, clip_sigmas={"mlp": 11.5}, scale_floor=1e-10, fit_scale_floor=False,
              keep_float_max_numel=0)
    plain = Quantizer(**kw).quantize(state, hessians=hess)
    fixed = Quantizer(**kw, lqer={"rank": 4, "top_k": 2}).quantize(state, hessians=hess)
    assert fixed.stats["lqer"]["matrices"] == ["blocks.2.mlp.fc.weight", "blocks.1.mlp.fc.weight"]
    a, b = dequantize_state(plain.tensors, plain.meta), dequantize_state(fixed.tensors, fixed.meta)
    for n, w in state.items():
        err_plain, err_fixed = float((a[n] - w).norm()), float((b[n] - w).norm())
        assert (err_fixed < err_plain) if n != "blocks.0.mlp.fc.weight" else err_fixed == err_plain
    assert fixed.stats["payload_bytes"] > plain.stats["payload_bytes"]
