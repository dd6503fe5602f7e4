"""Time training steps: golf configurations (through golf's own training loop) and, optionally, a
record's ``train_gpt.py`` (its own GPT and optimizers, imported from the file), in one process on one
device, so the comparison is like for like.

    python scripts/bench.py --steps 40 --warmup 20 \
        --variant "flash:experiment=baseline data=enwiki_sp1024" \
        --variant "cudnn:experiment=baseline data=enwiki_sp1024 train.sdpa_backends=[cudnn]" \
        --reference path/to/train_gpt.py --json out.json

Reported: median step time over the timed steps (after ``--warmup`` compile/warm-up steps that are
not timed), tokens/s from it, peak memory. Every step ends with a device sync. Both sides train at
their peak learning rate (no warmdown) so the weights move as in a real run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import golf.train  # noqa: F401  (registers resolvers)
    from golf.train import apply_overlay

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    apply_overlay(cfg, overrides)
    return cfg


def build_on_cuda(overrides: list[str]) -> SimpleNamespace:
    """golf's model (seeded, cast), optimizer (compiled), compiled model and loader for ``overrides`` on cuda:0."""
    from golf.build import components
    from golf.data.loader import SequentialLoader
    from golf.dist import seed_all
    from golf.pipeline import configure_backends
    from golf.stages.training import compile_model

    cfg = compose(overrides)
    parts = components(OmegaConf.to_container(cfg, resolve=True))
    tc = parts["train_cfg"]
    device = torch.device("cuda", 0)
    paths = parts["data"].prepare()
    seed_all(int(cfg.seed))
    model = parts["model_factory"]().to(device)
    autocast = configure_backends(tc, device)
    if autocast is not None:
        model.cast_for_training(autocast)
    opt = parts["optimizer_factory"](model)
    opt.compile()
    return SimpleNamespace(cfg=cfg, parts=parts, tc=tc, device=device, model=model, autocast=autocast, optimizer=opt,
                           compiled=compile_model(model, tc),
                           loader=SequentialLoader(paths.train_pattern, device=device))


def bench_golf(overrides: list[str], steps: int, warmup: int) -> dict:
    from golf.dist import DistInfo
    from golf.logging import NullBackend
    from golf.trainer import train

    # warmdown_iters=0 keeps the peak LR for every timed step: a run that barely moves its weights off
    # their (partly zero) init runs measurably faster on an H100 than a real one, so the timing must train.
    g = build_on_cuda(overrides + [f"train.iterations={steps}", f"train.warmup_steps={warmup}",
                                   "train.max_wallclock_seconds=0", "train.val_every=0", "logger=none",
                                   "schedule.warmdown_iters=0"])
    torch.cuda.reset_peak_memory_stats()
    out = train(model=g.model, train_model=g.compiled, optimizer=g.optimizer, schedule=g.parts["schedule"],
                loader=g.loader, cfg=g.tc, dist_info=DistInfo(0, 1, 0, g.device), log=lambda *_a, **_k: None,
                metrics=NullBackend(), autocast_dtype=g.autocast)
    return {"median_ms": statistics.median(out.step_ms), "steps_ms": out.step_ms, "batch_tokens": g.tc.batch_tokens,
            "grad_accum": g.tc.grad_accum(1), "peak_mib": torch.cuda.max_memory_allocated() // 2**20,
            "final_loss": out.losses[-1], "cudagraph_skips": out.cudagraph_skips}


def bench_reference(script: Path, data_dir: Path, tokenizer: Path, steps: int, warmup: int) -> dict:
    """The record's own GPT, Muon and Adam groups, stepped as its main() steps them."""
    os.environ.setdefault("DATA_PATH", str(data_dir))
    os.environ.setdefault("TOKENIZER_PATH", str(tokenizer))
    spec = importlib.util.spec_from_file_location("reference_train_gpt", script)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    args = ref.Hyperparameters()
    ref.zeropower_via_newtonschulz5 = torch.compile(ref.zeropower_via_newtonschulz5)
    b = torch.backends.cuda
    b.enable_cudnn_sdp(False), b.enable_flash_sdp(True), b.enable_mem_efficient_sdp(False), b.enable_math_sdp(False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda", 0)
    torch.manual_seed(args.seed)
    model = ref.GPT(vocab_size=args.vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
                    num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
                    tie_embeddings=args.tie_embeddings, tied_embed_init_std=args.tied_embed_init_std,
                    logit_softcap=args.logit_softcap, rope_base=args.rope_base,
                    qk_gain_init=args.qk_gain_init).to(device).bfloat16()
    for m in model.modules():
        if isinstance(m, ref.CastedLinear):
            m.float()
    ref.restore_low_dim_params_to_fp32(model)
    cmodel = torch.compile(model, dynamic=False, fullgraph=True)
    named = list(model.blocks.named_parameters())
    pats = ref.CONTROL_TENSOR_NAME_PATTERNS
    matrix = [p for n, p in named if p.ndim == 2 and not any(s in n for s in pats)]
    scalars = [p for n, p in named if p.ndim < 2 or any(s in n for s in pats)] + [model.skip_weights]
    opts = [torch.optim.Adam([model.tok_emb.weight], lr=args.tied_embed_lr, betas=(args.beta1, args.beta2), eps=args.adam_eps, fused=True),
            ref.Muon(matrix, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps),
            torch.optim.Adam(scalars, lr=args.scalar_lr, betas=(args.beta1, args.beta2), eps=args.adam_eps, fused=True)]
    loader = ref.DistributedTokenLoader(args.train_files, 0, 1, device)
    accum = 8
    times = []
    torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        for o in opts:
            o.zero_grad(set_to_none=True)
        for _ in range(accum):
            x, y = loader.next_batch(args.train_batch_tokens, args.train_seq_len, accum)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss = cmodel(x, y)
            (loss / accum).backward()
        for o in opts:
            o.step()
        loss.item()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - t0))
    return {"median_ms": statistics.median(times), "steps_ms": times, "batch_tokens": args.train_batch_tokens,
            "grad_accum": accum, "peak_mib": torch.cuda.max_memory_allocated() // 2**20, "final_loss": float(loss)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[], help='"label:override override ..." (repeatable)')
    p.add_argument("--reference", type=Path, help="a record's train_gpt.py to time with the same data")
    p.add_argument("--ref-data", type=Path, default=ROOT / "data/enwiki_sp1024")
    p.add_argument("--ref-tokenizer", type=Path, default=ROOT / "data/enwiki_sp1024/tokenizer.model")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench.py needs a CUDA device")
    rows = {}
    if a.reference:
        rows["reference"] = bench_reference(a.reference, a.ref_data, a.ref_tokenizer, a.steps, a.warmup)
        print(f"reference: {rows['reference']['median_ms']:.1f} ms", flush=True)
    for v in a.variant:
        label, _, ov = v.partition(":")
        rows[label] = bench_golf(shlex.split(ov), a.steps, a.warmup)
        print(f"{label}: {rows[label]['median_ms']:.1f} ms", flush=True)
    dev = torch.cuda.get_device_name(0)
    print(f"\n{dev}, torch {torch.__version__}, {a.steps} timed steps after {a.warmup} warm-up steps")
    print("| variant | median step (ms) | tokens/s | grad accum | peak MiB | loss at last step |\n|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['median_ms']:.1f} | {r['batch_tokens'] / r['median_ms'] * 1000 / 1e6:.2f}M | {r['grad_accum']} | "
              f"{r['peak_mib']} | {r['final_loss']:.4f} |")
    if a.json:
        a.json.write_text(json.dumps({"device": dev, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
