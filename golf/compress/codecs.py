"""Lossless byte codecs for the artifact. Each has a short ``name`` written into the artifact header,
so a file is decoded without knowing the config that wrote it."""

from __future__ import annotations

import lzma
import zlib


class Zlib:
    name = "zlib"

    def __init__(self, *, level: int = 9):
        if not 0 <= level <= 9:
            raise ValueError(f"compressor.level for zlib must be in 0..9, got {level}")
        self.level = level

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return zlib.decompress(data)


class Zstd:
    name = "zstd"

    def __init__(self, *, level: int = 22, threads: int = 0):
        import zstandard

        if not 1 <= level <= 22:
            raise ValueError(f"compressor.level for zstd must be in 1..22, got {level}")
        self.level, self.threads = level, threads
        self._zstd = zstandard

    def compress(self, data: bytes) -> bytes:
        return self._zstd.ZstdCompressor(level=self.level, threads=self.threads).compress(data)

    @staticmethod
    def decompress(data: bytes) -> bytes:
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data)


class Lzma:
    name = "lzma"

    def __init__(self, *, preset: int = 9, extreme: bool = False):
        if not 0 <= preset <= 9:
            raise ValueError(f"compressor.preset for lzma must be in 0..9, got {preset}")
        self.preset = preset | (lzma.PRESET_EXTREME if extreme else 0)

    def compress(self, data: bytes) -> bytes:
        return lzma.compress(data, preset=self.preset)

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return lzma.decompress(data)


class Raw:
    name = "raw"

    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return bytes(data)


DECODERS = {c.name: c.decompress for c in (Zlib, Zstd, Lzma, Raw)}


def decompress(name: str, data: bytes) -> bytes:
    if name not in DECODERS:
        raise ValueError(f"unknown codec {name!r} in artifact header; known: {sorted(DECODERS)}")
    return DECODERS[name](data)
