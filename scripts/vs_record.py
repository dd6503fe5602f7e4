"""Train a record's own ``train_gpt.py`` and a golf configuration for the same number of steps from the same
seed on the same data, one after the other on this machine, and compare step time, memory and val_bpb.

    python scripts/vs_record.py --record .bench/r1019_train_gpt.py --steps 150 --seed 314 \
        --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --record-env WARMDOWN_ITERS=100 \
        --golf "model=xsa_all optimizer=parallel_muon schedule=warmdown_3500 schedule.warmdown_iters=100" \
        --data data/enwiki_sp1024 --out runs/vs1019

The record runs under ``torchrun --standalone --nproc_per_node=1`` with ITERATIONS=steps, no wallclock cap,
a log line per step, in its own directory; it is stopped once it has printed its post-EMA diagnostic (later
stages, e.g. its AR calibration, are not compared here). Without FlashAttention-3 a stand-in
``flash_attn_interface`` runs SDPA's flash kernel with K/V repeated to the query heads (as
reference-measurements.md did; without forcing the kernel a compiled graph picks cuDNN).
golf runs through ``python -m golf.train`` with the same steps, warm-up steps and seed. Step times are
medians over steps ``--from-step``..steps of per-step times (both sides synchronise every step).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FA3_STAND_IN = '''"""Stand-in for FlashAttention-3's flash_attn_func: SDPA's flash kernel (forced inside the call, which a
compiled graph honours) with K/V repeated to the query heads."""
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def flash_attn_func(q, k, v, causal=True):
    g = q.size(2) // k.size(2)
    if g > 1:
        k, v = k.repeat_interleave(g, dim=2), v.repeat_interleave(g, dim=2)
    backends = [SDPBackend.FLASH_ATTENTION] if q.is_cuda else [SDPBackend.MATH]
    with sdpa_kernel(backends):
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
    return out.transpose(1, 2)
'''
STEP = re.compile(r"^step:(\d+)/\d+ train_loss:([\d.naninf]+) train_time:(\d+)ms")
VAL = re.compile(r"^step:(\d+)/\d+ val_loss:([\d.]+) val_bpb:([\d.]+)")
DIAG = re.compile(r"DIAGNOSTIC post_ema val_loss:([\d.]+) val_bpb:([\d.]+)")
PEAK = re.compile(r"peak memory allocated: (\d+) MiB")


def run_record(script: Path, env: dict[str, str], workdir: Path, timeout: float) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        import flash_attn_interface  # noqa: F401
        stand_in = False
    except ImportError:
        (workdir / "flash_attn_interface.py").write_text(FA3_STAND_IN)
        stand_in = True
    full_env = dict(os.environ, PYTHONPATH=f"{workdir}:{os.environ.get('PYTHONPATH', '')}", PYTHONUNBUFFERED="1", **env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(script.resolve())]
    log = (workdir / "stdout.txt").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {"steps": [], "losses": [], "val": None, "diag": None, "peak_mib": None, "fa3_stand_in": stand_in}
    try:
        for line in proc.stdout:
            log.write(line)
            if m := STEP.match(line):
                out["steps"].append(int(m[3]))
                out["losses"].append(float(m[2]))
            elif m := VAL.match(line):
                out["val"] = {"val_loss": float(m[2]), "val_bpb": float(m[3])}
            elif m := PEAK.search(line):
                out["peak_mib"] = int(m[1])
            elif m := DIAG.search(line):
                out["diag"] = {"val_loss": float(m[1]), "val_bpb": float(m[2])}
                break
            if time.perf_counter() - t0 > timeout:
                out["error"] = f"timed out after {timeout:.0f}s"
                break
    finally:
        proc.kill()
        proc.wait()
        log.close()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    times = out.pop("steps")
    out["step_ms"] = [b - a for a, b in zip([0, *times[:-1]], times)]
    return out


def run_golf(overrides: list[str], run_dir: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "golf.train", *overrides, "logger=none", f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    with (run_dir.parent / f"{run_dir.name}.stdout.txt").open("w") as log:
        try:
            p = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
            code = p.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    res = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
    av = res.get("averaging") or {}
    return {"exit": code, "seconds": round(time.perf_counter() - t0, 1), "step_ms": res.get("step_ms", []),
            "losses": res.get("train_loss", []), "val": (av.get("candidates") or {}).get("raw") or res.get("val", {}).get("prequant"),
            "candidates": av.get("candidates"), "peak_mib": res.get("peak_memory_mib"), "status": res.get("status"),
            "error": res.get("error"), "qat": res.get("qat"), "averaging": av}


def median_from(step_ms: list[float], first: int) -> float | None:
    tail = step_ms[first - 1:]
    return round(statistics.median(tail), 1) if tail else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", type=Path, required=True)
    p.add_argument("--record-env", action="append", default=[], help="KEY=VALUE for the record (repeatable)")
    p.add_argument("--golf", action="append", default=[], help='"label:overrides" for golf (repeatable)')
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=314)
    p.add_argument("--batch-tokens", type=int, default=786_432)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--from-step", type=int, default=25)
    p.add_argument("--data", type=Path, default=ROOT / "data/enwiki_sp1024")
    p.add_argument("--tokenizer", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--record-timeout", type=float, default=300)
    p.add_argument("--golf-timeout", type=float, default=300)
    p.add_argument("--skip-record", action="store_true")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    tok = a.tokenizer or a.data / "tokenizer.model"
    rows = {}
    if not a.skip_record:
        env = {"DATA_PATH": str(a.data.resolve()), "TOKENIZER_PATH": str(tok.resolve()), "SEED": str(a.seed),
               "ITERATIONS": str(a.steps), "MAX_WALLCLOCK_SECONDS": "0", "WARMUP_STEPS": str(a.warmup),
               "TRAIN_LOG_EVERY": "1", "VAL_LOSS_EVERY": "0", "TRAIN_BATCH_TOKENS": str(a.batch_tokens),
               "TRAIN_SEQ_LEN": str(a.seq_len), "RUN_ID": "record",
               **dict(e.split("=", 1) for e in a.record_env)}
        rows["record"] = run_record(a.record, env, a.out / "record", a.record_timeout)
        print(f"record: {rows['record']['seconds']}s, median {median_from(rows['record']['step_ms'], a.from_step)} ms", flush=True)
    for spec in a.golf:
        label, _, ov = spec.partition(":")
        overrides = [*shlex.split(ov), f"seed={a.seed}", f"train.iterations={a.steps}", "train.max_wallclock_seconds=0",
                     f"train.warmup_steps={a.warmup}", f"train.batch_tokens={a.batch_tokens}", f"train.seq_len={a.seq_len}",
                     f"data.path={a.data}", "train.log_every=25"]
        rows[label] = run_golf(overrides, a.out / label, a.golf_timeout)
        print(f"{label}: {rows[label]['seconds']}s exit {rows[label]['exit']}, median "
              f"{median_from(rows[label]['step_ms'], a.from_step)} ms", flush=True)
    for r in rows.values():
        r["median_ms"] = median_from(r["step_ms"], a.from_step)
    (a.out / "vs_record.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{a.steps} steps x {a.batch_tokens:,} tokens, seed {a.seed}; median step over steps {a.from_step}-{a.steps}")
    print("| run | median step (ms) | tokens/s | peak MiB | loss steps 1-3 | val_bpb at stop (raw) | averaged val_bpb |")
    print("|---|---|---|---|---|---|---|")
    for k, r in rows.items():
        avg = r.get("diag") or {n: v["val_bpb"] for n, v in (r.get("candidates") or {}).items() if n != "raw"}
        tps = f"{a.batch_tokens / r['median_ms'] * 1000 / 1e6:.2f}M" if r.get("median_ms") else "-"
        losses = " / ".join(f"{x:.4f}" for x in r["losses"][:3])
        val = r["val"]["val_bpb"] if r.get("val") else None
        print(f"| {k} | {r['median_ms']} | {tps} | {r['peak_mib']} | {losses} | {val} | {avg} |")


if __name__ == "__main__":
    main()
