"""The challenge's token-shard format: a 256 x int32 little-endian header (magic 20240520, version 1,
token count) followed by the tokens as little-endian uint16.

Every error names the file, so a user with a truncated download knows which shard to fetch again.
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


class ShardError(ValueError):
    """A shard file is missing, malformed or inconsistent with its header."""


def read_header(path: str | os.PathLike) -> int:
    """Validate the header and file size of ``path``; return its token count."""
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


def read_shard(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """Return the tokens of one shard as a uint16 array (a read-only memmap if ``mmap``)."""
    num_tokens = read_header(path)
    if mmap:
        return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(num_tokens,))
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)
    if tokens.size != num_tokens:
        raise ShardError(f"{path}: short read, got {tokens.size} of {num_tokens} tokens")
    return tokens.astype(np.uint16, copy=False)


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> None:
    """Write ``tokens`` (any integer array with values in [0, 65535]) as one shard, atomically."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ShardError(f"{path}: tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > MAX_TOKEN_ID):
        raise ShardError(f"{path}: token ids must lie in [0, {MAX_TOKEN_ID}] to fit uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, tokens.size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)


def shard_files(pattern: str) -> list[Path]:
    """Sorted shard paths matching a glob ``pattern``; raises naming the pattern if there are none."""
    files = [Path(p) for p in sorted(glob.glob(pattern))]
    if not files:
        raise FileNotFoundError(f"no shard files match {pattern}")
    return files
