"""One run as a list of stages: build -> train -> average -> eval_prequant -> quantize -> compress ->
load_artifact -> eval_roundtrip -> account.

Each stage is a plain function of the run's state (``Run``); ``run`` times every stage, stores the time in
``results["stages_s"]`` and rewrites ``results.json`` atomically after each, so a failure keeps what was
done. A new stage is one function and one entry in ``STAGES``. The score is always that of the model loaded
back from the compressed artifact.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
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
from golf.eval.bpb import LutOnDevice, truncate_validation
from golf.logging import NullBackend, RunLog
from golf.quant.format import dequantize_state
from golf.results import new_results, provenance, write_json_atomic
from golf.trainer import TrainConfig, train

ARTIFACT_NAME = "model.golf"
POST_TRAINING = ("average", "eval_prequant", "quantize", "compress", "load_artifact", "eval_roundtrip")


@dataclass
class Budget:
    artifact_bytes: int = 16_000_000   # decimal bytes: code + compressed model
    eval_seconds: float = 600.0


class VocabMismatch(ValueError):
    pass


@dataclass
class Parts:
    """The run's components, as the config built them."""

    data: Any
    model_factory: Callable[[], nn.Module]
    optimizer_factory: Callable[[nn.Module], Any]
    schedule: Any
    train_cfg: TrainConfig
    evaluator: Any
    quantizer: Any
    compressor: Any
    budget: Budget


@dataclass
class Run:
    """What the stages share: the components, the process's place in the job, and what earlier stages made."""

    run_dir: Path
    seed: int
    parts: Parts
    dist: DistInfo
    log: RunLog
    metrics: Any
    results: dict[str, Any]
    stop: bool = False                   # a stage ended the run early (status already set)
    exit_code: int = 0
    autocast_dtype: torch.dtype | None = None
    lut: LutOnDevice | None = None
    val_tokens: torch.Tensor | None = None
    model: nn.Module | None = None
    train_model: nn.Module | None = None
    optimizer: Any = None
    loader: Any = None
    outcome: Any = None
    loaded: nn.Module | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def main(self) -> bool:
        return self.dist.is_main

    def save(self) -> None:
        if self.main:
            write_json_atomic(self.run_dir / "results.json", self.results)

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """Score ``model`` with the configured evaluator; the result as results.json stores it."""
        t = time.perf_counter()
        r = self.parts.evaluator.evaluate(model, self.val_tokens, self.lut, rank=self.dist.rank,
                                          world_size=self.dist.world_size, autocast_dtype=self.autocast_dtype)
        return {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes,
                "seconds": round(time.perf_counter() - t, 3)}


def configure_backends(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Precision flags; returns the autocast dtype (None for fp32). The attention kernel is the model's
    ``attn_kernel`` (global SDPA flags do not choose the kernel in a compiled graph)."""
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"train.precision must be bf16, fp32 or auto, got {cfg.precision!r}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    return torch.bfloat16 if precision == "bf16" else None


def _want_compile(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.compile == "auto":
        return device.type == "cuda"
    if isinstance(cfg.compile, bool):
        return cfg.compile
    raise ValueError(f"train.compile must be true, false or auto, got {cfg.compile!r}")


def _fmt_eval(r: dict[str, Any]) -> str:
    return f"val_loss {r['val_loss']:.4f} val_bpb {r['val_bpb']:.4f}"


# ------------------------------------------------------------------------------------------------ stages


def build(run: Run) -> None:
    """Data, tokenizer tables, validation tokens, the model (seeded), optimizer, compiled/DDP wrapper, loader."""
    p, cfg = run.parts, run.parts.train_cfg
    paths = p.data.prepare()
    sp = load_sentencepiece(paths.tokenizer)
    if int(sp.vocab_size()) != paths.vocab_size:
        raise VocabMismatch(f"tokenizer {paths.tokenizer} has vocabulary {sp.vocab_size()} but data.vocab_size="
                            f"{paths.vocab_size}; set data.vocab_size (and model.vocab_size) to {sp.vocab_size()}")
    seed_all(run.seed)
    model = p.model_factory()
    if getattr(model, "vocab_size", None) != int(sp.vocab_size()):
        raise VocabMismatch(f"model.vocab_size={getattr(model, 'vocab_size', None)} does not match the tokenizer "
                            f"{paths.tokenizer} (vocabulary {sp.vocab_size()}); refusing to train")
    device = run.device
    run.autocast_dtype = configure_backends(cfg, device)
    model = model.to(device)
    if run.autocast_dtype is not None and hasattr(model, "cast_for_training"):
        model.cast_for_training(run.autocast_dtype)
    run.results["model_params"] = sum(q.numel() for q in model.parameters())
    run.lut = LutOnDevice(byte_lut(sp, model.vocab_size), device)
    val_np = np.concatenate([read_shard(f) for f in shard_files(paths.val_pattern)])
    run.val_tokens = torch.from_numpy(truncate_validation(val_np, p.evaluator.seq_len).astype(np.int32)).to(device)
    run.optimizer = p.optimizer_factory(model)
    compiled = _want_compile(cfg, device)
    train_model: nn.Module = model
    if compiled:
        run.optimizer.compile()
        train_model = torch.compile(model, dynamic=False, fullgraph=True)
    if run.dist.distributed and not getattr(run.optimizer, "syncs_gradients", False):
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(train_model, device_ids=ids, broadcast_buffers=False)
    run.model, run.train_model = model, train_model
    accum = cfg.grad_accum(run.dist.world_size)
    kernel = getattr(model, "attention_kernel", None) if device.type == "cuda" else "sdpa (cpu)"
    run.results.update(grad_accum=accum, compiled=compiled, precision=str(run.autocast_dtype or "float32"),
                       attention_kernel=kernel, optimizer_syncs_gradients=bool(getattr(run.optimizer, "syncs_gradients", False)))
    run.log(f"model {type(model).__name__} params {run.results['model_params']:,} | vocab {model.vocab_size} | batch "
            f"{cfg.batch_tokens:,} tokens x seq {cfg.seq_len} | grad_accum {accum} | compile {compiled} | precision "
            f"{run.results['precision']} | attention {kernel} | val {run.val_tokens.numel() - 1:,} tokens")
    run.loader = SequentialLoader(paths.train_pattern, rank=run.dist.rank, world_size=run.dist.world_size, device=device)


def train_stage(run: Run) -> None:
    cfg, device = run.parts.train_cfg, run.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    outcome = train(model=run.model, train_model=run.train_model, optimizer=run.optimizer, schedule=run.parts.schedule,
                    loader=run.loader, cfg=cfg, dist_info=run.dist, log=run.log, metrics=run.metrics,
                    autocast_dtype=run.autocast_dtype, validate=lambda: run.evaluate(run.model))
    run.outcome = outcome
    steps = max(outcome.steps, 1)
    run.results.update(
        qat=outcome.qat, steps=outcome.steps, stop_reason=outcome.stop_reason, train_seconds=round(outcome.train_ms / 1000, 3),
        step_avg_ms=round(outcome.train_ms / steps, 3), step_median_ms=round(outcome.step_median_ms, 3),
        tokens_per_s=round(cfg.batch_tokens * outcome.steps / max(outcome.train_ms / 1000, 1e-9), 1),
        tokens_seen=cfg.batch_tokens * outcome.steps,
        train_loss=outcome.losses, step_ms=[round(t, 2) for t in outcome.step_ms], val_history=outcome.val_history,
        peak_memory_mib=(torch.cuda.max_memory_allocated(device) // 2**20 if device.type == "cuda" else None),
    )
    if outcome.status == "diverged":
        run.results.update(status="diverged", error=outcome.stop_reason)
        run.exit_code, run.stop = 3, True


def average(run: Run) -> None:
    """Choose the exported weights (``train.export``) among raw, EMA and SWA; with more than one candidate,
    each is scored and recorded, so results.json shows what averaging bought."""
    av, wanted = run.outcome.averager, run.parts.train_cfg.export
    if av is None or not av.active:
        return
    candidates = av.candidates()
    evals = {}
    if len(candidates) > 1:
        for name, weights in candidates.items():
            av.load(weights)
            evals[name] = run.evaluate(run.model)
            run.log(f"average: {name:<3} {_fmt_eval(evals[name])}")
    choice, note = wanted, None
    if wanted == "best":
        choice = min(evals, key=lambda k: evals[k]["val_bpb"]) if evals else "raw"
        note = "chosen by validation val_bpb (as #635 did): a choice made on the scored data"
    elif wanted not in candidates:
        choice = "raw"
        note = (f"no {wanted} weights: SWA took no snapshot (the LR multiplier never went below "
                f"train.swa.lr_below={av.swa_cfg.lr_below} on a multiple of train.swa.every); exported raw")
        run.log(f"warning: {note}")
    av.load(candidates[choice])
    run.results["averaging"] = {**av.describe(), "requested": wanted, "exported": choice, "note": note,
                                "candidates": evals}
    if choice in evals:
        run.extras["prequant"] = evals[choice]


def eval_prequant(run: Run) -> None:
    r = run.results
    r["val"]["prequant"] = run.extras.pop("prequant", None) or run.evaluate(run.model)
    run.log(f"prequant {_fmt_eval(r['val']['prequant'])} | {r['steps']} steps, step_avg {r['step_avg_ms']:.1f}ms, "
            f"median {r['step_median_ms']:.1f}ms")


def quantize(run: Run) -> None:
    if run.main:
        state = run.model.export_state_dict() if hasattr(run.model, "export_state_dict") else run.model.state_dict()
        qstate = run.parts.quantizer.quantize(state)
        run.extras["qstate"] = qstate
        run.results["quant_stats"] = qstate.stats


def compress(run: Run) -> None:
    if run.main:
        qstate = run.extras.pop("qstate")
        write_artifact(run.run_dir / ARTIFACT_NAME, qstate.tensors, qstate.meta, run.parts.compressor)
    if run.dist.distributed:
        dist.barrier()


def load_artifact(run: Run) -> None:
    tensors, meta = read_artifact(run.run_dir / ARTIFACT_NAME)
    state = dequantize_state(tensors, meta)
    seed_all(run.seed)
    loaded = run.parts.model_factory().to(run.device)
    if run.autocast_dtype is not None and hasattr(loaded, "cast_for_training"):
        loaded.cast_for_training(run.autocast_dtype)
    if hasattr(loaded, "load_export_state_dict"):
        loaded.load_export_state_dict(state)
    else:
        loaded.load_state_dict(state, strict=True)
    run.loaded = loaded


def eval_roundtrip(run: Run) -> None:
    run.results["val"]["roundtrip"] = run.evaluate(run.loaded)


def account(run: Run) -> None:
    """Bytes against the budget, post-training seconds, the status line."""
    r, budget = run.results, run.parts.budget
    files = code_files()
    c_bytes = code_bytes(files)
    model_bytes = (run.run_dir / ARTIFACT_NAME).stat().st_size
    total = c_bytes + model_bytes
    root = Path(golf.__file__).resolve().parents[1]
    r["bytes"] = {
        "code": c_bytes, "model": model_bytes, "total": total, "limit": budget.artifact_bytes,
        "headroom": budget.artifact_bytes - total, "code_method": CODE_BYTES_METHOD,
        "code_files": [str(f.relative_to(root)) for f in files], "artifact": ARTIFACT_NAME,
        "codec": getattr(run.parts.compressor, "name", None), "code_sha256": code_digest(files),
    }
    r["eval_seconds"] = round(sum(r["stages_s"].get(k, 0.0) for k in POST_TRAINING), 3)
    if r["eval_seconds"] > budget.eval_seconds:
        run.log(f"warning: post-training stages took {r['eval_seconds']:.0f}s, over budget.eval_seconds="
                f"{budget.eval_seconds:.0f}")
    fits = total <= budget.artifact_bytes
    r["status"] = "ok" if fits else "over_budget"
    run.log(f"roundtrip {_fmt_eval(r['val']['roundtrip'])} | bytes: model {model_bytes:,} + code {c_bytes:,} = "
            f"{total:,} / {budget.artifact_bytes:,} {'OK' if fits else 'OVER BUDGET'}")
    if not fits:
        run.log(f"!!! OVER BUDGET by {total - budget.artifact_bytes:,} bytes: this artifact is not a valid submission !!!")
    run.metrics.summary({"val_bpb": r["val"]["roundtrip"]["val_bpb"], "val_loss": r["val"]["roundtrip"]["val_loss"],
                         "prequant_val_bpb": r["val"]["prequant"]["val_bpb"], "total_bytes": total,
                         "steps": r["steps"], "step_avg_ms": r["step_avg_ms"], "status": r["status"]})


STAGES: tuple[tuple[str, Callable[[Run], None]], ...] = (
    ("build", build), ("train", train_stage), ("average", average), ("eval_prequant", eval_prequant), ("quantize", quantize),
    ("compress", compress), ("load_artifact", load_artifact), ("eval_roundtrip", eval_roundtrip), ("account", account),
)


def run(*, run_dir, seed: int, data, model_factory, optimizer_factory, schedule, train_cfg: TrainConfig, evaluator,
        quantizer, compressor, metrics=None, budget: Budget | None = None, info: dict[str, Any] | None = None) -> dict:
    """Run every stage in this process (one rank of a torchrun job, or alone); returns the results dict."""
    run_dir = Path(run_dir)
    info = dict(info or {})
    dist_info = init_distributed(train_cfg.device)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    parts = Parts(data, model_factory, optimizer_factory, schedule, train_cfg, evaluator, quantizer, compressor,
                  budget or Budget())
    state = Run(run_dir=run_dir, seed=seed, parts=parts, dist=dist_info,
                log=RunLog(run_dir / "train.log", enabled=dist_info.is_main),
                metrics=metrics if (metrics is not None and dist_info.is_main) else NullBackend(),
                results=new_results(info=info, seed=seed, run_dir=run_dir, world_size=dist_info.world_size))
    try:
        state.results["env"] = env = provenance(dist_info.device)
        state.save()
        state.metrics.start(config=info.get("config", {}), run_dir=run_dir, name=info.get("name") or run_dir.name,
                            group=info.get("group"))
        state.log(f"golf {golf.__version__} | run {run_dir} | device {env['device']} x{dist_info.world_size} | "
                  f"git {env['git_sha'] and env['git_sha'][:10]}{' (dirty)' if env['git_dirty'] else ''}")
        for name, stage in STAGES:
            t0 = time.perf_counter()
            stage(state)
            if name != "account":
                state.results["stages_s"][name] = round(time.perf_counter() - t0, 3)
            state.save()
            if state.stop:
                break
        return state.results
    except BaseException as e:
        state.exit_code = 1
        state.results.update(status="failed", error=f"{type(e).__name__}: {e}")
        state.log(f"FAILED: {state.results['error']}\n{traceback.format_exc()}", console=False)
        state.save()
        raise
    finally:
        state.metrics.finish(state.exit_code)
        state.log.close()
        cleanup()
