"""Compare quantizers on one trained model: train once (saving the exported float weights), then run every
``quant`` preset on those same weights (no training: ``train.iterations=0 train.load_weights=...``), and
tabulate the quantization gap (round-trip val_bpb minus pre-quant), artifact bytes and stage seconds.

    python scripts/quant_table.py --recipe "model=xsa_all optimizer=parallel_muon data=enwiki_sp1024 ..." \
        --train-seconds 180 --presets gptq_ar,gptq,int6_gptq_lite,int6,mixed --out runs/quant

``--weights FILE`` skips the training run; ``--presets ""`` only trains. Every row is appended to
``quant_table.json`` as it finishes. A preset may carry its own overrides after a colon, as its own row:
``--presets "gptq_ar,gptq_ar:quant.scale_floor=0"``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from golf.launch import run_to_deadline  # noqa: E402
from golf.results import write_json_atomic  # noqa: E402


def golf(overrides: list[str], run_dir: Path, timeout: float) -> dict:
    (run_dir / "results.json").unlink(missing_ok=True)  # a re-used --out must not report an earlier run's numbers
    cmd = [sys.executable, "-m", "golf.train", *overrides, "logger=none", f"hydra.run.dir={run_dir}"]
    with (run_dir.parent / f"{run_dir.name}.stdout.txt").open("w") as log:
        run_to_deadline(cmd, timeout=timeout, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    path = run_dir / "results.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "no results"}


def applicable(recipe: list[str], preset: str, overrides: list[str]) -> tuple[list[str], list[str]]:
    """The overrides whose key exists once ``quant=preset`` is composed (e.g. calibration.* only where a
    preset calibrates), and the ones left out."""
    from omegaconf import OmegaConf

    from scripts.bench import compose

    cfg = compose([*recipe, f"quant={preset}"])
    keep = [o for o in overrides if OmegaConf.select(cfg, o.split("=", 1)[0]) is not None]
    return keep, [o for o in overrides if o not in keep]


def row(preset: str, r: dict) -> dict:
    val, st = r.get("val") or {}, r.get("stages_s") or {}
    pre, rt = (val.get("prequant") or {}).get("val_bpb"), (val.get("roundtrip") or {}).get("val_bpb")
    b = r.get("bytes") or {}
    return {"preset": preset, "status": r.get("status"), "prequant": pre, "roundtrip": rt,
            "gap": None if pre is None or rt is None else rt - pre, "model_bytes": b.get("model"), "total_bytes": b.get("total"),
            "calibrate_s": st.get("calibrate"), "quantize_s": st.get("quantize"), "compress_s": st.get("compress"),
            "calibration": (r.get("calibration") or {}).get("source"), "fitting": r.get("fitting"), "error": r.get("error"),
            "decode_s": (r.get("calibration") or {}).get("generate_seconds"),
            "allocate_s": ((r.get("fitting") or {}).get("allocation") or {}).get("seconds")}


def fitting_summary(x: dict) -> str:
    """What fitting did, in a table cell: the floor's factor, the promoted bit widths, the entries pruned."""
    fit, parts = x.get("fitting") or {}, []
    if "scale_floor" in fit:
        sf = fit["scale_floor"]
        parts.append(f"floor x{sf['factor']:.3g} in {sf['seconds']:.1f}s" if "seconds" in sf else f"floor x{sf['factor']:.3g}")
    if fit.get("refits"):
        parts.append(f"{len(fit['refits'])} refit(s)")
    if "allocation" in fit:
        parts.append(", ".join(f"int{b}: {n} groups" for b, n in fit["allocation"]["bits_histogram"].items()))
    if fit.get("pruning", {}).get("pruned"):
        parts.append(f"{fit['pruning']['pruned']:,} pruned")
    if x.get("status") != "ok":
        parts.append(str(x.get("status")).upper())
    return ", ".join(parts) or "-"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", required=True, help="golf overrides of the trained model (one string)")
    p.add_argument("--train-seconds", type=float, default=180)
    p.add_argument("--presets", default="gptq_ar,gptq,int6_gptq_lite,int6,mixed")
    p.add_argument("--quant-overrides", default="", help="overrides for the preset runs only (e.g. calibration.*)")
    p.add_argument("--weights", type=Path, help="float weights of an earlier run (skips training)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=900, help="per golf run, seconds")
    a = p.parse_args(argv)
    a.out = a.out.resolve()  # the golf runs start in the repository root
    a.out.mkdir(parents=True, exist_ok=True)
    recipe = shlex.split(a.recipe)
    table_path, rows = a.out / "quant_table.json", []
    weights = a.weights.resolve() if a.weights else None
    if weights is None:
        t0 = time.perf_counter()
        r = golf([*recipe, f"train.max_wallclock_seconds={a.train_seconds}", "train.save_weights=true"], a.out / "train",
                 a.timeout)
        if r.get("status") not in ("ok", "over_budget"):
            sys.exit(f"training run failed: {r.get('error')} (see {a.out / 'train.stdout.txt'})")
        weights = a.out / "train" / r["weights"]
        rows.append({**row("trained (" + str((r.get('bytes') or {}).get('codec')) + ")", r), "steps": r.get("steps"),
                     "step_avg_ms": r.get("step_avg_ms"), "seconds": round(time.perf_counter() - t0, 1)})
        write_json_atomic(table_path, rows)
    for i, entry in enumerate(e for e in a.presets.split(",") if e):
        preset, _, own = entry.partition(":")
        extra, skipped = applicable(recipe, preset, shlex.split(a.quant_overrides))
        run_name = preset if not own else f"{preset}_{i}"
        r = golf([*recipe, "train.iterations=0", f"train.load_weights={weights}", f"quant={preset}", *extra,
                  *shlex.split(own)], a.out / run_name, a.timeout)
        rows.append({**row(entry, r), "overrides_not_applicable": skipped})
        write_json_atomic(table_path, rows)
        print(f"{entry}: {rows[-1]['status']} gap {rows[-1]['gap']}", flush=True)
    print("\n| quant | calibration | pre-quant val_bpb | round trip | gap | model bytes | total bytes | calibrate s | "
          "quantize s | compress s | fitting |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
        calib = f(x['calibrate_s'], '.1f') + (f" (AR decoding {x['decode_s']:.1f})" if x.get("decode_s") is not None else "")
        quant = f(x['quantize_s'], '.1f') + (f" (allocation {x['allocate_s']:.1f})" if x.get("allocate_s") is not None else "")
        print(f"| {x['preset']} | {x['calibration'] or '-'} | {f(x['prequant'], '.4f')} | {f(x['roundtrip'], '.4f')} | "
              f"{f(x['gap'], '+.4f')} | {f(x['model_bytes'], ',')} | {f(x['total_bytes'], ',')} | {calib} | "
              f"{quant} | {f(x['compress_s'], '.1f')} | {fitting_summary(x)} |")


if __name__ == "__main__":
    main()
