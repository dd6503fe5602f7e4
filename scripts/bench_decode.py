"""Seconds of #1019-style AR calibration decoding (64 x 2048 tokens by default) per decode mode, on CUDA, and a
profile of the graph-replayed step's kernels, so the 10 s goal of issue 6 can be checked and its time located.

    python scripts/bench_decode.py "experiment=pr1019 data=enwiki_sp1024" --modes graph,eager [--weights w.safetensors]

Weights do not change decoding time; random initial weights decode the same shapes. Each mode runs the full
decode once (``--sequences`` x ``--seq-len``) and reports seconds and ms per position; when both run, the
graph mode's sequences are compared with the static mode's (same seed; in bf16 a near-tie can flip a sample).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("golf", help="golf overrides, e.g. 'experiment=pr1019'")
    p.add_argument("--modes", default="graph,static,eager")
    p.add_argument("--sequences", type=int, default=64)
    p.add_argument("--batch-seqs", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--weights", type=Path)
    p.add_argument("--profile-steps", type=int, default=20, help="graph replays under torch.profiler (0: none)")
    a = p.parse_args(argv)
    from golf.calibration.generate import generate
    from golf.stages.training import load_weights
    from scripts.bench import build_on_cuda

    g = build_on_cuda(shlex.split(a.golf) + ["logger=none"])
    if a.weights:
        load_weights(g.model, a.weights)
    shares = [(b, min(a.batch_seqs, a.sequences - b * a.batch_seqs)) for b in range(-(-a.sequences // a.batch_seqs))]
    rows, tokens = [], {}
    for mode in a.modes.split(","):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        tokens[mode] = generate(g.model, shares, a.seq_len, 0.8, seed=1, device=g.device, autocast_dtype=g.autocast, mode=mode)
        torch.cuda.synchronize()
        s = time.perf_counter() - t0
        rows.append((mode, s, 1000 * s / (a.seq_len - 1)))
        print(f"{mode}: {s:.1f}s", flush=True)
    if "graph" in tokens and "static" in tokens:
        same = (tokens["graph"] == tokens["static"]).all(dim=1).float().mean().item()
        print(f"graph vs static: {same:.0%} of sequences identical (bf16; a near-tie can flip one sample)")
    print(f"\n{torch.cuda.get_device_name(0)}; {a.sequences} sequences x {a.seq_len} tokens, batches of {a.batch_seqs}")
    print("| decode mode | seconds | ms per position |\n|---|---|---|")
    for mode, s, ms in rows:
        print(f"| {mode} | {s:.1f} | {ms:.2f} |")
    if a.profile_steps:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            generate(g.model, shares, a.profile_steps + 3, 0.8, seed=1, device=g.device, autocast_dtype=g.autocast,
                     mode="graph")
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
