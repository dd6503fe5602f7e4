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
