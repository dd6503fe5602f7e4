"""Per-group compression (#1586 via #1667/#1729 to #1855): the artifact's int8 matrices grouped by role, compressed
group by group with the best codec the machine has.

The codec works on golf's payload (a safetensors file) and gives it back byte for byte:
- each role's quantized matrices (``blocks.*.attn.c_q.weight.q``, ``...mlp.fc.weight.q``, ``tok_emb.weight.q``,
  ...) form one stream, layer by layer, each matrix stored column by column (the records' transpose);
- in the hot roles (the embedding, Q, MLP-up: ``HOT``) each matrix's rows may be put in a greedy L1
  nearest-neighbour order (start at row 0, then always the closest unvisited row), so similar rows sit together.
  The permutations go to a stream of their own (uint16 where every matrix has at most 65,536 rows, as #1855 stores
  them). A group is kept sorted only where its sorted stream plus its permutations is smaller than its plain
  stream: the sort pays on a trained 16 MB model's embedding and loses on small ones;
- everything else (the safetensors header, scales, small tensors) is one more stream, byte-shuffled with
  ``compressor.shuffle`` > 1;
- when the whole payload as one stream is smaller than all of that, the artifact holds that one stream.
A stream goes through the ``lrzip`` program (ZPAQ, ``-z -L 9``) when it is on PATH, as #1855 did, else through
lzma (preset 9, extreme) and brotli (quality 11), keeping the smaller; the choice of each stream is in the
artifact, so decoding needs only what encoded it. The candidates are compressed in parallel threads (the codecs
release the GIL). Input that is not a safetensors file (budget fitting's size samples) is one stream.

Layout: b"PGRP" | u8 version (2; version 1, the permutations inside each hot stream as uint32, still decodes) |
u32 index length | index (JSON) | the streams, in the index's order.
"""

from __future__ import annotations

import functools
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from golf.compress.codecs import Codec, byte_shuffle, byte_unshuffle

MAGIC, VERSION = b"PGRP", 2
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


def _codecs() -> tuple[str, ...]:
    return ("lrzip",) if lrzip_version() is not None else ("lzma", "brotli")


def _encode(codec: str, data: bytes) -> bytes:
    if codec == "lrzip":
        return _lrzip(data, decompress=False)
    if codec == "lzma":
        return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    import brotli

    return brotli.compress(data, quality=11)


def _pack_all(pool: ThreadPoolExecutor, blobs: dict) -> dict:
    """key -> (codec, stream) for each blob: lrzip where it runs, else the smaller of lzma and brotli."""
    jobs = {(k, c): pool.submit(_encode, c, b) for k, b in blobs.items() for c in _codecs()}
    out = {}
    for k in blobs:
        c = min(_codecs(), key=lambda c: len(jobs[k, c].result()))
        out[k] = (c, jobs[k, c].result())
    return out


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
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            if parsed is None:
                codec, stream = _pack_all(pool, {"whole": data})["whole"]
                index, streams = {"tool": lrzip_version(), "whole": {"codec": codec, "bytes": len(stream)}}, [stream]
            else:
                index, streams = self._grouped(pool, data, *parsed)
        head = json.dumps(index, separators=(",", ":")).encode()
        return MAGIC + bytes([VERSION]) + struct.pack("<I", len(head)) + head + b"".join(streams)

    def _grouped(self, pool: ThreadPoolExecutor, data: bytes, start: int, header: dict) -> tuple[dict, list[bytes]]:
        """The groups, permutations and rest as streams, or the whole-payload stream where that is smaller."""
        groups = _groups(header)
        mats = {name: _matrix(data, start, header[name]) for names in groups.values() for name in names}
        tall = max((m.shape[0] for m in mats.values()), default=0)
        perm_dtype = np.uint16 if tall <= 1 << 16 else np.uint32
        orders = {n: pool.submit(nearest_neighbour_order, mats[n]) for r, ns in groups.items() if r in HOT for n in ns}
        plain = {r: b"".join(np.ascontiguousarray(mats[n].T).tobytes() for n in ns) for r, ns in groups.items()}
        sorted_ = {("sorted", r): b"".join(np.ascontiguousarray(mats[n][orders[n].result()].T).tobytes() for n in ns)
                   for r, ns in groups.items() if r in HOT}
        perms = {r: b"".join(orders[n].result().astype(perm_dtype).tobytes() for n in ns)
                 for r, ns in groups.items() if r in HOT}
        grouped = {n for ns in groups.values() for n in ns}
        rest = bytearray(data[:start])
        for name, info in _entries(header):
            if name not in grouped:
                lo, hi = info["data_offsets"]
                rest += data[start + lo : start + hi]
        rest = byte_shuffle(bytes(rest), self.shuffle) if self.shuffle else bytes(rest)
        packed = _pack_all(pool, {**plain, **sorted_, **{("perm", r): b for r, b in perms.items()}, "rest": rest,
                                  "whole": data})  # the whole payload as one stream: the bar the groups must beat
        keep_sorted = [r for r in perms
                       if len(packed["sorted", r][1]) + len(packed["perm", r][1]) < len(packed[r][1])]
        index: dict = {"tool": lrzip_version(), "groups": [], "perm_dtype": np.dtype(perm_dtype).str}
        streams = []
        for role in groups:
            codec, stream = packed["sorted", role] if role in keep_sorted else packed[role]
            index["groups"].append({"role": role, "sorted": role in keep_sorted, "codec": codec, "bytes": len(stream)})
            streams.append(stream)
        if keep_sorted:
            codec, stream = _pack_all(pool, {"perms": b"".join(perms[r] for r in keep_sorted)})["perms"]
            index["perms"] = {"codec": codec, "bytes": len(stream)}
            streams.append(stream)
        index["rest"] = {"codec": packed["rest"][0], "bytes": len(packed["rest"][1]), "shuffle": self.shuffle}
        streams.append(packed["rest"][1])
        codec, whole = packed["whole"]
        if len(whole) <= sum(map(len, streams)):
            return {"tool": index["tool"], "whole": {"codec": codec, "bytes": len(whole)}}, [whole]
        return index, streams

    @staticmethod
    def _decompress(blob: bytes) -> bytes:
        if blob[:4] != MAGIC or len(blob) < 9 or blob[4] not in (1, VERSION):
            raise ValueError("not a pergroup stream (bad PGRP header)")
        n = struct.unpack("<I", blob[5:9])[0]
        index = json.loads(blob[9 : 9 + n])
        if blob[4] == 1:
            return _decompress_v1(index, blob, 9 + n)
        pos = 9 + n
        if "groups" not in index:
            return _unpack(index["whole"]["codec"], blob[pos : pos + index["whole"]["bytes"]])
        raw = []
        for g in index["groups"]:
            raw.append(_unpack(g["codec"], blob[pos : pos + g["bytes"]]))
            pos += g["bytes"]
        perms = b""
        if "perms" in index:
            perms = _unpack(index["perms"]["codec"], blob[pos : pos + index["perms"]["bytes"]])
            pos += index["perms"]["bytes"]
        rest = _unpack(index["rest"]["codec"], blob[pos : pos + index["rest"]["bytes"]])
        if index["rest"].get("shuffle"):
            rest = byte_unshuffle(rest)
        start, header = _tensors(rest)
        names = _groups(header)  # the header says which matrices each role holds, in the encoder's order
        groups = [{**g, "names": names[g["role"]]} for g in index["groups"]]
        rows = [[header[n]["shape"][0] for n in g["names"]] for g in groups]
        flat = np.frombuffer(perms, dtype=np.dtype(index["perm_dtype"])).astype(np.int64)
        sorted_rows = [r for g, rs in zip(groups, rows) if g["sorted"] for r in rs]
        it = iter(np.split(flat, np.cumsum(sorted_rows)[:-1]) if sorted_rows else [])
        orders = [[next(it) for _ in rs] if g["sorted"] else [None] * len(rs) for g, rs in zip(groups, rows)]
        return _assemble(rest, start, header, groups, raw, orders)


def _matrix(data: bytes, start: int, info: dict) -> np.ndarray:
    lo, hi = info["data_offsets"]
    rows, cols = info["shape"]
    return np.frombuffer(data, dtype=np.int8, count=hi - lo, offset=start + lo).reshape(rows, cols)


def _assemble(rest: bytes, start: int, header: dict, groups: list[dict], bodies: list[bytes],
              orders: list[list]) -> bytes:
    """The payload from the rest stream (header first, then the ungrouped tensors in data order) and each group's
    column-major matrices, each unpermuted by its row order (None: stored in row order)."""
    ordered = _entries(header)
    entries = dict(ordered)
    out = bytearray(start + max((v["data_offsets"][1] for v in entries.values()), default=0))
    out[:start] = rest[:start]
    grouped = {name for g in groups for name in g["names"]}
    cursor = start
    for name, info in ordered:
        if name not in grouped:
            lo, hi = info["data_offsets"]
            out[start + lo : start + hi] = rest[cursor : cursor + hi - lo]
            cursor += hi - lo
    for g, body, group_orders in zip(groups, bodies, orders):
        off = 0
        for name, order in zip(g["names"], group_orders):
            rows, cols = entries[name]["shape"]
            arr = np.frombuffer(body, dtype=np.int8, count=rows * cols, offset=off).reshape(cols, rows).T
            off += rows * cols
            if order is not None:
                restored = np.empty_like(arr)
                restored[order] = arr
                arr = restored
            lo, _ = entries[name]["data_offsets"]
            out[start + lo : start + lo + rows * cols] = np.ascontiguousarray(arr).tobytes()
    return bytes(out)


def _decompress_v1(index: dict, blob: bytes, pos: int) -> bytes:
    """Version 1 (golf before the sort became a choice): each hot group's uint32 permutations lead its stream."""
    raw = []
    for g in index["groups"]:
        raw.append(_unpack(g["codec"], blob[pos : pos + g["bytes"]]))
        pos += g["bytes"]
    rest = _unpack(index["rest"]["codec"], blob[pos : pos + index["rest"]["bytes"]])
    if index["rest"].get("shuffle"):
        rest = byte_unshuffle(rest)
    if not index["rest"]["parsed"]:
        return rest
    start, header = _tensors(rest)
    bodies, orders = [], []
    for g, body in zip(index["groups"], raw):
        rows = [header[n]["shape"][0] for n in g["names"]]
        lead = 4 * sum(rows) if g["hot"] else 0
        flat = np.frombuffer(body, dtype=np.uint32, count=lead // 4).astype(np.int64)
        orders.append(np.split(flat, np.cumsum(rows)[:-1]) if g["hot"] else [None] * len(rows))
        bodies.append(body[lead:])
    return _assemble(rest, start, header, index["groups"], bodies, orders)
