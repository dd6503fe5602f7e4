"""Scoring stages: the pre-quantization and round-trip evaluations, and the account of bytes and seconds."""

from __future__ import annotations

from pathlib import Path

import golf
from golf.compress.code_size import METHOD
from golf.run_state import ARTIFACT_NAME, Run, fmt_eval
from golf.stages.export import byte_budget

POST_TRAINING = ("average", "calibrate", "eval_prequant", "quantize", "compress", "load_artifact", "eval_roundtrip",
                 "eval_sliding", "eval_ttt")


def eval_prequant(run: Run) -> None:
    r = run.results
    r["val"]["prequant"] = run.extras.pop("prequant", None) or run.evaluate(run.model)
    run.log(f"prequant {fmt_eval(r['val']['prequant'])} | {r['steps']} steps, step_avg {r['step_avg_ms']:.1f}ms, "
            f"median {r['step_median_ms']:.1f}ms")


def _scored(r, seconds: float) -> dict:
    out = {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes,
           "seconds": round(seconds, 3), "tokens_per_s": round(r.tokens / max(seconds, 1e-9), 1)}
    return out


def eval_roundtrip(run: Run) -> None:
    v = run.evaluate(run.loaded)
    run.results["val"]["roundtrip"] = {**v, "tokens_per_s": round(v["tokens"] / max(v["seconds"], 1e-9), 1)}


def eval_sliding(run: Run) -> None:
    ev = getattr(run.parts.evaluator, "sliding", None)
    if ev is None:
        return
    r = ev.evaluate(run.loaded, run.val_tokens, run.lut, rank=run.dist.rank, world_size=run.dist.world_size,
                    autocast_dtype=run.autocast_dtype)
    run.results["val"]["sliding"] = {**_scored(r, r.seconds), "window": ev.window, "stride": ev.stride,
                                     "windows": "records' (tail re-scored)" if ev.reproduce_record_tail else "exactly once"}
    run.log(f"sliding (window {ev.window}, stride {ev.stride}) {fmt_eval(run.results['val']['sliding'])} | "
            f"{r.tokens:,} tokens in {r.seconds:.1f}s ({r.tokens / max(r.seconds, 1e-9):,.0f} tokens/s)")


def eval_ttt(run: Run) -> None:
    """Score-first TTT on the loaded (dequantized) model, guarded by what is left of budget.eval_seconds."""
    ev = getattr(run.parts.evaluator, "ttt", None)
    if ev is None:
        return
    spent = sum(run.results["stages_s"].get(k, 0.0) for k in POST_TRAINING)
    left = run.parts.budget.eval_seconds - spent
    r = ev.evaluate(run.loaded, run.val_tokens, run.lut, rank=run.dist.rank, world_size=run.dist.world_size,
                    autocast_dtype=run.autocast_dtype, time_budget=left)
    run.results["val"]["ttt"] = {**_scored(r, r.seconds), "chunks": r.chunks, "chunks_scored": r.chunks_scored,
                                 "status": r.status, "time_budget_s": round(left, 1)}
    run.log(f"ttt {fmt_eval(run.results['val']['ttt'])} | {r.chunks_scored}/{r.chunks} chunks in {r.seconds:.1f}s | {r.status}")


def account(run: Run) -> None:
    """Bytes against the budget, post-training seconds, the status line."""
    r, budget = run.results, run.parts.budget
    byte_budget(run)
    code = run.extras["code"]
    model_bytes = (run.run_dir / ARTIFACT_NAME).stat().st_size
    total = code["shipped"] + model_bytes
    root = Path(golf.__file__).resolve().parents[1]
    r["bytes"] = {
        "code": code["shipped"], "code_raw": code["raw"], "model": model_bytes, "total": total,
        "limit": budget.artifact_bytes, "headroom": budget.artifact_bytes - total, "code_method": METHOD,
        "code_files": [str(f.relative_to(root)) for f in code["files"]], "artifact": ARTIFACT_NAME,
        "codec": getattr(run.parts.compressor, "name", None), "code_sha256": code["sha256"],
    }
    r["eval_seconds"] = round(sum(r["stages_s"].get(k, 0.0) for k in POST_TRAINING), 3)
    if r["eval_seconds"] > budget.eval_seconds:
        run.log(f"warning: post-training stages took {r['eval_seconds']:.0f}s, over budget.eval_seconds="
                f"{budget.eval_seconds:.0f}")
    fits = total <= budget.artifact_bytes
    r["status"] = "ok" if fits else "over_budget"
    ttt = r["val"].get("ttt")
    if ttt and ttt["status"] != "complete" and fits:
        r["status"] = "partial_eval"  # the TTT score covers only what the time guard let it score
    headline = next(k for k in ("ttt", "sliding", "roundtrip") if r["val"].get(k))
    r["headline"] = {"eval": headline, "val_bpb": r["val"][headline]["val_bpb"], "val_loss": r["val"][headline]["val_loss"]}
    run.log(f"roundtrip {fmt_eval(r['val']['roundtrip'])} | bytes: model {model_bytes:,} + code {code['shipped']:,} "
            f"(raw {code['raw']:,}) = {total:,} / {budget.artifact_bytes:,} {'OK' if fits else 'OVER BUDGET'}")
    if not fits:
        run.log(f"!!! OVER BUDGET by {total - budget.artifact_bytes:,} bytes: this artifact is not a valid submission !!!")
    run.metrics.summary(dashboard_summary(r))


def dashboard_summary(r: dict) -> dict:
    """The run's summary on the dashboard: headline, every eval, bytes, step time, stage seconds, status."""
    out = {"val_bpb": r["headline"]["val_bpb"], "val_loss": r["headline"]["val_loss"],
           "headline_eval": r["headline"]["eval"], "status": r["status"], "steps": r["steps"],
           "step_avg_ms": r["step_avg_ms"], "eval_seconds": r["eval_seconds"]}
    for stage, v in r["val"].items():
        for key in ("val_bpb", "val_loss", "seconds"):
            if isinstance(v, dict) and v.get(key) is not None:
                out[f"eval/{stage}/{key}"] = v[key]
    out.update({f"bytes/{k}": r["bytes"][k] for k in ("total", "model", "code", "headroom")})
    out.update({f"stages_s/{k}": v for k, v in r["stages_s"].items()})
    return out
