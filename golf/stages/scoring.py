"""Scoring stages: the pre-quantization and round-trip evaluations, and the account of bytes and seconds."""

from __future__ import annotations

from golf.compress.code_size import METHOD
from golf.run_state import Run, fmt_eval
from golf.stages.export import code_account
from golf.submission import SCRIPT_NAME


def eval_prequant(run: Run) -> None:
    r = run.results
    r["val"]["prequant"] = run.prequant or run.evaluate(run.model)
    run.log(f"prequant {fmt_eval(r['val']['prequant'])} | {r['steps']} steps, step_avg {r['step_avg_ms']:.1f}ms, "
            f"median {r['step_median_ms']:.1f}ms")


def _scored(r, seconds: float) -> dict:
    out = {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes,
           "seconds": round(seconds, 3), "tokens_per_s": round(r.tokens / max(seconds, 1e-9), 1)}
    return out


def eval_roundtrip(run: Run) -> None:
    """The loaded model's score, guarded by what is left of budget.eval_seconds."""
    v = run.evaluate(run.loaded, time_budget=run.parts.budget.eval_seconds - run.post_training_seconds())
    run.results["val"]["roundtrip"] = {**v, "tokens_per_s": round(v["tokens"] / max(v["seconds"], 1e-9), 1)}
    if "status" in v:
        run.log(f"roundtrip: {v['status']}")


def eval_sliding(run: Run) -> None:
    """The sliding-window score of the loaded model, guarded by what is left of budget.eval_seconds."""
    ev = run.parts.evaluator.sliding
    if ev is None:
        return
    left = run.parts.budget.eval_seconds - run.post_training_seconds()
    r = ev.evaluate(run.loaded, run.val_tokens, run.val_bytes, rank=run.dist.rank, world_size=run.dist.world_size,
                    autocast_dtype=run.autocast_dtype, time_budget=left)
    run.results["val"]["sliding"] = {**_scored(r, r.seconds), "window": ev.window, "stride": ev.stride,
                                     "windows": "records' (tail re-scored)" if ev.reproduce_record_tail else "exactly once",
                                     "status": r.status, "time_budget_s": round(left, 1)}
    run.log(f"sliding (window {ev.window}, stride {ev.stride}) {fmt_eval(run.results['val']['sliding'])} | "
            f"{r.tokens:,} tokens in {r.seconds:.1f}s ({r.tokens / max(r.seconds, 1e-9):,.0f} tokens/s)"
            + ("" if r.status == "complete" else f" | {r.status}"))


def eval_ttt(run: Run) -> None:
    """Score-first TTT on the loaded (dequantized) model, guarded by what is left of budget.eval_seconds: chunk SGD
    (golf.eval.ttt) or phased per-document LoRA (golf.eval.phased_ttt)."""
    ev = run.parts.evaluator.ttt
    if ev is None:
        return
    spent = run.post_training_seconds()
    left = run.parts.budget.eval_seconds - spent
    r = ev.evaluate(run.loaded, run.val_tokens, run.val_bytes, rank=run.dist.rank, world_size=run.dist.world_size,
                    autocast_dtype=run.autocast_dtype, time_budget=left)
    d = r.details()
    run.results["val"]["ttt"] = {**_scored(r, r.seconds), **d, "status": r.status, "time_budget_s": round(left, 1)}
    done = (f"{d['chunks_scored']}/{d['chunks']} chunks" if "chunks" in d else
            f"{d['docs_scored']}/{d['docs']} documents, {d['phases_done']} phases")
    run.log(f"ttt ({d['method']}) {fmt_eval(run.results['val']['ttt'])} | {done} in {r.seconds:.1f}s | {r.status}")


def account(run: Run) -> None:
    """Bytes against the budget, post-training seconds, the quantization gap, the status line."""
    r, budget = run.results, run.parts.budget
    code = code_account(run)
    model_bytes = (run.files.artifact).stat().st_size
    total = code.shipped + model_bytes
    r["bytes"] = {
        "code": code.shipped, "code_raw": code.raw, "model": model_bytes, "total": total,
        "limit": budget.artifact_bytes, "headroom": budget.artifact_bytes - total, "code_method": METHOD,
        "code_script": SCRIPT_NAME, "code_files": list(code.files),
        "artifact": run.files.artifact.name, "codec": getattr(run.parts.compressor, "name", None), "code_sha256": code.sha256,
    }
    r["eval_seconds"] = round(run.post_training_seconds(), 3)
    if r["eval_seconds"] > budget.eval_seconds:
        run.log(f"warning: post-training stages took {r['eval_seconds']:.0f}s, over budget.eval_seconds="
                f"{budget.eval_seconds:.0f}")
    fits = total <= budget.artifact_bytes
    _conclude(r, "ok" if fits else "over_budget")
    run.log(f"roundtrip {fmt_eval(r['val']['roundtrip'])} | bytes: model {model_bytes:,} + code {code.shipped:,} "
            f"= {total:,} / {budget.artifact_bytes:,} {'OK' if fits else 'OVER BUDGET'}")
    gap = quantization_gap(r)
    if gap:
        run.log(gap)
    if not fits:
        run.log(f"!!! OVER BUDGET by {total - budget.artifact_bytes:,} bytes: this artifact is not a valid submission !!!")
    run.metrics.summary(dashboard_summary(r))


def report(run: Run) -> None:
    """The closing lines of scoring an artifact alone (``golf.score``): its bytes and the headline."""
    r, size = run.results, run.files.artifact.stat().st_size
    r["bytes"] = {"model": size, "artifact": str(run.files.artifact)}
    _conclude(r, "ok")
    run.log(f"roundtrip {fmt_eval(r['val']['roundtrip'])} | artifact {run.files.artifact} {size:,} B")
    run.log(f"headline ({r['headline']['eval']}) {fmt_eval(r['headline'])}")


def _conclude(r: dict, status: str) -> None:
    """The status (partial_eval where a time guard stopped an eval) and the headline: TTT, else
    sliding, else the round trip."""
    cut = any(r["val"].get(k) and r["val"][k].get("status", "complete") != "complete" for k in ("ttt", "sliding", "roundtrip"))
    r["status"] = "partial_eval" if status == "ok" and cut else status
    headline = next(k for k in ("ttt", "sliding", "roundtrip") if r["val"].get(k))
    r["headline"] = {"eval": headline, "val_bpb": r["val"][headline]["val_bpb"], "val_loss": r["val"][headline]["val_loss"]}


GAP_WARNING = 0.01  # bpb between the float model and the artifact's round trip


def quantization_gap(r: dict) -> str | None:
    """One warning line when the round trip loses more than GAP_WARNING bpb to quantization, naming the causes
    results.json shows (rows at the grid's floor, pruning, narrow bits) and the key that changes each."""
    pre, rt = r["val"].get("prequant"), r["val"].get("roundtrip")
    if not pre or not rt or rt["val_bpb"] - pre["val_bpb"] <= GAP_WARNING:
        return None
    st, fitting, causes = r.get("quant_stats") or {}, r.get("fitting") or {}, []
    if st.get("matrix_rows") and st.get("floor_rows", 0) >= 0.5 * st["matrix_rows"]:
        floor = fitting.get("scale_floor")
        share = f"{st['floor_rows'] / st['matrix_rows']:.0%} of matrix rows at the grid's floor"
        causes.append(f"{share}, fitted x{floor['factor']:.3g} to fill the budget (a larger budget.artifact_bytes or "
                      f"more quant.matrix_bits)" if floor else f"{share} (quant.fit_scale_floor=true lowers it)")
    pruned = (fitting.get("pruning") or {}).get("pruned", 0)
    if pruned:
        causes.append(f"{pruned:,} entries pruned to fit (quant.prune_max_abs=0 stops it)")
    narrow = sorted(int(b) for b in st.get("bits") or {} if int(b) <= 5)
    if narrow:
        causes.append(f"int{narrow[0]} weights (quant.matrix_bits, quant.allocate_max_bits)")
    why = "; ".join(causes) or "no floor, pruning or narrow bits to blame: try quant.method=gptq or quant.matrix_bits"
    return (f"warning: quantization costs {rt['val_bpb'] - pre['val_bpb']:+.4f} bpb (round trip {rt['val_bpb']:.4f} vs "
            f"{pre['val_bpb']:.4f} before): {why}")


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
