"""golf's pickle-free artifact: exact round trips through every codec, clear errors, code bytes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load

from golf.compress.artifact import (
    FORMAT_VERSION,
    MAGIC,
    code_bytes,
    code_files,
    decode_artifact,
    encode_artifact,
    read_artifact,
    write_artifact,
)
from golf.compress.codecs import DECODERS, Brotli, Lzma, Raw, Zlib, Zstd, byte_shuffle, byte_unshuffle, decompress
from golf.quant.format import dequantize_state
from golf.quant.quantizer import Quantizer

COMPRESSORS = {"zlib": lambda: Zlib(level=9), "zstd": lambda: Zstd(level=19), "lzma": lambda: Lzma(preset=6),
               "raw": lambda: Raw(), "brotli": lambda: Brotli(quality=9), "brotli+shuffle": lambda: Brotli(quality=9, shuffle=2),
               "lzma+shuffle": lambda: Lzma(preset=6, shuffle=2)}


@pytest.fixture
def qstate(tiny_gpt):
    torch.manual_seed(0)
    model = tiny_gpt(vocab_size=256, model_dim=64, num_layers=2, num_heads=4, num_kv_heads=2)
    # A low keep-float threshold so the block matrices are quantized per row, not passed through.
    q = Quantizer(keep_float_max_numel=4096).quantize(model.state_dict())
    schemes = {m["scheme"] for m in q.meta.values()}
    assert schemes == {"per_row", "passthrough"}
    return model, q


def _no_pickle(*args, **kwargs):
    raise AssertionError("reading an artifact must not unpickle anything")


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_artifact_round_trip(tmp_path, qstate, tiny_gpt, codec, monkeypatch):
    model, q = qstate
    compressor = COMPRESSORS[codec]()
    path = tmp_path / "model.golf"
    size = write_artifact(path, encode_artifact(q.tensors, q.meta, compressor))
    assert size == path.stat().st_size
    assert not (tmp_path / "model.golf.tmp").exists()
    blob = path.read_bytes()
    name = codec.encode("ascii")
    assert blob[:4] == MAGIC == b"GOLF" and blob[4] == FORMAT_VERSION and blob[5] == len(name)
    assert blob[6 : 6 + len(name)] == name
    if codec != "raw":
        payload_bytes = sum(v.numel() * v.element_size() for v in q.tensors.values())
        assert size < payload_bytes, "a real codec should shrink an int8 payload"

    monkeypatch.setattr(pickle, "loads", _no_pickle)
    monkeypatch.setattr(pickle, "load", _no_pickle)
    monkeypatch.setattr(torch, "load", _no_pickle)
    tensors, meta = read_artifact(path)
    assert meta == q.meta
    assert set(tensors) == set(q.tensors)
    for k, v in q.tensors.items():
        assert tensors[k].dtype == v.dtype and torch.equal(tensors[k], v), k

    # The payload is a plain safetensors file whose metadata entry "golf" is the quantization metadata.
    payload = decompress(codec, blob[6 + len(name) :])
    header = json.loads(payload[8 : 8 + int.from_bytes(payload[:8], "little")])
    assert json.loads(header["__metadata__"]["golf"]) == q.meta
    plain = st_load(payload)
    assert set(plain) == set(q.tensors) and all(torch.equal(plain[k], v) for k, v in q.tensors.items())

    # The dequantized state loads into a fresh model of the same config, strictly, and stays close.
    state = dequantize_state(tensors, meta)
    fresh = tiny_gpt(vocab_size=256, model_dim=64, num_layers=2, num_heads=4, num_kv_heads=2)
    fresh.load_state_dict(state, strict=True)
    for (n, p), p0 in zip(fresh.named_parameters(), model.parameters()):
        assert p.dtype == p0.dtype and p.shape == p0.shape, n
        assert (p - p0).abs().max() <= 0.5 / 127 + 1e-3 * p0.abs().max(), n


def test_artifact_round_trip_all_schemes(tmp_path):
    """Per-tensor, integer, bool, bf16 and empty tensors survive bit for bit."""
    gen = torch.Generator().manual_seed(1)
    state = {"big3d": torch.randn(2, 200, 200, generator=gen), "ids": torch.arange(7, dtype=torch.int64),
             "mask": torch.tensor([True, False]), "bf": torch.randn(5, generator=gen).bfloat16(),
             "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5)}
    q = Quantizer().quantize(state)
    assert q.meta["big3d"]["scheme"] == "per_tensor"
    write_artifact(tmp_path / "a.golf", encode_artifact(q.tensors, q.meta, Zlib()))
    tensors, meta = read_artifact(tmp_path / "a.golf")
    assert meta == q.meta
    for k, v in q.tensors.items():
        assert tensors[k].dtype == v.dtype and tensors[k].shape == v.shape and torch.equal(tensors[k], v), k
    out = dequantize_state(tensors, meta)
    for k, v in state.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
    assert torch.equal(out["ids"], state["ids"]) and torch.equal(out["mask"], state["mask"])
    assert torch.equal(out["bf"], state["bf"])


def test_decode_rejects_bad_magic():
    blob = encode_artifact({"x": torch.zeros(2)}, {}, Raw())
    with pytest.raises(ValueError, match=r"weights\.pt: not a golf artifact \(bad magic b'PK"):
        decode_artifact(b"PK\x03\x04" + blob[4:], "weights.pt")
    with pytest.raises(ValueError, match="not a golf artifact"):
        decode_artifact(b"", "empty.golf")


def test_decode_rejects_unknown_codec_and_version():
    blob = encode_artifact({"x": torch.zeros(2)}, {}, Raw())
    bad = MAGIC + bytes([FORMAT_VERSION, 4]) + b"brot" + blob[6 + 3 :]  # not "brotli"
    with pytest.raises(ValueError, match=r"unknown codec 'brot'") as info:
        decode_artifact(bad, "m.golf")
    assert all(name in str(info.value) for name in DECODERS)
    with pytest.raises(ValueError, match=r"m.golf: artifact format version 99"):
        decode_artifact(MAGIC + bytes([99]) + blob[5:], "m.golf")


def test_decode_rejects_truncated_header():
    with pytest.raises(ValueError, match="t.golf"):
        decode_artifact(MAGIC, "t.golf")


def test_read_artifact_names_the_file(tmp_path):
    path = tmp_path / "junk.golf"
    path.write_bytes(b"not an artifact at all")
    with pytest.raises(ValueError) as info:
        read_artifact(path)
    assert str(path) in str(info.value)


def test_codec_names_and_round_trips():
    data = b"parameter golf " * 1000 + bytes(range(256))
    for name, make in COMPRESSORS.items():
        c = make()
        assert c.name == name and name.split("+")[0] in DECODERS
        assert decompress(name, c.compress(data)) == data
    with pytest.raises(ValueError, match="unknown codec 'zlib\\+twist'"):
        decompress("zlib+twist", Zlib().compress(data))
    with pytest.raises(ValueError, match="zlib must be in 0..9"):
        Zlib(level=10)
    with pytest.raises(ValueError, match="zstd must be in 1..22"):
        Zstd(level=0)
    with pytest.raises(ValueError, match="lzma must be in 0..9"):
        Lzma(preset=10)


def test_byte_shuffle_is_the_records_and_inverts(testvector):
    tv = testvector("byte_shuffle")
    data = bytes(tv["data"])
    assert byte_shuffle(data, 2) == bytes(tv["shuffled"])  # #1089's _byte_shuffle, header included
    for n in (0, 1, 2, 7, 1000):
        x = bytes((i * 37) % 256 for i in range(n))
        for stride in (2, 3, 4):
            assert byte_unshuffle(byte_shuffle(x, stride)) == x
    fp16 = torch.randn(20_000, generator=torch.Generator().manual_seed(0)).half().numpy().tobytes()
    assert len(Lzma(shuffle=2).compress(fp16)) < len(Lzma().compress(fp16))  # why it exists
    with pytest.raises(ValueError, match="shuffle stride must be in 2..255"):
        Zlib(shuffle=300)
    with pytest.raises(ValueError, match="BSHF"):
        byte_unshuffle(b"plain bytes")


def test_code_bytes_counts_loaded_golf_files():
    import golf.pipeline  # noqa: F401  (load what a run loads)

    files = code_files()
    pkg = Path(golf.__file__).resolve().parent
    assert files == sorted(files) and len(set(files)) == len(files)
    assert all(pkg in f.parents and f.suffix == ".py" and f.is_file() for f in files)
    for must in ("__init__.py", "compress/artifact.py", "pipeline.py", "quant/quantizer.py"):
        assert pkg / must in files, must
    assert code_bytes() == sum(f.stat().st_size for f in files)
    assert code_bytes(files[:2]) == sum(f.stat().st_size for f in files[:2])



def test_shipped_script_runs_the_minified_modules_from_memory(tmp_path):
    """The code count is that of a real script: it imports golf's modules from its own payload (not from
    this checkout) and builds a model; it is a fraction of the raw sources."""
    import subprocess
    import sys

    import golf.models.gpt  # noqa: F401  (load what a run loads)
    import golf.pipeline  # noqa: F401
    from golf.compress.code_size import module_name, shipped_bytes, shipped_script

    files = code_files()
    entry = ("import golf.models.gpt as g;m=g.GPT(vocab_size=64,num_layers=2,model_dim=32,num_heads=4,num_kv_heads=2);"
             "print(sum(p.numel() for p in m.parameters()),type(g.__spec__.loader).__name__,g.__spec__.origin)")
    (tmp_path / "submission.py").write_text(shipped_script(files, entry))
    p = subprocess.run([sys.executable, "submission.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    params, loader, origin = p.stdout.split()
    assert int(params) == 16_680 and loader == "L" and origin == "None"  # served by the bootstrap, no file behind it
    assert shipped_bytes(files) < 0.35 * code_bytes(files)
    assert module_name(files[0]) == ("golf", True)
    assert module_name(Path(golf.models.gpt.__file__)) == ("golf.models.gpt", False)


def test_shipped_triton_kernels_run_from_memory(tmp_path):
    """The kernels of golf/kernels, minified and imported from the script's payload, still compile and compute
    what their references do (in Triton's interpreter, on the CPU)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    import golf.models.gpt  # noqa: F401  (load what a GPU run loads: the model, its kernels)
    from golf.compress.code_size import shipped_script

    entry = ("import torch,golf.kernels.xsa_triton as k,golf.kernels.xsa as x,golf.kernels.qk_norm_rope_triton as q;"
             "import golf.kernels.qk_norm_rope as r;from golf.kernels.rotary import rotary_tables as t;"
             "y=torch.randn(2,5,4,8);v=torch.randn(2,5,2,8);c,s=t(5,4,1e4,y.device);g=torch.rand(4);"
             "print(k.__spec__.origin,float((k.xsa(y,v)-x.reference(y,v)).abs().max()),"
             "float((q.norm_rope(y,c,s,g)-r.reference(y,c,s,g)).abs().max()))")
    (tmp_path / "submission.py").write_text(shipped_script(code_files(), entry))
    p = subprocess.run([sys.executable, "submission.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TRITON_INTERPRET": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    origin, err_xsa, err_rope = p.stdout.split()
    assert origin == "None" and float(err_xsa) < 1e-5 and float(err_rope) < 1e-5
