"""Where a training step's time goes: GPU time by kernel family (attention, matmul, fused elementwise and
norms, optimizer, copies, communication) over profiled steps, the forward+backward / optimizer split from
CUDA events, the slowest kernels, and the GPU's idle time between kernels (launch gaps: what CUDA graphs or
fewer host syncs could win), by the kernel the GPU was waiting to start. With ``--host`` it also records the
host and lists the host ops (with their threads) that ran while the GPU sat idle for 100 us or more.

    python scripts/profile_step.py "model=xsa_all optimizer=parallel_muon data=enwiki_sp1024" --steps 5 --warmup 3

Runs golf's own model, optimizer and loader at the config's batch geometry (compiled, bf16 autocast), at
the peak learning rate, on one CUDA device.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = (  # first match wins; names are lower-cased CUDA kernel names
    ("golf kernels (triton)", ("_qk_norm_rope", "_xsa_")),
    ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "wgmma", "cublas", "matmul")),
    ("fused elementwise + norms (triton)", ("triton",)),
    ("optimizer (foreach / fused Adam)", ("multi_tensor", "foreach", "fused_adam", "adam")),
    ("communication", ("nccl", "allreduce", "reduce_scatter", "allgather")),
    ("copies / casts (eager)", ("copy", "memcpy", "memset", "cat", "fill")),
)


def family(name: str) -> str:
    low = name.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return "other"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", help="golf overrides, one string")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--record", type=Path, help="also profile a record's own GPT (forward+backward) on the same batches")
    p.add_argument("--record-env", action="append", default=[], help="KEY=VALUE for the record's Hyperparameters")
    p.add_argument("--dump-kernels", type=Path, help="write the Triton source of the slowest golf kernels here")
    p.add_argument("--host", action="store_true", help="also record host activity and list the host ops that were "
                   "running while the GPU sat idle for 100 us or more")
    a = p.parse_args(argv)
    from scripts.bench import build_on_cuda

    g = build_on_cuda(shlex.split(a.overrides) + ["logger=none"])
    tc, accum = g.tc, g.tc.grad_accum(1)
    ctx = (lambda: torch.autocast("cuda", dtype=g.autocast)) if g.autocast else nullcontext
    split = defaultdict(list)
    from golf.trainer import graph_hooks

    start, zero_grad = graph_hooks(g.model, g.optimizer, tc, g.device)  # as golf.trainer, for CUDA-graph modes
    step = make_step(g.compiled, g.loader, tc, accum, ctx, g.optimizer, split, zero_grad, start)
    prof = run_profiled(step, a.warmup, a.steps, split, host=a.host)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; golf: {a.overrides}")
    report(prof, split, a.steps, a.top, tc.batch_tokens, accum)
    if a.host:
        report_host(prof, a.steps, a.top)
        launches = sum(ev.name == "cudaGraphLaunch" for ev in prof.events())
        print(f"\nCUDA graph launches: {launches / a.steps:.0f} per step")
    if a.dump_kernels:
        dump_kernels(prof, a.dump_kernels, a.top)
    if a.record:
        from scripts.compare_record import import_record, record_model

        mod = import_record(a.record, dict(e.split("=", 1) for e in a.record_env))
        ref = record_model(mod, int(g.cfg.seed)).to(g.device).bfloat16()
        for name, prm in ref.named_parameters():  # the records' casting: banks, CastedLinear, low-dim in fp32
            if name.endswith("_bank") or prm.ndim < 2 or any(k in name for k in mod.CONTROL_TENSOR_NAME_PATTERNS):
                prm.data = prm.data.float()
        for m in ref.modules():
            if isinstance(m, mod.CastedLinear):
                m.float()
        ref_split = defaultdict(list)
        bf16 = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
        record_step = make_step(torch.compile(ref, dynamic=False, fullgraph=True), g.loader, tc, accum, bf16, None,
                                ref_split, lambda: ref.zero_grad(set_to_none=True))
        print(f"\nthe record's own GPT ({a.record.name}), forward+backward only")
        report(run_profiled(record_step, a.warmup, a.steps, ref_split), ref_split, a.steps, a.top, tc.batch_tokens, accum)


def make_step(call, loader, tc, accum: int, ctx, optimizer, split: dict, zero_grad, start=lambda: None):
    """One training step (forward+backward of every micro-batch, each after ``start()``, then the optimizer if
    given, then ``zero_grad()``), timed with CUDA events into ``split``."""
    def step() -> None:
        e = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        e[0].record()
        for _ in range(accum):
            x, y = loader.next_batch(tc.batch_tokens, tc.seq_len, accum)
            start()
            with ctx():
                loss = call(x, y)
            loader.prefetch(tc.batch_tokens, tc.seq_len, accum)  # as golf.trainer does
            (loss / accum).backward()
        e[1].record()
        if optimizer is not None:
            optimizer.step()
        zero_grad()
        e[2].record()
        torch.cuda.synchronize()
        split["forward+backward"].append(e[0].elapsed_time(e[1]))
        if optimizer is not None:
            split["optimizer"].append(e[1].elapsed_time(e[2]))
    return step


def run_profiled(step, warmup: int, steps: int, split: dict, host: bool = False):
    for _ in range(warmup):
        step()
    split.clear()
    torch.cuda.reset_peak_memory_stats()
    activities = [torch.profiler.ProfilerActivity.CUDA] + ([torch.profiler.ProfilerActivity.CPU] if host else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    return prof


def kernel_times(prof) -> dict[str, list]:
    """GPU microseconds and calls of each CUDA kernel name over the profiled steps."""
    by_kernel = defaultdict(lambda: [0.0, 0])
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            by_kernel[ev.name][0] += ev.device_time if hasattr(ev, "device_time") else ev.cuda_time
            by_kernel[ev.name][1] += 1
    return by_kernel


def report(prof, split: dict, steps: int, top: int, batch_tokens: int, accum: int) -> None:
    by_kernel, by_family = kernel_times(prof), defaultdict(float)
    for name, (us, _) in by_kernel.items():
        by_family[family(name)] += us
    total = sum(by_family.values())
    a_steps, a_top = steps, top
    print(f"{steps} profiled steps of {batch_tokens:,} tokens (grad accum {accum}); peak "
          f"{torch.cuda.max_memory_allocated() // 2**20} MiB")
    for k, v in split.items():
        print(f"  {k}: median {statistics.median(v):.1f} ms per step (CUDA events)")
    print("\n| kernel family | GPU ms per step | share |\n|---|---|---|")
    for fam, us in sorted(by_family.items(), key=lambda kv: -kv[1]):
        print(f"| {fam} | {us / 1000 / a_steps:.1f} | {100 * us / total:.1f}% |")
    print(f"| total GPU time | {total / 1000 / a_steps:.1f} | |")
    print("\n| top kernels | ms per step | calls per step | family |\n|---|---|---|---|")
    for name, (us, n) in sorted(by_kernel.items(), key=lambda kv: -kv[1][0])[: a_top]:
        print(f"| {name[:150]} | {us / 1000 / a_steps:.2f} | {n // a_steps} | {family(name)} |")
    report_idle(prof, steps, top)


def _gaps(prof) -> list[tuple[float, float, str]]:
    """The GPU's idle intervals between kernels (and copies) over the profiled steps: (start, end, the kernel that
    ended it), in microseconds."""
    spans = sorted((ev.time_range.start, ev.time_range.end, ev.name) for ev in prof.events()
                   if ev.device_type == torch.autograd.DeviceType.CUDA)
    gaps, busy_until = [], spans[0][1] if spans else 0.0
    for start, end, name in spans[1:]:
        if start > busy_until:
            gaps.append((busy_until, start, name))
        busy_until = max(busy_until, end)
    return gaps


def idle_gaps(prof) -> tuple[dict[str, list], list[float]]:
    """Idle microseconds and gaps by the name of the kernel that ended each gap, and every gap's length."""
    by_next, lengths = defaultdict(lambda: [0.0, 0]), []
    for start, end, name in _gaps(prof):
        lengths.append(end - start)
        by_next[name][0] += lengths[-1]
        by_next[name][1] += 1
    return by_next, lengths


def host_during_gaps(prof, min_us: float = 100.0) -> tuple[dict[tuple[str, int], float], float]:
    """Microseconds of each host op (name, thread), nested ones included, that overlap the GPU's idle gaps of at
    least ``min_us``, and those gaps' total."""
    gaps = [(g0, g1) for g0, g1, _ in _gaps(prof) if g1 - g0 >= min_us]
    overlap = defaultdict(float)
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CPU:
            continue
        for g0, g1 in gaps:
            o = min(e.time_range.end, g1) - max(e.time_range.start, g0)
            if o > 0:
                overlap[(e.name, e.thread)] += o
    return overlap, sum(g1 - g0 for g0, g1 in gaps)


def report_host(prof, steps: int, top: int) -> None:
    overlap, total = host_during_gaps(prof)
    print(f"\nhost ops while the GPU idled (gaps of 100 us or more: {total / 1000 / steps:.1f} ms per step)")
    print("| host op | thread | ms per step inside those gaps |\n|---|---|---|")
    for (name, thread), us in sorted(overlap.items(), key=lambda kv: -kv[1])[: 2 * top]:
        print(f"| {name[:120]} | {thread} | {us / 1000 / steps:.2f} |")


def report_idle(prof, steps: int, top: int) -> None:
    by_next, gaps = idle_gaps(prof)
    edges = (0, 5, 20, 100, 1000, float("inf"))
    print(f"\nGPU idle between kernels: {sum(gaps) / 1000 / steps:.1f} ms per step in {len(gaps) // steps} gaps")
    print("| gap length | gaps per step | idle ms per step |\n|---|---|---|")
    for lo, hi in zip(edges, edges[1:]):
        sel = [g for g in gaps if lo <= g < hi]
        print(f"| {lo}-{hi} us | {len(sel) / steps:.0f} | {sum(sel) / 1000 / steps:.2f} |")
    print("\n| the GPU idled before | idle ms per step | gaps per step |\n|---|---|---|")
    for name, (us, n) in sorted(by_next.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {name[:150]} | {us / 1000 / steps:.2f} | {n / steps:.1f} |")


def dump_kernels(prof, out: Path, top: int) -> None:
    """Copy the generated source of the ``top`` slowest Triton kernels out of inductor's cache (one file each,
    named as the profiler names the kernel), to read what a slow fused kernel loads and how it is tiled."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    triton = [(n, us) for n, (us, _) in kernel_times(prof).items() if n.startswith("triton_")]
    wanted = {n for n, _ in sorted(triton, key=lambda kv: -kv[1])[:top]}
    out.mkdir(parents=True, exist_ok=True)
    for src in Path(cache_dir()).rglob("*.py"):
        text = src.read_text(errors="replace")
        for name in [n for n in wanted if f"def {n}(" in text]:
            (out / f"{name[:120]}.py").write_text(f"# {src}\n{text}")
            wanted.discard(name)
    print(f"kernel sources in {out}" + (f"; not found in {cache_dir()}: {sorted(wanted)}" if wanted else ""))


if __name__ == "__main__":
    main()
