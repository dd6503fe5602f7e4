"""Scoring stages: the pre-quantization and round-trip evaluations, and the account of bytes and seconds."""

from __future__ import annotations

from pathlib import Path

import golf
from golf.compress.code_size import METHOD
from golf.run_state import ARTIFACT_NAME, Run, fmt_eval
from golf.stages.export import byte_budget

POST_TRAINING = ("average", "calibrate", "eval_prequant", "quantize", "compress", "load_artifact", "eval_roundtrip")


def eval_prequant(run: Run) -> None:
    r = run.results
    r["val"]["prequant"] = run.extras.pop("prequant", None) or run.evaluate(run.model)
    run.log(f"prequant {fmt_eval(r['val']['prequant'])} | {r['steps']} steps, step_avg {r['step_avg_ms']:.1f}ms, "
            f"median {r['step_median_ms']:.1f}ms")


def eval_roundtrip(run: Run) -> None:
    run.results["val"]["roundtrip"] = run.evaluate(run.loaded)


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
    run.log(f"roundtrip {fmt_eval(r['val']['roundtrip'])} | bytes: model {model_bytes:,} + code {code['shipped']:,} "
            f"(raw {code['raw']:,}) = {total:,} / {budget.artifact_bytes:,} {'OK' if fits else 'OVER BUDGET'}")
    if not fits:
        run.log(f"!!! OVER BUDGET by {total - budget.artifact_bytes:,} bytes: this artifact is not a valid submission !!!")
    run.metrics.summary({"val_bpb": r["val"]["roundtrip"]["val_bpb"], "val_loss": r["val"]["roundtrip"]["val_loss"],
                         "prequant_val_bpb": r["val"]["prequant"]["val_bpb"], "total_bytes": total,
                         "steps": r["steps"], "step_avg_ms": r["step_avg_ms"], "status": r["status"]})
