"""The challenge's token-shard format: a 256 x int32 little-endian header (magic 20240520, version 1,
token count) followed by the tokens as little-endian uint16.

A CaseOps byte sidecar (``fineweb_val_bytes_NNNNNN.bin`` beside ``fineweb_val_NNNNNN.bin``) has the same layout:
one uint16 per token of its shard, the bytes of the original text that token stands for. golf writes
``SIDECAR_KIND`` in its header's fourth word to say what it is; the records' sidecars leave it 0 and are known by
their name. Every error names the file, so a user with a truncated download knows which shard to fetch again.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKEN_ID = np.iinfo(np.uint16).max
TOKENS_KIND, SIDECAR_KIND = 0, 0x42595445  # header word 3: token ids, or the byte sidecar of a shard ("BYTE")
SIDECAR_TAG = "_bytes_"                     # in a sidecar's file name, between the split and the index


class ShardError(ValueError):
    """A shard file is missing, malformed or inconsistent with its header."""


def read_header(path: str | os.PathLike, kind: int | None = None) -> int:
    """Validate the header and file size of ``path`` (and its kind word, if ``kind`` is given); return its token
    count."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file does not exist")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS:
        raise ShardError(f"{path}: file is {path.stat().st_size} bytes, shorter than the {HEADER_BYTES}-byte header")
    if int(header[0]) != SHARD_MAGIC:
        raise ShardError(f"{path}: bad magic {int(header[0])}, expected {SHARD_MAGIC} (not a challenge shard?)")
    if int(header[1]) != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported shard version {int(header[1])}, expected {SHARD_VERSION}")
    if kind is not None and int(header[3]) not in (kind, TOKENS_KIND):
        raise ShardError(f"{path}: header says kind {int(header[3]):#x}, expected {kind:#x} "
                         f"({'a byte sidecar' if kind == SIDECAR_KIND else 'token ids'})")
    num_tokens = int(header[2])
    if num_tokens < 0:
        raise ShardError(f"{path}: negative token count {num_tokens} in header")
    expected = HEADER_BYTES + 2 * num_tokens
    actual = path.stat().st_size
    if actual != expected:
        raise ShardError(
            f"{path}: size mismatch: header says {num_tokens} tokens ({expected} bytes) but the file has "
            f"{actual} bytes (truncated or corrupted download?)"
        )
    return num_tokens


def read_shard(path: str | os.PathLike, mmap: bool = False, kind: int | None = None) -> np.ndarray:
    """Return the tokens of one shard as a uint16 array (a read-only memmap if ``mmap``)."""
    num_tokens = read_header(path, kind)
    if mmap:
        return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(num_tokens,))
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)
    if tokens.size != num_tokens:
        raise ShardError(f"{path}: short read, got {tokens.size} of {num_tokens} tokens")
    return tokens.astype(np.uint16, copy=False)


def write_shard(path: str | os.PathLike, tokens: np.ndarray, kind: int = TOKENS_KIND) -> None:
    """Write ``tokens`` (any integer array with values in [0, 65535]) as one shard, atomically; ``kind``
    SIDECAR_KIND for a byte sidecar."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ShardError(f"{path}: tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > MAX_TOKEN_ID):
        raise ShardError(f"{path}: token ids must lie in [0, {MAX_TOKEN_ID}] to fit uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2], header[3] = SHARD_MAGIC, SHARD_VERSION, tokens.size, kind
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)


def shard_files(pattern: str) -> list[Path]:
    """Sorted shard paths matching a glob ``pattern`` (byte sidecars only where the pattern names them);
    raises naming the pattern if there are none."""
    files = [Path(p) for p in sorted(glob.glob(pattern)) if SIDECAR_TAG in pattern or SIDECAR_TAG not in Path(p).name]
    if not files:
        raise FileNotFoundError(f"no shard files match {pattern}")
    return files


def sidecar_path(shard: str | os.PathLike) -> Path:
    """The byte sidecar's path of a token shard: ``fineweb_val_000000.bin`` -> ``fineweb_val_bytes_000000.bin``."""
    shard = Path(shard)
    stem, _, index = shard.stem.rpartition("_")
    return shard.with_name(f"{stem}{SIDECAR_TAG}{index}{shard.suffix}")


def read_sidecars(shards: list[Path]) -> np.ndarray:
    """The byte sidecars of ``shards``, concatenated; each must exist and hold one entry per token of its shard."""
    out = []
    for shard in shards:
        side = sidecar_path(shard)
        if not side.is_file():
            raise ShardError(f"{side}: the byte sidecar of {shard.name} is missing; this data counts bytes of the "
                             f"original text (CaseOps): make both with scripts/prepare_data.py --caseops")
        n, m = read_header(shard, TOKENS_KIND), read_header(side, SIDECAR_KIND)
        if n != m:
            raise ShardError(f"{side}: {m} entries for the {n} tokens of {shard.name}; they were not made together: "
                             f"make both again with scripts/prepare_data.py --caseops")
        out.append(read_shard(side, kind=SIDECAR_KIND))
    return np.concatenate(out)
