"""Export stages: calibrate (Hessians of the block matrices), quantize (with the mixed-precision allocation),
compress (pruning to fit the byte budget when asked) and load the artifact back."""

from __future__ import annotations

import time

import torch.distributed as dist

from golf.calibration.hessians import collect_hessians
from golf.calibration.sources import CalibrationContext
from golf.compress.artifact import code_bytes, code_digest, code_files, read_artifact, write_artifact
from golf.compress.code_size import shipped_bytes
from golf.dist import seed_all
from golf.numerics import exact_fp32
from golf.quant.fit import ByteBudget, allocate_bits, fit_floor, prune_to_fit
from golf.quant.format import dequantize_state
from golf.run_state import ARTIFACT_NAME, Run
from golf.stages.training import calibrating


def calibrate(run: Run) -> None:
    """Hessians of the block matrices' inputs on the calibration source's tokens (every rank its share)."""
    if not calibrating(run):
        return
    src, t0 = run.parts.calibration, time.perf_counter()
    ctx = CalibrationContext(model=run.model, device=run.device, autocast_dtype=run.autocast_dtype, rank=run.dist.rank,
                             world_size=run.dist.world_size, seed=run.seed, seq_len=run.parts.train_cfg.seq_len,
                             loader=run.loader, val_tokens=run.val_tokens)
    hessians, tokens = collect_hessians(run.model, src.batches(ctx), autocast_dtype=run.autocast_dtype,
                                        world_size=run.dist.world_size)
    run.extras["hessians"] = hessians
    seconds = round(time.perf_counter() - t0, 3)
    info = {**src.describe(), "tokens": tokens, "matrices": len(hessians), "seconds": seconds}
    if src.reserve_seconds:
        info["within_reserve"] = seconds <= src.reserve_seconds
        if not info["within_reserve"]:
            run.log(f"warning: calibration took {seconds:.1f}s, over its {src.reserve_seconds:.1f}s reserve: the run "
                    f"used more than train.max_wallclock_seconds; raise calibration.reserve_seconds")
    run.results["calibration"] = info
    gen = f" (decoding {info['generate_seconds']:.1f}s)" if "generate_seconds" in info else ""
    run.log(f"calibration: {src.name}, {tokens:,} tokens, {len(hessians)} Hessians in {seconds:.1f}s{gen}"
            + ("" if src.allowed_for_record else " (validation data: not allowed for a record)"))


def byte_budget(run: Run) -> ByteBudget:
    """The limit, the compressor and the code as it would ship (counted once, from the modules loaded now)."""
    if "byte_budget" not in run.extras:
        files = code_files()
        run.extras["code"] = {"files": files, "shipped": shipped_bytes(files), "raw": code_bytes(files),
                              "sha256": code_digest(files)}
        run.extras["byte_budget"] = ByteBudget(run.parts.budget.artifact_bytes, run.extras["code"]["shipped"],
                                               run.parts.compressor)
    return run.extras["byte_budget"]


def quantize(run: Run) -> None:
    if not run.main:
        return
    q, model = run.parts.quantizer, run.model
    state = model.export_state_dict() if hasattr(model, "export_state_dict") else model.state_dict()
    hessians, bits = run.extras.pop("hessians", None), None
    with exact_fp32(run.device.type):  # GPTQ's and the allocator's float32 matmuls without TF32
        if getattr(q, "fit_scale_floor", False):
            q = _fitted_floor(run, q, state)
        if getattr(q, "allocate_max_bits", 0):
            t0 = time.perf_counter()
            bits, info = allocate_bits(state, hessians, q, byte_budget(run), base_bits=q.matrix_bits,
                                       max_bits=q.allocate_max_bits, headroom=q.allocate_headroom)
            info["seconds"] = round(time.perf_counter() - t0, 3)
            run.results.setdefault("fitting", {})["allocation"] = info
            run.log(f"allocation: layer groups by bits {info['bits_histogram']} (estimated model "
                    f"{info['estimated_model_bytes']:,} B of {info['target_model_bytes']:,}) in {info['seconds']:.1f}s")
        qstate = q.quantize(state, hessians=hessians, bits=bits)
    run.extras["qstate"] = qstate
    run.results["quant_stats"] = st = qstate.stats
    if "method" in st:
        g = st.get("gptq") or {}
        gptq = (f", GPTQ on {g['matrices']} matrices ({g['fallbacks']} fell back to RTN, {g['damping_retries']} "
                f"damping retries)") if g.get("matrices") else ""
        rows = st.get("clip_rows") or {}
        clip = f"; clip percentile chosen by rows {', '.join(f'{k}: {n:,}' for k, n in sorted(rows.items()))}" if rows else ""
        if st.get("floor_rows"):
            set_floor = getattr(q, "scale_floor", None)
            floor = "1/qmax" if set_floor is None else f"{set_floor:g} (quant.scale_floor)"
            if getattr(q, "floor_factor", 1.0) != 1.0:
                floor = f"{q.floor_factor:.4g} x {floor} (fitted)"
            clip += f"; scale at the grid's floor {floor} in {st['floor_rows']:,} of {st['matrix_rows']:,} matrix rows"
            if set_floor is None and st["floor_rows"] == st["matrix_rows"] and not getattr(q, "fit_scale_floor", False):
                clip += (": every row's grid is set by the floor, not by its weights (quant.fit_scale_floor=true "
                         "lowers it as far as the byte budget allows; quant.scale_floor=0 removes it)")
        run.log(f"quantize: {st['method']}, {st['quantized_params']:,} of {st['params']:,} parameters in "
                f"{st['seconds']:.1f}s, {st['payload_bytes']:,} B before compression{gptq}{clip}")


def _fitted_floor(run: Run, q, state):
    """``q`` with its grid floors scaled by the smallest factor whose artifact fits (golf.quant.fit.fit_floor)."""
    t0 = time.perf_counter()
    factor, info = fit_floor(state, q, byte_budget(run), headroom=q.allocate_headroom)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    run.results.setdefault("fitting", {})["scale_floor"] = info
    run.log(f"floor fitting: floors x {factor:.4g} (estimated model {info['estimated_model_bytes']:,} B of "
            f"{info['target_model_bytes']:,}; {info['model_bytes_no_floor']:,} B without a floor, "
            f"{info['model_bytes_full_floor']:,} B at the full one) in {info['seconds']:.1f}s, {info['probes']} probes")
    return q.with_floor_factor(factor)


def compress(run: Run) -> None:
    if run.main:
        qstate, q = run.extras.pop("qstate"), run.parts.quantizer
        budget = byte_budget(run)
        if getattr(q, "prune_max_abs", 0):
            qstate, info = prune_to_fit(qstate, budget, max_abs=q.prune_max_abs, real_checks=q.prune_real_checks)
            run.results.setdefault("fitting", {})["pruning"] = info
            if info["bytes_before"] <= budget.limit:
                run.log(f"pruning: not needed, {info['bytes_after']:,} B total fits ({info['headroom']:,} B headroom)")
            else:
                verdict = "fits" if info["fits"] else "STILL OVER: quant.fit_scale_floor=true coarsens the grid until it fits"
                run.log(f"pruning: {info['pruned']:,} of {info['candidates']:,} entries with |q| <= {info['max_abs']} "
                        f"zeroed, {info['bytes_after']:,} B total ({verdict}), {info['real_compressions']} real compressions")
        blob = budget.last[1] if budget.last is not None and budget.last[0] is qstate else None
        write_artifact(run.run_dir / ARTIFACT_NAME, qstate.tensors, qstate.meta, run.parts.compressor, blob)
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
