"""Per-group compression (golf.compress.pergroup): the payload back byte for byte (hot groups permuted, matrices
transposed, the rest apart), through golf's artifact; input that is not a payload; the row order against a naive
greedy chain."""

from __future__ import annotations

import numpy as np
import torch

from golf.compress.artifact import artifact_payload, decode_artifact, encode_artifact
from golf.compress.codecs import decompress
from golf.compress.pergroup import PerGroup, nearest_neighbour_order
from golf.quant.quantizer import Quantizer


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 96, generator=g) * 0.05
    state = {"tok_emb.weight": torch.randn(200, 96, generator=g) * 0.02, "blocks.0.attn_scale": torch.ones(96)}
    for i in range(3):
        for name in ("attn.c_q", "attn.c_k", "mlp.fc"):
            state[f"blocks.{i}.{name}.weight"] = base + 0.01 * torch.randn(64, 96, generator=g)
    return state


def test_pergroup_round_trips_the_payload_bit_for_bit():
    q = Quantizer(matrix_bits=6, keep_float_max_numel=1000).quantize(_state())
    payload = artifact_payload(q.tensors, q.meta)
    codec = PerGroup()
    blob = codec.compress(payload)
    assert decompress("pergroup", blob) == payload
    tensors, meta = decode_artifact(encode_artifact(q.tensors, q.meta, codec))
    assert meta == q.meta and all(torch.equal(tensors[k], v) for k, v in q.tensors.items())
    assert decompress("pergroup", codec.compress(b"not a payload" * 100)) == b"not a payload" * 100


def test_nearest_neighbour_order_is_the_greedy_l1_chain():
    rows = np.random.default_rng(0).integers(-8, 8, size=(40, 16)).astype(np.int8)
    order, left, cur = [0], set(range(1, 40)), 0
    while left:
        cur = min(sorted(left), key=lambda j: int(np.abs(rows[j].astype(int) - rows[cur].astype(int)).sum()))
        order.append(cur)
        left.remove(cur)
    assert nearest_neighbour_order(rows).tolist() == order


def test_pergroup_with_shuffle_round_trips_and_keeps_its_name():
    q = Quantizer(matrix_bits=6, keep_float_max_numel=1000).quantize(_state())
    payload = artifact_payload(q.tensors, q.meta)
    codec = PerGroup(shuffle=2)
    assert codec.name == "pergroup" and decompress("pergroup", codec.compress(payload)) == payload


def test_compress_table_measures_each_codec_on_the_shipped_payload(tmp_path):
    import json
    import lzma
    import zlib

    import pytest

    from scripts.compress_table import main

    q = Quantizer(matrix_bits=6, keep_float_max_numel=1000).quantize(_state())
    (tmp_path / "model.golf").write_bytes(encode_artifact(q.tensors, q.meta, PerGroup()))
    main([str(tmp_path), "--codecs", "zlib,lzma,pergroup", "--json", str(tmp_path / "t.json")])
    out = json.loads((tmp_path / "t.json").read_text())
    payload = artifact_payload(q.tensors, q.meta)
    assert out["payload_bytes"] == len(payload) and out["shipped_codec"] == "pergroup"
    sizes = {r["codec"]: r["bytes"] for r in out["rows"]}
    assert sizes == {"zlib": len(zlib.compress(payload, 9)), "lzma": len(lzma.compress(payload, preset=9)),
                     "pergroup": len(PerGroup().compress(payload))}
    assert out["shipped_bytes"] == sizes["pergroup"] + 6 + len("pergroup")
    with pytest.raises(SystemExit, match="no such artifact"):
        main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="unknown codec 'gzip'"):
        main([str(tmp_path), "--codecs", "gzip"])
