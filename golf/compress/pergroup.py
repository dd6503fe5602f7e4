"""Per-group compression (#1586 via #1667/#1729 to #1855): the artifact's int8 matrices grouped by role, compressed
group by group with the best codec the machine has.

The codec works on golf's payload (a safetensors file) and gives it back byte for byte:
- each role's quantized matrices (``blocks.*.attn.c_q.weight.q``, ``...mlp.fc.weight.q``, ``tok_emb.weight.q``,
  ...) form one stream, layer by layer, each matrix stored column by column (the records' transpose);
- in the hot roles (the embedding, Q, MLP-up: ``HOT``) each matrix's rows are first put in a greedy L1
  nearest-neighbour order (start at row 0, then always the closest unvisited row), the permutation stored
  before the data, so similar rows sit together;
- everything else (the safetensors header, scales, small tensors) is one more stream, byte-shuffled with
  ``compressor.shuffle`` > 1.
A stream goes through the ``lrzip`` program (ZPAQ, ``-z -L 9``) when it is on PATH, as #1855 did, else through
lzma (preset 9, extreme) and brotli (quality 11), keeping the smaller; the choice of each stream is in the
artifact, so decoding needs only what encoded it. Input that is not a safetensors file (budget fitting's size
samples) is compressed as one stream.

Layout: b"PGRP" | u8 version | u32 index length | index (JSON) | the streams, in the index's order.
"""

from __future__ import annotations

import functools
import json
import lzma
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from golf.compress.codecs import Codec, byte_shuffle, byte_unshuffle

MAGIC, VERSION = b"PGRP", 1
ROLE = re.compile(r"^(?:blocks\.(\d+)\.)?(.+\.weight\.q)$")
HOT = ("tok_emb.weight.q", "attn.c_q.weight.q", "mlp.fc.weight.q")


def nearest_neighbour_order(rows: np.ndarray) -> np.ndarray:
    """Greedy L1 chain: row 0, then repeatedly the unvisited row closest to the last one (ties: lowest index)."""
    n = rows.shape[0]
    x = rows.astype(np.int16)
    left = np.ones(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    cur = 0
    for i in range(n):
        order[i] = cur
        left[cur] = False
        if i + 1 < n:
            idx = np.flatnonzero(left)
            d = np.abs(x[idx] - x[cur]).sum(axis=1)
            cur = int(idx[np.argmin(d)])
    return order


@functools.cache
def lrzip_version() -> str | None:
    """``lrzip``'s version line when the program is on PATH, else None."""
    exe = shutil.which("lrzip")
    if exe is None:
        return None
    out = subprocess.run([exe, "-V"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "lrzip"


def _lrzip(data: bytes, decompress: bool) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in", Path(d) / "out"
        src.write_bytes(data)
        args = ["-d", "-f"] if decompress else ["-z", "-L", "9", "-f"]
        subprocess.run(["lrzip", *args, "-q", "-o", str(dst), str(src)], check=True, capture_output=True)
        return dst.read_bytes()


def _pack(data: bytes) -> tuple[str, bytes]:
    """(codec, stream): lrzip where it runs, else the smaller of lzma and brotli."""
    if lrzip_version() is not None:
        return "lrzip", _lrzip(data, decompress=False)
    import brotli

    options = {"lzma": lzma.compress(data, preset=9 | lzma.PRESET_EXTREME), "brotli": brotli.compress(data, quality=11)}
    name = min(options, key=lambda k: len(options[k]))
    return name, options[name]


def _unpack(codec: str, data: bytes) -> bytes:
    if codec == "lrzip":
        if lrzip_version() is None:
            raise ValueError("this artifact's pergroup streams were written by lrzip, which is not on PATH; install "
                             "lrzip (e.g. apt install lrzip) to read it")
        return _lrzip(data, decompress=True)
    if codec == "lzma":
        return lzma.decompress(data)
    if codec == "brotli":
        import brotli

        return brotli.decompress(data)
    raise ValueError(f"pergroup stream names unknown codec {codec!r}")


def _tensors(payload: bytes) -> tuple[int, dict] | None:
    """(data start, header) of a safetensors payload, or None when it is not one."""
    if len(payload) < 8:
        return None
    n = int.from_bytes(payload[:8], "little")
    try:
        header = json.loads(payload[8 : 8 + n])
    except (ValueError, UnicodeDecodeError):
        return None
    return (8 + n, header) if isinstance(header, dict) else None


def _entries(header: dict) -> list[tuple[str, dict]]:
    """The header's tensors (not its ``__metadata__``), in the order of their data."""
    tensors = [(k, v) for k, v in header.items() if isinstance(v, dict) and "data_offsets" in v]
    return sorted(tensors, key=lambda kv: kv[1]["data_offsets"][0])


def _groups(header: dict) -> dict[str, list[str]]:
    """Role -> names of its 2-D int8 matrices, layer by layer."""
    found: dict[str, list[tuple[int, str]]] = {}
    for name, info in header.items():
        m = ROLE.match(name)
        if m and isinstance(info, dict) and info.get("dtype") == "I8" and len(info.get("shape", ())) == 2:
            found.setdefault(m.group(2), []).append((int(m.group(1) or 0), name))
    return {role: [n for _, n in sorted(v)] for role, v in sorted(found.items())}


class PerGroup(Codec):
    base = "pergroup"

    def __init__(self, *, shuffle: int = 0):
        super().__init__(shuffle=shuffle)  # shuffle > 1: byte-shuffles the rest stream (fp16 scales), not the groups
        self.name = self.base

    def compress(self, data: bytes) -> bytes:
        return self._compress(bytes(data))  # the shuffle applies inside, to the rest stream only

    def fast(self) -> Codec:
        from golf.compress.codecs import Brotli

        return Brotli(quality=5)

    def _compress(self, data: bytes) -> bytes:
        parsed = _tensors(data)
        index: dict = {"groups": [], "tool": lrzip_version()}
        streams: list[bytes] = []
        grouped: set[str] = set()
        if parsed is not None:
            start, header = parsed
            for role, names in _groups(header).items():
                perms, body = [], []
                for name in names:
                    lo, hi = header[name]["data_offsets"]
                    rows, cols = header[name]["shape"]
                    arr = np.frombuffer(data, dtype=np.int8, count=hi - lo, offset=start + lo).reshape(rows, cols)
                    if role in HOT:
                        order = nearest_neighbour_order(arr)
                        perms.append(order.astype(np.uint32).tobytes())
                        arr = arr[order]
                    body.append(np.ascontiguousarray(arr.T).tobytes())
                codec, stream = _pack(b"".join(perms + body))
                index["groups"].append({"role": role, "names": names, "hot": role in HOT, "codec": codec,
                                        "bytes": len(stream)})
                streams.append(stream)
                grouped.update(names)
            rest = bytearray(data[:start])
            for name, info in _entries(header):
                if name not in grouped:
                    lo, hi = info["data_offsets"]
                    rest += data[start + lo : start + hi]
        else:
            rest = bytearray(data)
        codec, stream = _pack(byte_shuffle(bytes(rest), self.shuffle) if self.shuffle else bytes(rest))
        index["rest"] = {"codec": codec, "bytes": len(stream), "parsed": parsed is not None, "shuffle": self.shuffle}
        streams.append(stream)
        head = json.dumps(index, separators=(",", ":")).encode()
        return MAGIC + bytes([VERSION]) + struct.pack("<I", len(head)) + head + b"".join(streams)

    @staticmethod
    def _decompress(blob: bytes) -> bytes:
        if blob[:4] != MAGIC or len(blob) < 9 or blob[4] != VERSION:
            raise ValueError("not a pergroup stream (bad PGRP header)")
        n = struct.unpack("<I", blob[5:9])[0]
        index = json.loads(blob[9 : 9 + n])
        pos, groups = 9 + n, []
        for g in index["groups"]:
            groups.append(_unpack(g["codec"], blob[pos : pos + g["bytes"]]))
            pos += g["bytes"]
        rest = _unpack(index["rest"]["codec"], blob[pos : pos + index["rest"]["bytes"]])
        if index["rest"].get("shuffle"):
            rest = byte_unshuffle(rest)
        if not index["rest"]["parsed"]:
            return rest
        start, header = _tensors(rest)
        ordered = _entries(header)
        entries = dict(ordered)
        out = bytearray(start + max((v["data_offsets"][1] for v in entries.values()), default=0))
        out[:start] = rest[:start]
        grouped = {name for g in index["groups"] for name in g["names"]}
        cursor = start
        for name, info in ordered:
            if name not in grouped:
                lo, hi = info["data_offsets"]
                out[start + lo : start + hi] = rest[cursor : cursor + hi - lo]
                cursor += hi - lo
        for g, raw in zip(index["groups"], groups):
            shapes = [entries[name]["shape"] for name in g["names"]]
            off = 4 * sum(r for r, _ in shapes) if g["hot"] else 0
            poff = 0
            for name, (rows, cols) in zip(g["names"], shapes):
                arr = np.frombuffer(raw, dtype=np.int8, count=rows * cols, offset=off).reshape(cols, rows).T
                off += rows * cols
                if g["hot"]:
                    order = np.frombuffer(raw, dtype=np.uint32, count=rows, offset=poff).astype(np.int64)
                    poff += 4 * rows
                    restored = np.empty_like(arr)
                    restored[order] = arr
                    arr = restored
                lo, _ = entries[name]["data_offsets"]
                out[start + lo : start + lo + rows * cols] = np.ascontiguousarray(arr).tobytes()
        return bytes(out)
