"""Train a record's own ``train_gpt.py`` and a golf configuration for the same number of steps from the same
seed on the same data, one after the other on this machine, and compare step time, memory and val_bpb.

    python scripts/vs_record.py --record .bench/r1019_train_gpt.py --steps 150 --seed 314 \
        --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --record-env WARMDOWN_ITERS=100 \
        --golf "model=xsa_all optimizer=parallel_muon schedule=warmdown_3500 schedule.warmdown_iters=100" \
        --data data/enwiki_sp1024 --out runs/vs1019

The record runs under ``torchrun --standalone --nproc_per_node=N`` (``--nproc``, default 1) with ITERATIONS=steps, no wallclock cap,
a log line per step, in its own directory; it is stopped once it has printed its post-EMA diagnostic (later
stages, e.g. its AR calibration, are not compared here). Without FlashAttention-3 a stand-in
``flash_attn_interface`` runs SDPA's flash kernel with K/V repeated to the query heads (as
reference-measurements.md did; without forcing the kernel a compiled graph picks cuDNN), or with
``--record-attention fa4`` FlashAttention-4 through golf's op (golf.kernels.flash4), the closest this machine has
to the record's own FA3 path.
golf runs through ``python -m golf.train`` with the same steps, warm-up steps and seed. Step times are
medians over steps ``--from-step``..steps of per-step times (both sides synchronise every step).

With ``--budget SECONDS`` both sides instead run their whole pipeline at that training wallclock cap: the
record to its exit (training, averaging, calibration, quantization, its final round-trip and sliding evals),
golf as ``experiment=...`` with ``train.max_wallclock_seconds``. The table then gives steps, step time,
pre-quant, round-trip and sliding val_bpb, artifact bytes and the seconds of each stage after training (the
record's from its own eval_time fields and from when its log lines arrived). ``--skip-record`` / no
``--golf`` run one side per call; ``--merge`` adds the rows of earlier calls' ``vs_record.json`` files;
``--record-until diag`` stops the record after its post-EMA diagnostic (for one whose calibration cannot
finish in the time at hand).

    python scripts/vs_record.py --budget 180 --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
        --record-env BIGRAM_DIM=112 --golf "golf:experiment=pr1019 data=enwiki_sp1024" --seed 314 --out runs/b1019

Two golf runs and no record check a world size: ``--losses-against w1`` sets each run's first losses beside
the 1-GPU run's and gives the step-time speed-up (Parallel Muon on 2 GPUs, issue 5):

    python scripts/vs_record.py --skip-record --steps 40 --from-step 10 --losses-against w1 --out runs/world \
        --golf "w1:experiment=pr1019 schedule.warmdown_iters=0 launcher=torchrun launcher.nproc_per_node=1" \
        --golf "w2:experiment=pr1019 schedule.warmdown_iters=0 launcher=torchrun launcher.nproc_per_node=2"
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from golf.launch import run_to_deadline  # noqa: E402
from golf.results import write_json_atomic  # noqa: E402

FA3_STAND_IN = '''"""Stand-in for FlashAttention-3: flash_attn_func on SDPA's flash kernel (forced inside the call, which a
compiled graph honours) with K/V repeated to the query heads; flash_attn_varlen_func under a dense mask."""
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


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=True, **_):
    """q, k, v [total, H, D]; causal attention within each [cu[i], cu[i+1]) segment: on CUDA golf's flex attention
    under a block mask built from the segments (golf's own document-masking path, so both sides run one kernel),
    elsewhere SDPA under a dense mask."""
    import torch

    total = q.size(0)
    pos = torch.arange(total, device=q.device, dtype=cu_seqlens_q.dtype)
    seg = torch.searchsorted(cu_seqlens_q[1:].contiguous(), pos, right=True).to(torch.int32)
    if q.is_cuda:
        from golf.models.documents import Documents, block_mask, flex

        return flex(q[None], k[None], v[None], Documents(seg[None], 0, block_mask(seg[None])))[0]
    mask = (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])
    g = q.size(1) // k.size(1)
    if g > 1:
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                         attn_mask=mask)
    return out[0].transpose(0, 1)
'''
FA4_STAND_IN = '''"""Stand-in for FlashAttention-3's flash_attn_func: FlashAttention-4 through golf's custom op."""
from golf.kernels.flash4 import attend


def flash_attn_func(q, k, v, causal=True):
    assert causal
    return attend(q, k, v)
'''
STEP = re.compile(r"^step:(\d+)/\d+ train_loss:([\d.naninf]+) train_time:(\d+)ms")
# April records (#1394 on): "N/ITER train_loss: X train_time: Ym tok/s: Z", tok/s over the whole run so far
STEP_TPS = re.compile(r"^(\d+)/\d+ train_loss: ([\d.naninf]+) train_time: [\d.]+m tok/s: (\d+)")
EMA_APPLY = re.compile(r"^ema:applying EMA weights")
VAL = re.compile(r"^step:(\d+)/\d+ val_loss:([\d.]+) val_bpb:([\d.]+)")
DIAG = re.compile(r"DIAGNOSTIC post_ema val_loss:([\d.]+) val_bpb:([\d.]+)")
PEAK = re.compile(r"peak memory allocated: (\d+) MiB")
STOP = re.compile(r"stopping_early: \w+ train_time:(\d+)ms step:(\d+)/")
VAL_AVG = re.compile(r"^step:(\d+)/\d+ (?:val_loss:[\d.]+ val_bpb:[\d.]+ )?train_time:(\d+)ms step_avg:([\d.]+)ms")
TOTAL = re.compile(r"Total submission size (\S+): (\d+) bytes")
CODE = re.compile(r"^Code size: (\d+) bytes")
FINAL = re.compile(r"^final_(\w+?)_(roundtrip|sliding_window)(_exact)? val_loss:([\d.]+) val_bpb:([\d.]+)"
                   r"(?:.*eval_time:(\d+)ms)?")
AR_GEN = re.compile(r"gptq:generated (\d+) sequences in ([\d.]+)s")
GPTQ_MS = re.compile(r"gptq:budget_check train:(\d+)ms \+ gptq:(\d+)ms")


def scan_final_line(line: str, out: dict, t: float) -> None:
    """Fold one line of a record's log after training into ``out`` (``t``: seconds since launch). The first
    ``final_*`` line of each kind is the record's artifact (#1019 repeats its sliding score as int8_zlib)."""
    if m := STOP.search(line):
        out["train_ms"], out["steps_done"], out["t_train_end"] = int(m[1]), int(m[2]), t
    elif m := VAL_AVG.match(line):
        out["step_avg_ms"] = float(m[3])
    elif m := TOTAL.search(line):
        out.setdefault("bytes", {})["total"], out["codec"], out["t_artifact"] = int(m[2]), m[1], t
    elif m := CODE.match(line):
        out.setdefault("bytes", {})["code"] = int(m[1])
    elif m := AR_GEN.search(line):
        out["ar_sequences"], out["ar_seconds"] = int(m[1]), float(m[2])
    elif m := GPTQ_MS.search(line):
        out["gptq_seconds"] = int(m[2]) / 1000
    elif m := FINAL.match(line):
        kind = "roundtrip" if m[2] == "roundtrip" else "sliding"
        final = out.setdefault("final", {})
        if m[3]:
            final.setdefault(kind, {}).setdefault("val_bpb", float(m[5]))
            final[kind].setdefault("val_loss", float(m[4]))
        elif m[6] and "eval_seconds" not in final.get(kind, {}):
            final.setdefault(kind, {})["eval_seconds"] = int(m[6]) / 1000
            final[kind]["t_done"] = t


def run_record(script: Path, env: dict[str, str], workdir: Path, timeout: float, to_exit: bool = False,
               scan_final: bool = False, nproc: int = 1, attention: str = "flash", batch_tokens: int = 786_432,
               last_step: int = 0) -> dict:
    """Run the record under torchrun and parse its log as it arrives: up to its post-EMA diagnostic, or with
    ``to_exit`` through its final evals to its exit; ``scan_final`` also parses its stop, bytes and final lines.
    April records (#1394 on) have no diagnostic: they stop when they apply their EMA, and their step times come
    from the whole-run tok/s they log (``batch_tokens`` a step)."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        import flash_attn_interface  # noqa: F401
        stand_in = False
    except ImportError:
        (workdir / "flash_attn_interface.py").write_text(FA4_STAND_IN if attention == "fa4" else FA3_STAND_IN)
        stand_in = True
    full_env = dict(os.environ, PYTHONPATH=f"{workdir}:{ROOT}:{os.environ.get('PYTHONPATH', '')}", PYTHONUNBUFFERED="1", **env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script.resolve())]
    log = (workdir / "stdout.txt").open("w", buffering=1)  # line by line: a killed call still leaves the log
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(timeout, proc.kill)  # a record that goes silent (compiling) is stopped on time too
    watchdog.start()
    out = {"steps": [], "losses": [], "val": None, "diag": None, "peak_mib": None, "fa3_stand_in": stand_in}
    april = False  # an April record (tok/s step lines) has no post-EMA diagnostic to wait for
    try:
        for line in proc.stdout:
            log.write(line)
            if scan_final:
                scan_final_line(line, out, time.perf_counter() - t0)
            if m := STEP.match(line):
                out["steps"].append(int(m[3]))
                out["losses"].append(float(m[2]))
            elif m := STEP_TPS.match(line):
                out["steps"].append(int(m[1]) * batch_tokens / int(m[3]) * 1000)
                out["losses"].append(float(m[2]))
                april = True
                if last_step and int(m[1]) >= last_step and not to_exit:
                    break  # its last step: what follows is its full validation (another compile), not compared
            elif EMA_APPLY.match(line) and april and not to_exit:
                break
            elif m := VAL.match(line):
                out["val"] = {"val_loss": float(m[2]), "val_bpb": float(m[3])}
            elif m := PEAK.search(line):
                out["peak_mib"] = int(m[1])
            elif m := DIAG.search(line):
                out["diag"] = {"val_loss": float(m[1]), "val_bpb": float(m[2])}
                if not to_exit:
                    break
            if time.perf_counter() - t0 > timeout:
                out["error"] = f"timed out after {timeout:.0f}s"
                break
    finally:
        watchdog.cancel()
        proc.kill()
        out["exit"] = proc.wait()
        if time.perf_counter() - t0 > timeout and "error" not in out:
            out["error"] = f"timed out after {timeout:.0f}s"
        log.close()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    times = out.pop("steps")
    out["step_ms"] = [round(b - a, 2) for a, b in zip([0, *times[:-1]], times)]
    return out


def run_golf(overrides: list[str], run_dir: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "golf.train", *overrides, "logger=none", f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    with (run_dir.parent / f"{run_dir.name}.stdout.txt").open("w") as log:
        code = run_to_deadline(cmd, timeout=timeout, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    res = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
    av = res.get("averaging") or {}
    val = res.get("val") or {}
    return {"exit": code, "seconds": round(time.perf_counter() - t0, 1), "step_ms": res.get("step_ms", []),
            "losses": res.get("train_loss", []), "val": (av.get("candidates") or {}).get("raw") or val.get("prequant"),
            "candidates": av.get("candidates"), "peak_mib": res.get("peak_memory_mib"), "status": res.get("status"),
            "error": res.get("error"), "qat": res.get("qat"), "averaging": av,
            "steps_done": res.get("steps"), "step_avg_ms": res.get("step_avg_ms"), "bytes": res.get("bytes"),
            "stages_s": res.get("stages_s"), "calibration": res.get("calibration"),
            "final": {k: {"val_bpb": v["val_bpb"], "val_loss": v["val_loss"], "eval_seconds": v.get("seconds")}
                      for k, v in val.items() if v}}


def budget_row(label: str, r: dict) -> str:
    """One markdown row of the whole-pipeline table; the record's stage seconds come from its eval_time fields
    and from when its log lines arrived, golf's from results.json's stages_s."""
    f = r.get("final") or {}

    def bpb(kind: str) -> str:
        v = (f.get(kind) or {}).get("val_bpb")
        return f"{v:.4f}" if v is not None else "-"

    def sec(v) -> str:
        return f"{v:.1f}" if isinstance(v, (int, float)) else "-"

    if "stages_s" in r and r["stages_s"] is not None:
        st = r["stages_s"]
        calib, export = st.get("calibrate"), sum(st.get(k, 0.0) for k in ("average", "quantize", "compress"))
        pre = bpb("prequant")
    else:
        calib = r.get("ar_seconds", r.get("gptq_seconds"))
        export = (r["t_artifact"] - r["t_train_end"]) if "t_artifact" in r and "t_train_end" in r else None
        if export is not None and calib is not None:
            export = export - calib if export >= calib else None
        pre = f"{r['diag']['val_bpb']:.4f} (EMA)" if r.get("diag") else (f"{r['val']['val_bpb']:.4f}" if r.get("val") else "-")
    total = (r.get("bytes") or {}).get("total")
    return (f"| {label} | {r.get('steps_done', '-')} | {sec(r.get('step_avg_ms'))} | {pre} | {bpb('roundtrip')} | "
            f"{bpb('sliding')} | {f'{total:,}' if total else '-'} | {sec(calib)} | {sec(export)} | "
            f"{sec((f.get('roundtrip') or {}).get('eval_seconds'))} | {sec((f.get('sliding') or {}).get('eval_seconds'))} | "
            f"{r.get('seconds', '-')} |")


BUDGET_HEADER = ("| run | steps | step avg (ms) | pre-quant val_bpb | round trip | sliding | total bytes | calibration (s) | "
                 "average+quantize+compress (s) | round-trip eval (s) | sliding eval (s) | wall (s) |\n"
                 "|---|---|---|---|---|---|---|---|---|---|---|---|")


def median_from(step_ms: list[float], first: int) -> float | None:
    tail = step_ms[first - 1:]
    return round(statistics.median(tail), 1) if tail else None


def data_dir_layout(out: Path, data: Path, tok: Path) -> Path:
    """The records from #1394 on find their data under DATA_DIR (``datasets/fineweb10B_sp<V>``,
    ``tokenizers/fineweb_<V>_bpe.model``) rather than DATA_PATH: a folder of links in that layout, for either
    vocabulary, to the data and tokenizer given."""
    root = out / "record_data"
    for sub, link, target in [("datasets", "fineweb10B_sp{v}", data), ("tokenizers", "fineweb_{v}_bpe.model", tok)]:
        (root / sub).mkdir(parents=True, exist_ok=True)
        for v in (1024, 8192):
            path = root / sub / link.format(v=v)
            path.unlink(missing_ok=True)
            path.symlink_to(target.resolve())
    return root


def record_env(a: argparse.Namespace) -> dict[str, str]:
    data = a.data or ROOT / "data/enwiki_sp1024"
    tok = a.tokenizer or data / "tokenizer.model"
    env = {"DATA_PATH": str(data.resolve()), "TOKENIZER_PATH": str(tok.resolve()), "DATA_DIR": str(data_dir_layout(a.out, data, tok)),
           "SEED": str(a.seed), "VAL_LOSS_EVERY": "0", "RUN_ID": "record"}
    if a.budget:
        env.update(MAX_WALLCLOCK_SECONDS=f"{a.budget:g}", TRAIN_LOG_EVERY="50")
    else:
        env.update(ITERATIONS=str(a.steps), MAX_WALLCLOCK_SECONDS="0", WARMUP_STEPS=str(a.warmup), TRAIN_LOG_EVERY="1",
                   TRAIN_BATCH_TOKENS=str(a.batch_tokens), TRAIN_SEQ_LEN=str(a.seq_len))
    return {**env, **dict(e.split("=", 1) for e in a.record_env)}


def golf_overrides(a: argparse.Namespace, ov: str) -> list[str]:
    common = [*shlex.split(ov), f"seed={a.seed}", *([f"data.path={a.data}"] if a.data else [])]
    if a.budget:
        return [*common, f"train.max_wallclock_seconds={a.budget:g}", "train.log_every=50"]
    return [*common, f"train.iterations={a.steps}", "train.max_wallclock_seconds=0", f"train.warmup_steps={a.warmup}",
            f"train.batch_tokens={a.batch_tokens}", f"train.seq_len={a.seq_len}", "train.log_every=1"]


def print_steps_table(a: argparse.Namespace, rows: dict) -> None:
    print(f"\n{a.steps} steps x {a.batch_tokens:,} tokens, seed {a.seed}; median step over steps {a.from_step}-{a.steps}")
    print("| run | median step (ms) | tokens/s | peak MiB | loss steps 1-3 | val_bpb at stop (raw) | averaged val_bpb |")
    print("|---|---|---|---|---|---|---|")
    for k, r in rows.items():
        cands = {n: v["val_bpb"] for n, v in (r.get("candidates") or {}).items() if n != "raw"}
        avg = f"{r['diag']['val_bpb']:.4f} (EMA)" if r.get("diag") else ", ".join(f"{n} {v:.4f}" for n, v in cands.items())
        tps = f"{a.batch_tokens / r['median_ms'] * 1000 / 1e6:.2f}M" if r.get("median_ms") else "-"
        losses = " / ".join(f"{x:.4f}" for x in r["losses"][:3])
        val = r["val"]["val_bpb"] if r.get("val") else None
        print(f"| {k} | {r['median_ms']} | {tps} | {r['peak_mib']} | {losses} | {val} | {avg} |")
    if a.losses_against:
        print_losses_against(a, rows)


def print_losses_against(a: argparse.Namespace, rows: dict) -> None:
    """Each run's first ``--loss-steps`` losses beside the reference run's (e.g. golf on 2 GPUs against 1: the
    same global batch at any world size, so the same losses up to bf16 reduction order), with the largest
    relative difference and the step-time ratio."""
    ref = rows.get(a.losses_against)
    if ref is None or not ref["losses"]:
        print(f"--losses-against {a.losses_against}: no such run with losses (runs: {', '.join(rows)})")
        return
    n = min(a.loss_steps, len(ref["losses"]))
    print(f"\nlosses of steps 1-{n} against {a.losses_against}")
    print("| run | max relative difference | at step | speed-up of the median step | " +
          " | ".join(f"step {i + 1}" for i in range(n)) + " |")
    print("|---|---|---|---|" + "---|" * n)
    for k, r in rows.items():
        if not r["losses"]:
            continue
        diffs = [abs(x - y) / abs(y) for x, y in zip(r["losses"][:n], ref["losses"][:n])]
        worst = max(range(len(diffs)), key=diffs.__getitem__)
        ratio = f"{ref['median_ms'] / r['median_ms']:.2f}x" if ref.get("median_ms") and r.get("median_ms") else "-"
        print(f"| {k} | {diffs[worst]:.2e} | {worst + 1} | {ratio} | " +
              " | ".join(f"{x:.4f}" for x in r["losses"][:n]) + " |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", type=Path, help="the record's train_gpt.py (not needed with --skip-record)")
    p.add_argument("--record-label", default="record")
    p.add_argument("--record-env", action="append", default=[], help="KEY=VALUE for the record (repeatable)")
    p.add_argument("--golf", action="append", default=[], help='"label:overrides" for golf (repeatable)')
    p.add_argument("--budget", type=float, default=None, help="whole pipelines at this training wallclock cap (s)")
    p.add_argument("--record-until", choices=("exit", "diag"), default="exit",
                   help="with --budget: run the record to its exit, or stop it after its post-EMA diagnostic (the "
                        "#1019 record's AR calibration alone takes ~21 min on one H100)")
    p.add_argument("--record-attention", choices=("flash", "fa4"), default="flash",
                   help="without FlashAttention-3, the record's stand-in: SDPA's flash kernel, or FlashAttention-4")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=314)
    p.add_argument("--nproc", type=int, default=1, help="the record's torchrun processes (golf: launcher=torchrun "
                   "launcher.nproc_per_node=N in --golf)")
    p.add_argument("--batch-tokens", type=int, default=786_432)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--from-step", type=int, default=25)
    p.add_argument("--losses-against", default=None, help="label of a run whose per-step losses the others are "
                   "compared with (step mode), e.g. golf on 1 GPU against golf on 2")
    p.add_argument("--loss-steps", type=int, default=10, help="how many first steps --losses-against compares")
    p.add_argument("--data", type=Path, default=None,
                   help="token shards (default data/enwiki_sp1024 for the record; golf's data config otherwise)")
    p.add_argument("--tokenizer", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--record-timeout", type=float, default=300)
    p.add_argument("--golf-timeout", type=float, default=300)
    p.add_argument("--skip-record", action="store_true")
    p.add_argument("--merge", type=Path, nargs="*", default=[], help="vs_record.json files of earlier calls to add")
    a = p.parse_args(argv)
    if not a.skip_record and a.record is None:
        p.error("--record is required unless --skip-record")
    a.out = a.out.resolve()  # golf runs start in the repository root
    a.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for path in a.merge:
        rows.update(json.loads(path.read_text()))
    if not a.skip_record:
        r = rows[a.record_label] = run_record(a.record, record_env(a), a.out / a.record_label, a.record_timeout,
                                              to_exit=bool(a.budget) and a.record_until == "exit",
                                              scan_final=bool(a.budget), nproc=a.nproc, attention=a.record_attention,
                                              batch_tokens=a.batch_tokens, last_step=0 if a.budget else a.steps)
        r["seed"], r["nproc"] = a.seed, a.nproc
        print(f"{a.record_label}: {r['seconds']}s exit {r['exit']}, median {median_from(r['step_ms'], a.from_step)} ms",
              flush=True)
    for spec in a.golf:
        label, _, ov = spec.partition(":")
        r = rows[label] = run_golf(golf_overrides(a, ov), a.out / label, a.golf_timeout)
        r["seed"] = a.seed
        print(f"{label}: {r['seconds']}s exit {r['exit']}, median {median_from(r['step_ms'], a.from_step)} ms", flush=True)
    for r in rows.values():
        r["median_ms"] = median_from(r["step_ms"], a.from_step)
    write_json_atomic(a.out / "vs_record.json", rows)
    if a.budget:
        seeds = sorted({str(r["seed"]) if "seed" in r else "not recorded" for r in rows.values()})
        print(f"\nwhole pipelines at a {a.budget:g} s training cap, seed {', '.join(seeds)}\n{BUDGET_HEADER}")
        for k, r in rows.items():
            print(budget_row(k, r))
    else:
        print_steps_table(a, rows)


if __name__ == "__main__":
    main()
