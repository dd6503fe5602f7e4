"""Sliding-window evaluation throughput: a record's own ``eval_val_sliding`` beside golf's, same weights, same
validation tokens, one device. Each side runs twice; the first call includes compilation, the second is the
throughput (scored tokens per second).

    python scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
        --record-env BIGRAM_DIM=112 --golf "model=xsa_all data=enwiki_sp1024" [--weights weights.safetensors]

Same weights: both models are built from the same seed (golf's presets reproduce the records' initial weights
bit for bit), or golf's saved weights (``train.save_weights``) are loaded and copied into the record's banks.
golf is scored twice: exactly once per target, and with the records' windows (their tail re-scored), which is
the number to put beside the record's. ``--compile-modes default,max-autotune-no-cudagraphs`` adds a row per
further torch.compile mode (``eval.sliding.compile_mode``); ``--profile N`` then prints GPU time by kernel family
over N batches of the first mode. Without ``--record`` golf is timed alone (e.g. a second windows-per-batch
setting in the same device call as a run that has the record).
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


def to_record(state: dict[str, torch.Tensor], ref_state: dict[str, torch.Tensor], num_layers: int) -> dict:
    """golf's per-layer state as the record's banked state dict (the inverse of compare_record's mapping)."""
    from scripts.compare_record import BANKS

    out = dict(ref_state)
    for bank, names in BANKS.items():
        if bank in ref_state:
            out[bank] = torch.cat([torch.stack([state[f"blocks.{i}.{n}.weight"] for i in range(num_layers)]) for n in names])
    for k in ref_state:
        if k not in BANKS:
            g = k.replace("ve_shared.", "ve.")
            g = g.replace("bigram.", "engram.") if "ngram_gate" in "".join(ref_state) and k.startswith("bigram.") else g
            if g in state:
                out[k] = state[g].to(ref_state[k].dtype)
    return out


def timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def profile_batches(g, val_t: torch.Tensor, lut, a, mode: str) -> None:
    """GPU time by kernel family over ``a.profile`` batches of golf's sliding eval, all of the compiled (tail)
    shape: windows 1.. (window 0's batch runs eagerly), after a warm-up; then wall time per batch beside GPU
    time per batch, whose difference is the GPU's idle time between kernels."""
    from golf.eval.sliding import SlidingEvaluator
    from scripts.profile_step import kernel_times, report

    B = a.golf_batch_windows or a.batch_windows
    ev = SlidingEvaluator(window=a.window, stride=a.stride, batch_windows=B, compile_mode=mode)
    starts, first, end = ev.windows(val_t.numel() - 1)
    part = tuple(t[1 : 1 + B * a.profile] for t in (starts, first, end))
    ev.score(g.model, val_t, lut, part, g.autocast)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        ev.score(g.model, val_t, lut, part, g.autocast)
        torch.cuda.synchronize()
    report(prof, {}, a.profile, 20, B * a.window, 1)
    wall, _ = timed(lambda: ev.score(g.model, val_t, lut, part, g.autocast))
    gpu_ms = sum(us for us, _ in kernel_times(prof).values()) / 1e3 / a.profile
    print(f"per batch: wall {wall * 1e3 / a.profile:.2f} ms, GPU busy {gpu_ms:.2f} ms (unprofiled wall; profiled GPU)")


def timed_record(a, g, val_t, sp, n: int) -> tuple[str, tuple]:
    """The record's eval_val_sliding on golf's weights, timed twice (compile, then steady): its table row."""
    from scripts.compare_record import import_record, record_model

    mod = import_record(a.record, dict(e.split("=", 1) for e in a.record_env))
    args = mod.Hyperparameters()
    ref = record_model(mod, int(g.cfg.seed))
    ref.load_state_dict(to_record({k: v.float().cpu() for k, v in g.model.export_state_dict().items()},
                                  ref.state_dict(), len(g.model.blocks)))
    ref = ref.to(g.device).bfloat16()
    for name, prm in ref.named_parameters():  # the record's main(): banks, CastedLinear and low-dim in fp32
        if name.endswith("_bank") or prm.ndim < 2 or any(k in name for k in mod.CONTROL_TENSOR_NAME_PATTERNS):
            prm.data = prm.data.float()
    for m in ref.modules():
        if isinstance(m, mod.CastedLinear):
            m.float()
    luts = mod.build_sentencepiece_luts(sp, args.vocab_size, g.device)

    def record_eval():
        return mod.eval_val_sliding(args, ref, 0, 1, g.device, val_t.long(), *luts, stride=a.stride,
                                    batch_seqs=a.batch_windows, eval_seq_len=a.window)

    t1, _ = timed(record_eval)
    t2, (_loss, bpb) = timed(record_eval)
    print(f"record: first {t1:.1f}s, second {t2:.1f}s, val_bpb {bpb:.6f}", flush=True)
    label = "record's eval_val_sliding" + (" (FA3 stand-in: SDPA flash, K/V repeated)" if mod.GOLF_FA3_STAND_IN else " (FA3)")
    return label, (t1 - t2, None, bpb, None, t2)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", type=Path, help="the record's train_gpt.py to set beside golf (omitted: golf only)")
    p.add_argument("--record-env", action="append", default=[])
    p.add_argument("--golf", default="model=xsa_all data=enwiki_sp1024")
    p.add_argument("--weights", type=Path)
    p.add_argument("--window", type=int, default=2048)
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--batch-windows", type=int, default=32, help="windows per batch, the record's and golf's")
    p.add_argument("--golf-batch-windows", type=int, default=0, help="golf's windows per batch (0: --batch-windows)")
    p.add_argument("--val-tokens", type=int, default=0, help="score only this many targets (0: all)")
    p.add_argument("--compile-modes", default="default",
                   help="golf's torch.compile modes to time, comma-separated (eval.sliding.compile_mode)")
    p.add_argument("--records-windows-row", action=argparse.BooleanOptionalAction, default=True,
                   help="also score golf with the records' windows (their tail re-scored)")
    p.add_argument("--profile", type=int, default=0, help="then profile this many batches of golf's first mode")
    a = p.parse_args(argv)
    from golf.data.shards import read_shard, shard_files
    from golf.data.tokenizer import byte_lut, load_sentencepiece
    from golf.eval.bpb import LutOnDevice, TargetBytes
    from golf.eval.sliding import SlidingEvaluator
    from golf.stages.training import load_weights
    from scripts.bench import build_on_cuda

    g = build_on_cuda(shlex.split(a.golf) + ["logger=none"])
    if a.weights:
        load_weights(g.model, a.weights)
    paths = g.parts["data"].prepare()
    import numpy as np

    val = np.concatenate([read_shard(f) for f in shard_files(paths.val_pattern)])
    n = a.val_tokens or (val.size - 1)
    val_t = torch.from_numpy(val[: n + 1].astype(np.int32)).to(g.device)
    sp = load_sentencepiece(paths.tokenizer)
    lut = TargetBytes.of_lut(LutOnDevice(byte_lut(sp, g.model.vocab_size), g.device), val_t)
    record_row = timed_record(a, g, val_t, sp, n) if a.record else None  # first: every golf mode is set beside it
    rows, modes = {}, a.compile_modes.split(",")
    runs = [("golf (every target once)", False, modes[0])]
    runs += [("golf (the records' windows)", True, modes[0])] if a.records_windows_row else []
    runs += [(f"golf (every target once, compile_mode={m})", False, m) for m in modes[1:]]
    for i, (label, tail, mode) in enumerate(runs):
        ev = SlidingEvaluator(window=a.window, stride=a.stride, batch_windows=a.golf_batch_windows or a.batch_windows,
                              reproduce_record_tail=tail, compile_mode=mode)
        fresh = i == 0 or mode != runs[i - 1][2]  # a new mode compiles afresh; the same mode reuses hidden()'s graph
        if fresh and i:
            torch._dynamo.reset()
        try:
            t1, r1 = timed(lambda ev=ev: ev.evaluate(g.model, val_t, lut, autocast_dtype=g.autocast))
            t2, r2 = timed(lambda ev=ev: ev.evaluate(g.model, val_t, lut, autocast_dtype=g.autocast))
        except Exception as e:  # a further mode that fails must not cost the rows and the profile before it
            if mode == modes[0]:
                raise
            print(f"{label}: failed: {e!r}", flush=True)
            continue
        rows[label] = (t1 - t2 if fresh else None, r2.tokens / t2, r2.val_bpb, r2.tokens, t2)
        print(f"{label}: first {t1:.1f}s, second {t2:.1f}s, {r2.tokens / t2:,.0f} tokens/s, val_bpb {r2.val_bpb:.6f}", flush=True)
        if a.profile and mode == modes[0] and (i + 1 == len(runs) or runs[i + 1][2] != mode):
            profile_batches(g, val_t, lut, a, mode)  # while the first mode's graph is still compiled
    if record_row:
        rows[record_row[0]] = record_row[1]
    print(f"\n{torch.cuda.get_device_name(0)}; {n:,} targets, window {a.window}, stride {a.stride}, windows per batch: "
          f"record {a.batch_windows if a.record else '-'}, golf {a.golf_batch_windows or a.batch_windows}")
    print("| evaluator | compile s (1st - 2nd call) | eval s | scored tokens/s | val_bpb |\n|---|---|---|---|---|")
    for k, (comp, tps, bpb_, _tok, t) in rows.items():
        tps = tps if tps is not None else n / t  # the record scores every target (plus its tail again) per call
        comp_s = f"{comp:.1f}" if comp is not None else "(compiled above)"
        print(f"| {k} | {comp_s} | {t:.1f} | {tps:,.0f} | {bpb_:.6f} |")
    if a.record:
        print(f"(the record's windows: {len(range(0, n, a.stride)):,}; its per-call target count includes the re-scored tail)")


if __name__ == "__main__":
    main()
