"""Which fast codec should floor fitting probe with (CPU): seconds per probe of a 25M-entry int6 payload, and how
far each codec's size, mapped affinely between the real lzma-9e sizes at floor factors 0 and 1, misses lzma-9e
at the factors in between (8,192 x 3,072 Laplace weights, every row under the records' floor).

    python scripts/bench_probe_codec.py
"""

from __future__ import annotations

import lzma
import time
import zlib

import numpy as np
import torch

from golf.quant.grid import quantize_rows, row_clip

FACTORS = (0.0, 0.125, 0.25, 0.5, 1.0)
PROBES = {"lzma-1": lambda d: lzma.compress(d, preset=1), "zlib-1": lambda d: zlib.compress(d, 1)}


def payload(w: torch.Tensor, clip: torch.Tensor, factor: float) -> bytes:
    q, s = quantize_rows(w, clip, 31, floor=max(factor / 31, 1e-7))
    return q.numpy().tobytes() + s.numpy().tobytes()


def main() -> None:
    w = torch.from_numpy(np.random.default_rng(0).laplace(0, 0.012, size=(8192, 3072)).astype(np.float32))
    data = {f: payload(w, row_clip(w, 1.0), f) for f in FACTORS}
    real = {}
    for f in FACTORS:
        t0 = time.perf_counter()
        real[f] = len(lzma.compress(data[f], preset=9 | lzma.PRESET_EXTREME))
        print(f"lzma-9e at factor {f}: {real[f]:,} B in {time.perf_counter() - t0:.1f}s", flush=True)
    print("\n| probe codec | seconds per probe | estimate error at " + " / ".join(map(str, FACTORS[1:-1])) + " |\n|---|---|---|")
    for name, compress in PROBES.items():
        t0 = time.perf_counter()
        fast = {f: len(compress(data[f])) for f in FACTORS}
        seconds = (time.perf_counter() - t0) / len(FACTORS)
        slope = (real[0.0] - real[1.0]) / (fast[0.0] - fast[1.0])
        errors = [(real[1.0] + slope * (fast[f] - fast[1.0])) / real[f] - 1 for f in FACTORS[1:-1]]
        print(f"| {name} | {seconds:.2f} | " + " / ".join(f"{e:+.2%}" for e in errors) + " |")


if __name__ == "__main__":
    main()
