"""Per-group compression (golf.compress.pergroup): the payload back byte for byte (hot groups permuted, matrices
transposed, the rest apart), through golf's artifact; input that is not a payload; the row order against a naive
greedy chain; the sort kept only where it pays; never larger than the whole payload as one stream; version-1
artifacts still decode; scripts/compress_table.py."""

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
    floats = artifact_payload(_state(), {"quant": "none"})  # no int8 matrix: no group at all
    assert decompress("pergroup", codec.compress(floats)) == floats


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
    main([str(tmp_path), "--codecs", "zlib,lzma,pergroup", "--json", str(tmp_path / "t.json"), "--jobs", "3"])
    out = json.loads((tmp_path / "t.json").read_text())
    payload = artifact_payload(q.tensors, q.meta)
    assert out["payload_bytes"] == len(payload) and out["shipped_codec"] == "pergroup"
    assert [r["codec"] for r in out["rows"]] == ["zlib", "lzma", "pergroup"]  # the order asked, not the order finished
    sizes = {r["codec"]: r["bytes"] for r in out["rows"]}
    assert sizes == {"zlib": len(zlib.compress(payload, 9)), "lzma": len(lzma.compress(payload, preset=9)),
                     "pergroup": len(PerGroup().compress(payload))}
    assert out["shipped_bytes"] == sizes["pergroup"] + 6 + len("pergroup")
    with pytest.raises(SystemExit, match="no such artifact"):
        main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="unknown codec 'gzip'"):
        main([str(tmp_path), "--codecs", "gzip"])


def _index(blob: bytes) -> dict:
    import json
    import struct

    n = struct.unpack("<I", blob[5:9])[0]
    return json.loads(blob[9 : 9 + n])


def _best_whole(payload: bytes) -> int:
    import lzma

    import brotli

    return min(len(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME)), len(brotli.compress(payload, quality=11)))


def test_the_sort_is_kept_where_it_pays_and_dropped_where_it_does_not():
    g = torch.Generator().manual_seed(1)
    protos = torch.randint(-31, 32, (8, 256), generator=g, dtype=torch.int8)
    jitter = torch.randint(-1, 2, (512, 256), generator=g, dtype=torch.int8)  # no long exact match for LZ
    clustered = protos[torch.randint(0, 8, (512,), generator=g)] + jitter  # 8 kinds of row, shuffled: sorting pays
    noise = torch.randint(-31, 32, (512, 256), generator=g, dtype=torch.int8)  # nothing to gather
    state = {"tok_emb.weight.q": clustered, "blocks.0.mlp.fc.weight.q": noise, "blocks.0.mlp.fc.weight.s":
             torch.ones(512, dtype=torch.float16)}
    payload = artifact_payload(state, {"x": 1})
    blob = PerGroup().compress(payload)
    assert decompress("pergroup", blob) == payload
    index = _index(blob)
    assert {gr["role"]: gr["sorted"] for gr in index["groups"]} == {"mlp.fc.weight.q": False, "tok_emb.weight.q": True}
    assert index["perm_dtype"] == "<u2" and len(blob) < _best_whole(payload)


def test_pergroup_is_never_larger_than_the_whole_payload_as_one_stream():
    q = Quantizer(matrix_bits=6, keep_float_max_numel=1000).quantize(_state())
    payload = artifact_payload(q.tensors, q.meta)
    blob = PerGroup().compress(payload)
    index = _index(blob)
    header = 9 + int.from_bytes(blob[5:9], "little")
    assert len(blob) - header <= _best_whole(payload)
    if "whole" in index:  # the groups lost: the one stream is there, and decodes
        assert "groups" not in index and len(blob) - header == _best_whole(payload)
    assert decompress("pergroup", blob) == payload


def _encode_v1(payload: bytes) -> bytes:
    """golf's version-1 layout, written here from its description: each hot matrix's rows in nearest-neighbour
    order with its uint32 permutation at the head of its group's stream, every stream lzma, names in the index."""
    import json
    import lzma
    import struct

    from golf.compress.pergroup import HOT, _entries, _groups, _tensors

    start, header = _tensors(payload)
    index, streams, grouped = {"groups": [], "tool": None}, [], set()
    for role, names in _groups(header).items():
        perms, body = [], []
        for name in names:
            lo, hi = header[name]["data_offsets"]
            arr = np.frombuffer(payload, np.int8, hi - lo, start + lo).reshape(header[name]["shape"])
            if role in HOT:
                order = nearest_neighbour_order(arr)
                perms.append(order.astype(np.uint32).tobytes())
                arr = arr[order]
            body.append(np.ascontiguousarray(arr.T).tobytes())
        stream = lzma.compress(b"".join(perms + body))
        index["groups"].append({"role": role, "names": names, "hot": role in HOT, "codec": "lzma", "bytes": len(stream)})
        streams.append(stream)
        grouped.update(names)
    rest = bytearray(payload[:start])
    for name, info in _entries(header):
        if name not in grouped:
            rest += payload[start + info["data_offsets"][0] : start + info["data_offsets"][1]]
    streams.append(lzma.compress(bytes(rest)))
    index["rest"] = {"codec": "lzma", "bytes": len(streams[-1]), "parsed": True, "shuffle": 0}
    head = json.dumps(index).encode()
    return b"PGRP" + bytes([1]) + struct.pack("<I", len(head)) + head + b"".join(streams)


def test_version_1_artifacts_still_decode():
    q = Quantizer(matrix_bits=6, keep_float_max_numel=1000).quantize(_state())
    payload = artifact_payload(q.tensors, q.meta)
    assert decompress("pergroup", _encode_v1(payload)) == payload
