"""Training stages: build (data, tokenizer tables, the seeded model, optimizer, compiled/DDP wrapper, loader),
train (the wallclock cap less any calibration reserve) and average (choose the exported weights)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from golf.compress.artifact import MAGIC, read_artifact
from golf.data.caseops import check_caseops_tokenizer
from golf.data.shards import read_shard, read_sidecars, shard_files
from golf.data.sources import DataPaths
from golf.data.tokenizer import byte_lut, load_sentencepiece
from golf.dist import seed_all
from golf.eval.bpb import LutOnDevice, TargetBytes, truncate_validation
from golf.kernels.report import kernel_report
from golf.quant.format import dequantize_state
from golf.run_state import ARTIFACT_NAME, Parts, Run, VocabMismatch, fmt_eval
from golf.trainer import TrainConfig, TrainOutcome, inductor_setting, train

WEIGHTS_NAME = "weights.safetensors"


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


def compile_model(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``torch.compile`` of the training forward+backward with ``train.compile_mode`` and the inductor
    settings of ``train.inductor`` (applied process-wide: a run is one process per rank)."""
    import torch._inductor.config as inductor_config

    for key, value in cfg.inductor.items():
        setattr(*inductor_setting(inductor_config, key), value)
    return torch.compile(model, dynamic=False, fullgraph=True, mode=cfg.compile_mode)


def _want_compile(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.compile == "auto":
        return device.type == "cuda"
    if isinstance(cfg.compile, bool):
        return cfg.compile
    raise ValueError(f"train.compile must be true, false or auto, got {cfg.compile!r}")


def prepare(run: Run) -> DataPaths:
    """Data, the tokenizer's byte tables, the validation tokens and the precision: what scoring needs."""
    p = run.parts
    paths = p.data.prepare()
    sp = load_sentencepiece(paths.tokenizer)
    if int(sp.vocab_size()) != paths.vocab_size:
        raise VocabMismatch(f"tokenizer {paths.tokenizer} has vocabulary {sp.vocab_size()} but data.vocab_size="
                            f"{paths.vocab_size}; set data.vocab_size (and model.vocab_size) to {sp.vocab_size()}")
    run.autocast_dtype = configure_backends(p.train_cfg, run.device)
    val_files = shard_files(paths.val_pattern)
    val_np = truncate_validation(np.concatenate([read_shard(f) for f in val_files]), p.evaluator.seq_len)
    run.val_tokens = torch.from_numpy(val_np.astype(np.int32)).to(run.device)
    if paths.byte_sidecar:  # CaseOps: the original text's bytes, from the sidecars beside the val shards
        check_caseops_tokenizer(sp, paths.tokenizer)
        run.val_bytes = TargetBytes.of_sidecar(read_sidecars(val_files)[: val_np.size], run.device)
    else:
        run.val_bytes = TargetBytes.of_lut(LutOnDevice(byte_lut(sp, paths.vocab_size), run.device), run.val_tokens)
    return paths


def build(run: Run) -> None:
    """``prepare``, then the model (seeded), optimizer, compiled/DDP wrapper and training loader."""
    p, cfg = run.parts, run.parts.train_cfg
    paths = prepare(run)
    seed_all(run.seed)
    model = p.model_factory()
    if getattr(model, "vocab_size", None) != paths.vocab_size:
        raise VocabMismatch(f"model.vocab_size={getattr(model, 'vocab_size', None)} does not match the tokenizer "
                            f"{paths.tokenizer} (vocabulary {paths.vocab_size}); refusing to train")
    _check_documents(run, model, p.loader_factory, paths)
    device = run.device
    model = model.to(device)
    if run.autocast_dtype is not None and hasattr(model, "cast_for_training"):
        model.cast_for_training(run.autocast_dtype)
    run.results["model_params"] = sum(q.numel() for q in model.parameters())
    if cfg.load_weights:
        load_weights(model, cfg.load_weights)
        run.results["loaded_weights"] = str(cfg.load_weights)
    _check_calibration(p, model)
    run.optimizer = p.optimizer_factory(model)
    compiled = _want_compile(cfg, device)
    train_model: nn.Module = model
    if compiled:
        run.optimizer.compile()
        train_model = compile_model(model, cfg)
    if run.dist.distributed and not getattr(run.optimizer, "syncs_gradients", False):
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(train_model, device_ids=ids, broadcast_buffers=False)
    run.model, run.train_model = model, train_model
    accum = cfg.grad_accum(run.dist.world_size)
    kernel = getattr(model, "attention_kernel", None) if device.type == "cuda" else "sdpa (cpu)"
    run.results.update(grad_accum=accum, compiled=compiled, precision=str(run.autocast_dtype or "float32"),
                       compile_mode=cfg.compile_mode if compiled else None, inductor=dict(cfg.inductor),
                       attention_kernel=kernel, optimizer_syncs_gradients=bool(getattr(run.optimizer, "syncs_gradients", False)))
    if hasattr(model, "blocks") and hasattr(model, "ce_mode"):
        run.results["kernels"] = kernel_report(model, device)
        for family, line in run.results["kernels"].items():
            run.log(f"kernel {family}: {line}")
    run.log(f"model {type(model).__name__} params {run.results['model_params']:,} | vocab {model.vocab_size} | batch "
            f"{cfg.batch_tokens:,} tokens x seq {cfg.seq_len} | grad_accum {accum} | compile {compiled} | precision "
            f"{run.results['precision']} | attention {kernel} | val {run.val_tokens.numel() - 1:,} tokens")
    run.loader = p.loader_factory(paths.train_pattern, rank=run.dist.rank, world_size=run.dist.world_size, device=device)


def _check_documents(run: Run, model: nn.Module, loader_factory, paths: DataPaths) -> None:
    """The packing loader's flat rows need document masking (one 98,304-token row attended densely would cost
    ~50x a step): it is switched on, and said. Document masking needs the tokenizer's BOS id."""
    loader_cls = getattr(loader_factory, "func", loader_factory)
    loader_bos = getattr(loader_factory, "keywords", {}).get("bos_id", 1)
    flat = getattr(loader_cls, "flat", False)
    if flat and hasattr(model, "doc_mask") and not model.doc_mask:
        model.doc_mask = True
        run.log("loader=packed: model.doc_mask switched on (its rows pack documents; attention keeps them apart, "
                f"cut every model.doc_max_len={model.doc_max_len} tokens)")
    if flat and not getattr(model, "doc_mask", False):
        raise ValueError(f"loader=packed needs a model that masks documents; {type(model).__name__} has no doc_mask")
    run.results["doc_mask"] = bool(getattr(model, "doc_mask", False))
    if run.results["doc_mask"]:
        bos = int(load_sentencepiece(paths.tokenizer).bos_id())
        checks = [("model.bos_id", model.bos_id)] + ([("loader.bos_id", loader_bos)] if flat else [])
        for key, value in checks:
            if value != bos:
                raise ValueError(f"{key}={value} but the tokenizer {paths.tokenizer} starts documents with id {bos}; "
                                 f"set {key}={bos}")


def _check_calibration(p: Parts, model: nn.Module) -> None:
    """Fail before training when the quantizer needs Hessians the calibration source cannot give."""
    if p.quantizer.needs_hessians and not p.calibration.enabled:
        raise ValueError(f"quant.method={p.quantizer.method} needs calibration data but calibration="
                         f"{p.calibration.name} gives none; choose calibration=train (inside the training budget), "
                         f"ar (self-generated), val (not allowed for a record) or random")
    if p.calibration.enabled:
        p.calibration.check(model, p.train_cfg.max_wallclock_seconds or None)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Weights into ``model``: a golf artifact (``model.golf``, dequantized) or the float weights a run saved
    (``train.save_weights``, safetensors); names the file and what it expected on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train.load_weights: no file {path} (a run writes <run_dir>/{ARTIFACT_NAME}, and with "
                                f"train.save_weights=true <run_dir>/{WEIGHTS_NAME})")
    device = next(model.parameters()).device
    if path.read_bytes()[:4] == MAGIC:
        tensors, meta = read_artifact(path)
        state = {k: v.to(device) for k, v in dequantize_state(tensors, meta).items()}
    else:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device=str(device))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"train.load_weights: {path} is neither a golf artifact (model.golf) nor safetensors "
                             f"weights (weights.safetensors): {e}") from None
    try:
        if hasattr(model, "load_export_state_dict"):
            model.load_export_state_dict(state)
        else:
            model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as e:
        raise ValueError(f"train.load_weights: {path} does not fit this model config: {e}") from None


def train_stage(run: Run) -> None:
    cfg, device = run.parts.train_cfg, run.device
    if cfg.iterations == 0:  # re-export loaded weights: no training, nothing to average
        run.outcome = TrainOutcome(stop_reason=f"no training: weights from {cfg.load_weights}")
        run.results.update(steps=0, stop_reason=run.outcome.stop_reason, train_seconds=0.0, step_avg_ms=0.0,
                           step_median_ms=0.0, tokens_per_s=0.0, tokens_seen=0, train_loss=[], step_ms=[])
        return
    reserve = run.parts.calibration.reserve_seconds if run.parts.calibrating else 0.0
    if reserve and cfg.max_wallclock_seconds:
        cfg = dataclasses.replace(cfg, max_wallclock_seconds=cfg.max_wallclock_seconds - reserve)
        run.results["train_budget"] = {"wallclock_seconds": run.parts.train_cfg.max_wallclock_seconds,
                                       "reserved_for_calibration": reserve, "training_cap": cfg.max_wallclock_seconds}
        run.log(f"training cap {cfg.max_wallclock_seconds:.1f}s: {reserve:.1f}s of "
                f"{run.parts.train_cfg.max_wallclock_seconds:.0f}s reserved for calibration={run.parts.calibration.name}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    outcome = train(model=run.model, train_model=run.train_model, optimizer=run.optimizer, schedule=run.parts.schedule,
                    loader=run.loader, cfg=cfg, dist_info=run.dist, log=run.log, metrics=run.metrics,
                    autocast_dtype=run.autocast_dtype, validate=lambda: run.evaluate(run.model))
    run.outcome = outcome
    steps = max(outcome.steps, 1)
    run.results.update(
        qat=outcome.qat, loop=outcome.loop, cudagraph_skips=outcome.cudagraph_skips, steps=outcome.steps, stop_reason=outcome.stop_reason,
        train_seconds=round(outcome.train_ms / 1000, 3),
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
    each is scored and recorded, so results.json shows what averaging bought. Then save them if asked."""
    av, wanted = run.outcome.averager, run.parts.train_cfg.export
    if av is None or not av.active:
        return save_weights(run)
    candidates = av.candidates()
    evals = {}
    if len(candidates) > 1:
        for name, weights in candidates.items():
            av.load(weights)
            evals[name] = run.evaluate(run.model)
            run.log(f"average: {name:<3} {fmt_eval(evals[name])}")
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
        run.prequant = evals[choice]
    save_weights(run)


def save_weights(run: Run) -> None:
    """With ``train.save_weights``: the exported float weights, for re-quantizing later without training."""
    if run.parts.train_cfg.save_weights and run.main:
        from safetensors.torch import save_file

        model = run.model
        state = model.export_state_dict() if hasattr(model, "export_state_dict") else model.state_dict()
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(run.run_dir / WEIGHTS_NAME))
        run.results["weights"] = WEIGHTS_NAME
