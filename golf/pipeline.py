"""One run, stage by stage: build -> train -> evaluate -> quantize -> compress -> load back -> score.

The score is always that of the model loaded back from the compressed artifact. Every stage is
timed; ``results.json`` is rewritten atomically after each stage, so a failure keeps what was done.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import golf
from golf.compress.artifact import CODE_BYTES_METHOD, code_bytes, code_digest, code_files, read_artifact, write_artifact
from golf.data.loader import SequentialLoader
from golf.data.shards import read_shard, shard_files
from golf.data.tokenizer import byte_lut, load_sentencepiece
from golf.dist import DistInfo, cleanup, init_distributed, seed_all
from golf.eval.bpb import EvalResult, LutOnDevice, truncate_validation
from golf.logging import NullBackend, RunLog
from golf.quant.format import dequantize_state
from golf.trainer import TrainConfig, train

RESULTS_SCHEMA = 1
ARTIFACT_NAME = "model.golf"


@dataclass
class Budget:
    artifact_bytes: int = 16_000_000   # decimal bytes: code + compressed model
    eval_seconds: float = 600.0


class VocabMismatch(ValueError):
    pass


def _finite_or_none(obj: Any) -> Any:
    """JSON has no NaN/inf: a diverged loss is written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(_finite_or_none(obj), indent=2, default=str, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def provenance(device: torch.device) -> dict[str, Any]:
    root = Path(golf.__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    sha = git("rev-parse", "HEAD")
    dirty = None if sha is None else bool(git("status", "--porcelain", "--untracked-files=no"))
    versions = {"python": platform.python_version(), "torch": torch.__version__, "golf": golf.__version__, "numpy": np.__version__}
    for mod in ("hydra", "omegaconf", "sentencepiece", "zstandard", "safetensors", "wandb"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is recorded as absent
            versions[mod] = None
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"git_sha": sha, "git_dirty": dirty, "versions": versions, "device": dev,
            "host": platform.node(), "cuda": torch.version.cuda}


def configure_backends(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Precision flags and SDPA kernels; returns the autocast dtype (None for fp32)."""
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"train.precision must be bf16, fp32 or auto, got {cfg.precision!r}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
        known = {"flash", "cudnn", "efficient", "math"}
        unknown = set(cfg.sdpa_backends) - known
        if unknown or not cfg.sdpa_backends:
            raise ValueError(f"train.sdpa_backends must be a non-empty subset of {sorted(known)}, got {cfg.sdpa_backends}")
        b = torch.backends.cuda
        b.enable_flash_sdp("flash" in cfg.sdpa_backends)
        b.enable_cudnn_sdp("cudnn" in cfg.sdpa_backends)
        b.enable_mem_efficient_sdp("efficient" in cfg.sdpa_backends)
        b.enable_math_sdp("math" in cfg.sdpa_backends)
    return torch.bfloat16 if precision == "bf16" else None


def _want_compile(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.compile == "auto":
        return device.type == "cuda"
    if isinstance(cfg.compile, bool):
        return cfg.compile
    raise ValueError(f"train.compile must be true, false or auto, got {cfg.compile!r}")


def _eval_dict(r: EvalResult) -> dict[str, Any]:
    return {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes, "seconds": round(r.seconds, 3)}


def run(
    *,
    run_dir: str | os.PathLike,
    seed: int,
    data,
    model_factory: Callable[[], nn.Module],
    optimizer_factory: Callable[[nn.Module], Any],
    schedule,
    train_cfg: TrainConfig,
    evaluator,
    quantizer,
    compressor,
    metrics=None,
    budget: Budget | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline in this process (one rank of a torchrun job, or alone)."""
    run_dir = Path(run_dir)
    budget = budget or Budget()
    info = dict(info or {})
    dist_info: DistInfo = init_distributed(train_cfg.device)
    main = dist_info.is_main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir / "train.log", enabled=main)
    metrics = metrics if (metrics is not None and main) else NullBackend()
    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA, "status": "running", "error": None,
        "name": info.get("name"), "overrides": info.get("overrides", []), "group": info.get("group"),
        "seed": seed, "run_dir": str(run_dir), "world_size": dist_info.world_size,
        "val": {"prequant": None, "roundtrip": None, "sliding": None, "ttt": None},
        "stages_s": {},
    }
    stages: dict[str, float] = results["stages_s"]

    def save() -> None:
        if main:
            write_json_atomic(run_dir / "results.json", results)

    def stage(name: str, t0: float) -> None:
        stages[name] = round(time.perf_counter() - t0, 3)
        save()

    exit_code = 0
    try:
        results["env"] = provenance(dist_info.device)
        save()
        metrics.start(config=info.get("config", {}), run_dir=run_dir, name=info.get("name") or run_dir.name,
                      group=info.get("group"))
        log(f"golf {golf.__version__} | run {run_dir} | device {results['env']['device']} x{dist_info.world_size} | "
            f"git {results['env']['git_sha'] and results['env']['git_sha'][:10]}{' (dirty)' if results['env']['git_dirty'] else ''}")

        t0 = time.perf_counter()
        paths = data.prepare()
        sp = load_sentencepiece(paths.tokenizer)
        if int(sp.vocab_size()) != paths.vocab_size:
            raise VocabMismatch(f"tokenizer {paths.tokenizer} has vocabulary {sp.vocab_size()} but data.vocab_size="
                                f"{paths.vocab_size}; set data.vocab_size (and model.vocab_size) to {sp.vocab_size()}")
        seed_all(seed)
        model = model_factory()
        if getattr(model, "vocab_size", None) != int(sp.vocab_size()):
            raise VocabMismatch(f"model.vocab_size={getattr(model, 'vocab_size', None)} does not match the tokenizer "
                                f"{paths.tokenizer} (vocabulary {sp.vocab_size()}); refusing to train")
        device = dist_info.device
        autocast_dtype = configure_backends(train_cfg, device)
        model = model.to(device)
        if autocast_dtype is not None and hasattr(model, "cast_for_training"):
            model.cast_for_training(autocast_dtype)
        n_params = sum(p.numel() for p in model.parameters())
        results["model_params"] = n_params
        lut = LutOnDevice(byte_lut(sp, model.vocab_size), device)
        val_np = np.concatenate([read_shard(f) for f in shard_files(paths.val_pattern)])
        val_tokens = torch.from_numpy(truncate_validation(val_np, evaluator.seq_len).astype(np.int32)).to(device)
        optimizer = optimizer_factory(model)
        compiled = _want_compile(train_cfg, device)
        train_model: nn.Module = model
        if compiled:
            optimizer.compile()
            train_model = torch.compile(model, dynamic=False, fullgraph=True)
        if dist_info.distributed:
            ids = [device.index] if device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(train_model, device_ids=ids, broadcast_buffers=False)
        accum = train_cfg.grad_accum(dist_info.world_size)
        results.update(grad_accum=accum, compiled=compiled, precision=str(autocast_dtype or "float32"))
        log(f"model {type(model).__name__} params {n_params:,} | vocab {model.vocab_size} | batch {train_cfg.batch_tokens:,} tokens "
            f"x seq {train_cfg.seq_len} | grad_accum {accum} | compile {compiled} | precision {results['precision']} | "
            f"val {val_tokens.numel() - 1:,} tokens")
        loader = SequentialLoader(paths.train_pattern, rank=dist_info.rank, world_size=dist_info.world_size, device=device)
        stage("build", t0)

        def validate(m: nn.Module = model) -> dict[str, Any]:
            t = time.perf_counter()
            r = evaluator.evaluate(m, val_tokens, lut, rank=dist_info.rank, world_size=dist_info.world_size,
                                   autocast_dtype=autocast_dtype)
            return _eval_dict(EvalResult(r.val_loss, r.val_bpb, r.tokens, r.bytes, time.perf_counter() - t))

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        outcome = train(model=model, train_model=train_model, optimizer=optimizer, schedule=schedule, loader=loader,
                        cfg=train_cfg, dist_info=dist_info, log=log, metrics=metrics, autocast_dtype=autocast_dtype,
                        validate=validate)
        steps = max(outcome.steps, 1)
        results.update(
            steps=outcome.steps, stop_reason=outcome.stop_reason, train_seconds=round(outcome.train_ms / 1000, 3),
            step_avg_ms=round(outcome.train_ms / steps, 3), step_median_ms=round(outcome.step_median_ms, 3),
            tokens_per_s=round(train_cfg.batch_tokens * outcome.steps / max(outcome.train_ms / 1000, 1e-9), 1),
            tokens_seen=train_cfg.batch_tokens * outcome.steps,
            train_loss=outcome.losses, val_history=outcome.val_history,
            peak_memory_mib=(torch.cuda.max_memory_allocated(device) // 2**20 if device.type == "cuda" else None),
        )
        stage("train", t0)
        if outcome.status == "diverged":
            results["status"] = "diverged"
            results["error"] = outcome.stop_reason
            exit_code = 3
            save()
            return results

        t0 = time.perf_counter()
        results["val"]["prequant"] = validate()
        stage("eval_prequant", t0)
        log(f"prequant val_loss {results['val']['prequant']['val_loss']:.4f} val_bpb {results['val']['prequant']['val_bpb']:.4f} "
            f"| {outcome.steps} steps, step_avg {results['step_avg_ms']:.1f}ms, median {results['step_median_ms']:.1f}ms")

        artifact = run_dir / ARTIFACT_NAME
        if main:
            t0 = time.perf_counter()
            qstate = quantizer.quantize(model.state_dict())
            stage("quantize", t0)
            t0 = time.perf_counter()
            model_bytes = write_artifact(artifact, qstate.tensors, qstate.meta, compressor)
            stage("compress", t0)
            results["quant_stats"] = qstate.stats
        if dist_info.distributed:
            dist.barrier()

        t0 = time.perf_counter()
        tensors, meta = read_artifact(artifact)
        state = dequantize_state(tensors, meta)
        seed_all(seed)
        loaded = model_factory().to(device)
        if autocast_dtype is not None and hasattr(loaded, "cast_for_training"):
            loaded.cast_for_training(autocast_dtype)
        loaded.load_state_dict(state, strict=True)
        stage("load_artifact", t0)
        t0 = time.perf_counter()
        results["val"]["roundtrip"] = validate(loaded)
        stage("eval_roundtrip", t0)

        files = code_files()
        c_bytes = code_bytes(files)
        model_bytes = artifact.stat().st_size
        total = c_bytes + model_bytes
        root = Path(golf.__file__).resolve().parents[1]
        results["bytes"] = {
            "code": c_bytes, "model": model_bytes, "total": total, "limit": budget.artifact_bytes,
            "headroom": budget.artifact_bytes - total, "code_method": CODE_BYTES_METHOD,
            "code_files": [str(f.relative_to(root)) for f in files], "artifact": ARTIFACT_NAME,
            "codec": getattr(compressor, "name", None), "code_sha256": code_digest(files),
        }
        post = ("eval_prequant", "quantize", "compress", "load_artifact", "eval_roundtrip")
        results["eval_seconds"] = round(sum(stages.get(k, 0.0) for k in post), 3)
        if results["eval_seconds"] > budget.eval_seconds:
            log(f"warning: post-training stages took {results['eval_seconds']:.0f}s, over budget.eval_seconds="
                f"{budget.eval_seconds:.0f}")
        fits = total <= budget.artifact_bytes
        results["status"] = "ok" if fits else "over_budget"
        rt = results["val"]["roundtrip"]
        log(f"roundtrip val_loss {rt['val_loss']:.4f} val_bpb {rt['val_bpb']:.4f} | bytes: model {model_bytes:,} + code "
            f"{c_bytes:,} = {total:,} / {budget.artifact_bytes:,} {'OK' if fits else 'OVER BUDGET'}")
        if not fits:
            log(f"!!! OVER BUDGET by {total - budget.artifact_bytes:,} bytes: this artifact is not a valid submission !!!")
        save()
        metrics.summary({"val_bpb": rt["val_bpb"], "val_loss": rt["val_loss"],
                         "prequant_val_bpb": results["val"]["prequant"]["val_bpb"], "total_bytes": total,
                         "steps": outcome.steps, "step_avg_ms": results["step_avg_ms"], "status": results["status"]})
        return results
    except BaseException as e:
        exit_code = 1
        results["status"] = "failed"
        results["error"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {results['error']}\n{traceback.format_exc()}", console=False)
        save()
        raise
    finally:
        metrics.finish(exit_code)
        log.close()
        cleanup()
