"""Floor fitting on the CPU (``golf.quant.fit.fit_floor``): seconds, real compressions and probes, and the size
estimate against the real lzma-9e size at the chosen factor. The state is synthetic: the 11 layers of the #1019
block-matrix shapes (25,952,256 Laplace weights, every row under the records' floor), RTN int6, the limit 45%
of the way from the records'-floor size to the no-floor size.

    python scripts/bench_fit_floor.py      # the installed golf; PYTHONPATH=<worktree> for another commit
"""

from __future__ import annotations

import time

import numpy as np
import torch

from golf.compress.artifact import encode_artifact
from golf.compress.codecs import Lzma
from golf.quant.fit import ByteBudget, fit_floor
from golf.quant.quantizer import Quantizer

SHAPES = {"attn.c_q": (512, 512), "attn.c_k": (256, 512), "attn.c_v": (256, 512), "attn.proj": (512, 512),
          "mlp.fc": (1536, 512), "mlp.proj": (512, 1536)}


def main() -> None:
    rng = np.random.default_rng(0)
    state = {f"blocks.{i}.{n}.weight": torch.from_numpy(rng.laplace(0, 0.008 + 0.002 * i, size=s).astype(np.float32))
             for i in range(11) for n, s in SHAPES.items()}
    quantizer = Quantizer(matrix_bits=6, method="rtn", matrix_clip_percentile=1.0, keep_float_max_numel=0)
    codec = Lzma(preset=9, extreme=True)
    ends = [len(encode_artifact(q.tensors, q.meta, codec))
            for q in (quantizer.with_floor_factor(0).quantize(state), quantizer.quantize(state))]
    limit = int(0.45 * ends[0] + 0.55 * ends[1])
    print(f"{sum(t.numel() for t in state.values()):,} parameters; no floor {ends[0]:,} B, records' floor {ends[1]:,} B; "
          f"limit {limit:,}", flush=True)
    budget = ByteBudget(limit, 0, codec)
    t0 = time.perf_counter()
    factor, info = fit_floor(state, quantizer, budget)
    seconds = time.perf_counter() - t0
    real = budget.model_bytes(quantizer.with_floor_factor(factor).quantize(state))
    est = info["estimated_model_bytes"]
    print(f"factor {factor:.4f} in {seconds:.1f}s, {info['real_compressions']} real compressions, {info['probes']} probes; "
          f"estimate {est:,} B, real {real:,} B ({est / real - 1:+.2%}); target {info['target_model_bytes']:,}")


if __name__ == "__main__":
    main()
