"""Lossless byte codecs for the artifact (techniques.md §6): zlib, zstd, lzma, brotli and raw, each
optionally behind #1089's byte shuffle. A codec's ``name`` (e.g. ``brotli`` or ``brotli+shuffle``) is written
into the artifact header, so a file is decoded without knowing the config that wrote it.

Byte shuffle (stride s): bytes at offsets i = 0 mod s first, then 1 mod s, ...; with s = 2 the high and low
bytes of fp16 scales and int8-in-int16 payloads group together, which compresses better. The shuffled
stream is b"BSHF" + one stride byte + the permuted bytes, #1089's format byte for byte.
"""

from __future__ import annotations

import lzma
import zlib

import numpy as np

SHUFFLE_MAGIC = b"BSHF"


def byte_shuffle(data: bytes, stride: int = 2) -> bytes:
    if not 2 <= stride <= 255:
        raise ValueError(f"compressor.shuffle stride must be in 2..255 (0: off), got {stride}")
    src = np.frombuffer(data, dtype=np.uint8)
    out = np.concatenate([src[pos::stride] for pos in range(stride)]) if src.size else src
    return SHUFFLE_MAGIC + bytes([stride]) + out.tobytes()


def byte_unshuffle(data: bytes) -> bytes:
    if data[:4] != SHUFFLE_MAGIC or len(data) < 5:
        raise ValueError("byte-shuffled payload lacks its BSHF header")
    stride = data[4]
    src = np.frombuffer(data, dtype=np.uint8, offset=5)
    out = np.empty_like(src)
    start = 0
    for pos in range(stride):
        n = len(range(pos, src.size, stride))
        out[pos::stride] = src[start : start + n]
        start += n
    return out.tobytes()


class Codec:
    """One compressor: ``compress``/``decompress`` bytes; ``shuffle`` > 1 byte-shuffles before compressing."""

    base = "raw"

    def __init__(self, *, shuffle: int = 0):
        if shuffle not in (0, 1):
            byte_shuffle(b"", shuffle)  # validates the stride
        self.shuffle = shuffle if shuffle > 1 else 0
        self.name = self.base + ("+shuffle" if self.shuffle else "")

    def compress(self, data: bytes) -> bytes:
        return self._compress(byte_shuffle(data, self.shuffle) if self.shuffle else bytes(data))

    def decompress(self, data: bytes) -> bytes:
        return decompress(self.name, data)

    def fast(self) -> Codec:
        """A much faster codec of the same family (budget fitting estimates sizes with it)."""
        return self

    def _compress(self, data: bytes) -> bytes:
        return data

    @staticmethod
    def _decompress(data: bytes) -> bytes:
        return bytes(data)


class Raw(Codec):
    base = "raw"


class Zlib(Codec):
    base = "zlib"

    def __init__(self, *, level: int = 9, shuffle: int = 0):
        if not 0 <= level <= 9:
            raise ValueError(f"compressor.level for zlib must be in 0..9, got {level}")
        super().__init__(shuffle=shuffle)
        self.level = level

    def fast(self) -> Codec:
        return Zlib(level=1, shuffle=self.shuffle)

    def _compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    @staticmethod
    def _decompress(data: bytes) -> bytes:
        return zlib.decompress(data)


class Zstd(Codec):
    base = "zstd"

    def __init__(self, *, level: int = 22, threads: int = 0, shuffle: int = 0):
        import zstandard

        if not 1 <= level <= 22:
            raise ValueError(f"compressor.level for zstd must be in 1..22, got {level}")
        super().__init__(shuffle=shuffle)
        self.level, self.threads = level, threads
        self._zstd = zstandard

    def fast(self) -> Codec:
        return Zstd(level=3, threads=self.threads, shuffle=self.shuffle)

    def _compress(self, data: bytes) -> bytes:
        return self._zstd.ZstdCompressor(level=self.level, threads=self.threads).compress(data)

    @staticmethod
    def _decompress(data: bytes) -> bytes:
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data)


class Lzma(Codec):
    base = "lzma"

    def __init__(self, *, preset: int = 9, extreme: bool = False, shuffle: int = 0):
        if not 0 <= preset <= 9:
            raise ValueError(f"compressor.preset for lzma must be in 0..9, got {preset}")
        super().__init__(shuffle=shuffle)
        self.preset = preset | (lzma.PRESET_EXTREME if extreme else 0)

    def fast(self) -> Codec:
        return Lzma(preset=1, shuffle=self.shuffle)

    def _compress(self, data: bytes) -> bytes:
        return lzma.compress(data, preset=self.preset)

    @staticmethod
    def _decompress(data: bytes) -> bytes:
        return lzma.decompress(data)


class Brotli(Codec):
    base = "brotli"

    def __init__(self, *, quality: int = 11, lgwin: int = 24, shuffle: int = 0):
        import brotli

        if not 0 <= quality <= 11 or not 10 <= lgwin <= 24:
            raise ValueError(f"compressor.quality must be in 0..11 and compressor.lgwin in 10..24, got {quality}, {lgwin}")
        super().__init__(shuffle=shuffle)
        self.quality, self.lgwin = quality, lgwin
        self._brotli = brotli

    def fast(self) -> Codec:
        return Brotli(quality=5, lgwin=self.lgwin, shuffle=self.shuffle)

    def _compress(self, data: bytes) -> bytes:
        return self._brotli.compress(data, quality=self.quality, lgwin=self.lgwin)

    @staticmethod
    def _decompress(data: bytes) -> bytes:
        import brotli

        return brotli.decompress(data)


DECODERS = {c.base: c._decompress for c in (Zlib, Zstd, Lzma, Brotli, Raw)}


def _pergroup(data: bytes) -> bytes:
    from golf.compress.pergroup import PerGroup  # imports this module: looked up at decode time

    return PerGroup._decompress(data)


DECODERS["pergroup"] = _pergroup


def decompress(name: str, data: bytes) -> bytes:
    """Decode by the name an artifact header carries: ``<codec>`` or ``<codec>+shuffle``."""
    base, _, transform = name.partition("+")
    if base not in DECODERS or transform not in ("", "shuffle"):
        raise ValueError(f"unknown codec {name!r} in artifact header; known: {sorted(DECODERS)} (optionally +shuffle)")
    out = DECODERS[base](data)
    return byte_unshuffle(out) if transform else out
