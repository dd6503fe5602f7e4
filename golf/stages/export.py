"""Export stages: calibrate (Hessians of the block matrices), quantize (floor fitting, bit allocation, GPTQ:
``golf.quant.pack.quantize``), compress (pruning and the real codec: ``golf.quant.pack.compress``) and load the
artifact back. The byte budget's code half is the run's submission script (``golf.submission``)."""

from __future__ import annotations

import time

import torch.distributed as dist

from golf import submission
from golf.calibration.hessians import collect_hessians, head_name
from golf.calibration.sources import CalibrationContext
from golf.compress.artifact import read_artifact, write_artifact
from golf.compress.code_size import CodeAccount
from golf.dist import seed_all
from golf.quant import pack
from golf.quant.fit import ByteBudget
from golf.quant.format import dequantize_state
from golf.run_state import Run


def calibrate(run: Run) -> None:
    """Hessians of the block matrices' inputs on the calibration source's tokens (every rank its share)."""
    if not run.parts.calibrating:
        return
    src, t0 = run.parts.calibration, time.perf_counter()
    ctx = CalibrationContext(model=run.model, device=run.device, autocast_dtype=run.autocast_dtype, rank=run.dist.rank,
                             world_size=run.dist.world_size, seed=run.seed, seq_len=run.parts.train_cfg.seq_len,
                             loader=run.loader, val_tokens=run.val_tokens)
    hessians, tokens = collect_hessians(run.model, src.batches(ctx), autocast_dtype=run.autocast_dtype,
                                        world_size=run.dist.world_size)
    run.hessians = hessians
    seconds = round(time.perf_counter() - t0, 3)
    head = head_name(run.model)
    info = {**src.describe(), "tokens": tokens, "matrices": len(hessians) - (head in hessians), "head": head in hessians,
            "seconds": seconds}
    if src.reserve_seconds:
        info["within_reserve"] = seconds <= src.reserve_seconds
        if not info["within_reserve"]:
            run.log(f"warning: calibration took {seconds:.1f}s, over its {src.reserve_seconds:.1f}s reserve: the run "
                    f"used more than train.max_wallclock_seconds; raise calibration.reserve_seconds")
    run.results["calibration"] = info
    gen = f" (decoding {info['generate_seconds']:.1f}s)" if "generate_seconds" in info else ""
    run.log(f"calibration: {src.name}, {tokens:,} tokens, {info['matrices']} matrix Hessians + the head's in {seconds:.1f}s{gen}"
            + ("" if src.allowed_for_record else " (validation data: not allowed for a record)"))


def code_account(run: Run) -> CodeAccount:
    """The run's submission script, made once and written beside its results (its bytes are the code the budget
    counts; ``golf.submission``)."""
    if run.code is None:
        run.code = submission.account(run.config)
        if run.main and submission.RUNNING is None:
            (run.run_dir / submission.SCRIPT_NAME).write_text(run.code.script, encoding="utf-8")
    return run.code


def byte_budget(run: Run) -> ByteBudget:
    return ByteBudget(run.parts.budget.artifact_bytes, code_account(run).shipped, run.parts.compressor)


def quantize(run: Run) -> None:
    """The exported weights quantized against the byte budget (``golf.quant.pack.quantize``)."""
    if not run.main:
        return
    state = run.model.export_state_dict() if hasattr(run.model, "export_state_dict") else run.model.state_dict()
    hessians, run.hessians = run.hessians, None
    run.quantized = pack.quantize(state, run.parts.quantizer, byte_budget(run), hessians=hessians, log=run.log,
                                  device_type=run.device.type)
    q = run.quantized
    run.results["quant_stats"] = q.qstate.stats
    if q.fitting:
        run.results["fitting"] = q.fitting
    if "method" in q.qstate.stats:
        run.log(quantize_line(q.qstate.stats, q.quantizer))


def quantize_line(st: dict, q) -> str:
    """The quantize stage's console line: method, counts, GPTQ, the clips chosen, rows at the grid's floor."""
    g = st.get("gptq") or {}
    gptq = (f", GPTQ on {g['matrices']} matrices ({g['fallbacks']} fell back to RTN, {g['damping_retries']} "
            f"damping retries)") if g.get("matrices") else ""
    rows = st.get("clip_rows") or {}
    clip = f"; clip percentile chosen by rows {', '.join(f'{k}: {n:,}' for k, n in sorted(rows.items()))}" if rows else ""
    if st.get("floor_rows"):
        floor = "1/qmax" if q.scale_floor is None else f"{q.scale_floor:g} (quant.scale_floor)"
        if q.floor_factor != 1.0:
            floor = f"{q.floor_factor:.4g} x {floor} (fitted)"
        clip += f"; scale at the grid's floor {floor} in {st['floor_rows']:,} of {st['matrix_rows']:,} matrix rows"
        if q.scale_floor is None and st["floor_rows"] == st["matrix_rows"] and not q.fit.floor:
            clip += (": every row's grid is set by the floor, not by its weights (quant.fit_scale_floor=true "
                     "lowers it as far as the byte budget allows; quant.scale_floor=0 removes it)")
    return (f"quantize: {st['method']}, {st['quantized_params']:,} of {st['params']:,} parameters in "
            f"{st['seconds']:.1f}s, {st['payload_bytes']:,} B before compression{gptq}{clip}")


def compress(run: Run) -> None:
    """Pruning to the limit where allowed, the real codec, the artifact written (``golf.quant.pack.compress``)."""
    if run.main:
        quantized, run.quantized = run.quantized, None
        run.packed = pack.compress(quantized, byte_budget(run), log=run.log, device_type=run.device.type)
        if run.packed.fitting:
            run.results["fitting"] = run.packed.fitting
        run.results["quant_stats"] = run.packed.qstate.stats
        write_artifact(run.files.artifact, run.packed.blob)
    if run.dist.distributed:
        dist.barrier()


def load_artifact(run: Run) -> None:
    tensors, meta = read_artifact(run.files.artifact)
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
