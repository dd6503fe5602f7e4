"""A challenge submission folder from a run or a seed sweep: ``python -m golf.export RUN_OR_SWEEP_DIR OUT_DIR``.

It writes what the records' folders hold: ``train_gpt.py`` (the runs' own submission script, self-contained:
``torchrun --standalone --nproc_per_node=8 train_gpt.py`` trains, writes and scores the same artifact where golf
is not installed), ``submission.json`` (the records' fields: the mean and std over seeds, each seed's result,
the bytes, the hardware and versions), a README.md (configuration, per-seed table, the commands) and the logs
(``train_seed<N>.log`` and ``results_seed<N>.json``). Every run must have finished within the budget (status
ok) with the same script; a sweep of several groups needs ``--group``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from golf.submission import SCRIPT_NAME
from golf.summary import load_results
from golf.worker import load_config

TRACK = "10min_16mb"
README_KEYS = (  # the configuration table of the README: (label, dotted key)
    ("preset", "name"), ("layers x width", ("model.num_layers", "model.model_dim")),
    ("heads / KV heads", ("model.num_heads", "model.num_kv_heads")), ("MLP mult", "model.mlp_mult"),
    ("vocabulary", "model.vocab_size"), ("XSA last n", "model.xsa_last_n"), ("optimizer", "optimizer._target_"),
    ("matrix LR", "optimizer.matrix_lr"), ("batch tokens x seq", ("train.batch_tokens", "train.seq_len")),
    ("wallclock cap s", "train.max_wallclock_seconds"), ("EMA / export", ("train.ema.decay", "train.export")),
    ("QAT", "train.qat.mode"), ("quantizer", ("quant.method", "quant.matrix_bits")),
    ("floor fitting", "quant.fit_scale_floor"), ("codec", "compressor._target_"),
    ("sliding window / stride", ("eval.sliding.window", "eval.sliding.stride")), ("TTT epochs", "eval.ttt.epochs"),
)


class ExportError(ValueError):
    """Nothing exportable: one line naming the directory and what is wrong."""


def select_runs(source: Path, group: str | None) -> list[dict]:
    """The finished runs of one group under ``source``, by seed; refuses unfinished, over-budget or mixed ones."""
    if not source.is_dir():
        raise ExportError(f"{source}: no such directory (give a run directory or a sweep directory)")
    groups, problems = load_results(source)
    if not groups:
        why = "; ".join(f"{p.parent.name}: {w}" for p, w in problems[:3])
        raise ExportError(f"{source}: no finished run to export" + (f" ({why})" if why else ""))
    if group is None and len(groups) > 1:
        raise ExportError(f"{source} holds {len(groups)} groups; choose one with --group: {', '.join(sorted(groups))}")
    chosen = groups.get(group) if group else next(iter(groups.values()))
    if chosen is None:
        raise ExportError(f"--group {group!r} is not in {source}; its groups: {', '.join(sorted(groups))}")
    runs = sorted(chosen.runs, key=lambda r: r["seed"])
    over = [r["seed"] for r in runs if r["status"] != "ok"]
    if over:
        raise ExportError(f"{source}: seeds {over} ended {runs[0]['status']}, not ok: not a valid submission")
    scripts = {(Path(r["_path"]).parent / SCRIPT_NAME).read_bytes() if (Path(r["_path"]).parent / SCRIPT_NAME).is_file()
               else None for r in runs}
    if None in scripts:
        raise ExportError(f"{source}: a run has no {SCRIPT_NAME} beside its results.json (made before golf wrote it: "
                          f"run it again)")
    if len(scripts) > 1:
        raise ExportError(f"{source}: the seeds' {SCRIPT_NAME} differ (golf's code changed between them); rerun them "
                          f"with one version")
    return runs


def command(runs: list[dict]) -> str:
    """The golf command that makes these runs (their overrides, the seeds as a sweep)."""
    overrides = [o for o in runs[0].get("overrides") or [] if not o.startswith("seed=")]
    return " ".join(["python -m golf.train -m", *overrides, "seed=" + ",".join(str(r["seed"]) for r in runs)])


def _get(cfg: dict, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _stat(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def submission_json(runs: list[dict], name: str, blurb: str | None, author: str, github_id: str) -> dict[str, Any]:
    """The records' submission.json for these runs (one per seed)."""
    head = [r["headline"] for r in runs]
    (loss, loss_std), (bpb, bpb_std) = _stat([h["val_loss"] for h in head]), _stat([h["val_bpb"] for h in head])
    first, env = runs[0], runs[0].get("env") or {}
    seeds = {str(r["seed"]): {"val_loss": r["headline"]["val_loss"], "val_bpb": r["headline"]["val_bpb"],
                              "artifact_bytes": r["bytes"]["total"], "steps": r["steps"],
                              "step_avg_ms": r["step_avg_ms"], "eval_time_s": r["eval_seconds"]} for r in runs}
    auto = (f"golf, {command(runs)}: {first['headline']['eval']} val_bpb {bpb:.5f} over {len(runs)} "
            f"seed{'s' * (len(runs) > 1)}")
    return {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb or auto,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "track": TRACK,
        "val_loss": round(loss, 8), "val_bpb": round(bpb, 8), "val_loss_std": round(loss_std, 8),
        "val_bpb_std": round(bpb_std, 8), "seeds": [r["seed"] for r in runs], "seed_results": seeds,
        "bytes_total": max(r["bytes"]["total"] for r in runs), "bytes_code": first["bytes"]["code"],
        "hardware": f"{first['world_size']}x{env.get('device')}", "versions": {**(env.get("versions") or {}),
                                                                              "cuda": env.get("cuda")},
        "golf": {"git_sha": env.get("git_sha"), "group": first.get("group"), "overrides": first.get("overrides"),
                 "headline_eval": first["headline"]["eval"]},
    }


def readme(sub: dict[str, Any], runs: list[dict], cfg: dict[str, Any]) -> str:
    """The folder's README.md: what it is, its configuration, each seed, and how to run it."""
    rows = []
    for label, keys in README_KEYS:
        vals = [_get(cfg, k) for k in ((keys,) if isinstance(keys, str) else keys)]
        if any(v is not None for v in vals):
            rows.append(f"| {label} | {' / '.join(str(v).rsplit('.', 1)[-1] if isinstance(v, str) else str(v) for v in vals)} |")
    seeds = [f"| {s} | {r['val_loss']:.8f} | {r['val_bpb']:.8f} | {r['artifact_bytes']:,} | {r['steps']:,} | "
             f"{r['step_avg_ms']:.1f} | {r['eval_time_s']:.1f} |" for s, r in sub["seed_results"].items()]
    return "\n".join([
        f"# {sub['name']}", "", sub["blurb"], "",
        f"**val_bpb {sub['val_bpb']:.8f}** (std {sub['val_bpb_std']:.8f}), val_loss {sub['val_loss']:.8f} nats, "
        f"{len(runs)} seed(s); at most {sub['bytes_total']:,} bytes ({sub['bytes_code']:,} of them code); "
        f"{sub['hardware']}.", "",
        "## Configuration", "", "| setting | value |", "|---|---|", *rows, "",
        "## Seeds", "", "| seed | val_loss | val_bpb | total bytes | steps | step ms | eval s |", "|---|---|---|---|---|---|---|",
        *seeds, "",
        "## Running it", "", "```bash",
        *[f"SEED={s} torchrun --standalone --nproc_per_node={runs[0]['world_size']} {SCRIPT_NAME}" for s in sub["seeds"]],
        "```", "",
        f"`{SCRIPT_NAME}` is self-contained (golf's modules packed inside; it needs torch, numpy, sentencepiece and "
        "safetensors, and the codec's module). DATA_PATH and TOKENIZER_PATH point it at the data, RUN_DIR at where its "
        "model.golf, results.json and train.log go. It was made by golf with", "", "```bash", command(runs), "```", "",
    ])


def export(source: Path, out: Path, *, group: str | None = None, name: str | None = None, blurb: str | None = None,
           author: str = "", github_id: str = "", force: bool = False) -> dict[str, Any]:
    """Write the submission folder ``out`` (module docstring); returns its submission.json."""
    runs = select_runs(source, group)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty; choose another folder or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    run_dirs = [Path(r["_path"]).parent for r in runs]
    config = run_dirs[0] / "config.yaml"
    cfg = load_config(config) if config.is_file() else {}
    sub = submission_json(runs, name or f"golf {runs[0].get('group') or cfg.get('name') or 'run'}", blurb, author,
                          github_id)
    shutil.copyfile(run_dirs[0] / SCRIPT_NAME, out / SCRIPT_NAME)
    for r, d in zip(runs, run_dirs):
        if (d / "train.log").is_file():
            shutil.copyfile(d / "train.log", out / f"train_seed{r['seed']}.log")
        shutil.copyfile(d / "results.json", out / f"results_seed{r['seed']}.json")
    (out / "submission.json").write_text(json.dumps(sub, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme(sub, runs, cfg), encoding="utf-8")
    return sub


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m golf.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="a run directory, or a sweep directory (multirun/<date>/<time>)")
    ap.add_argument("out", type=Path, help="the submission folder to write")
    ap.add_argument("--group", help="the sweep group to export, when the sweep holds several")
    ap.add_argument("--name", help="submission.json name (default: golf <preset>)")
    ap.add_argument("--blurb", help="submission.json blurb (default: the preset, overrides and score)")
    ap.add_argument("--author", default="", help="submission.json author")
    ap.add_argument("--github-id", default="", help="submission.json github_id")
    ap.add_argument("--force", action="store_true", help="write into a non-empty folder")
    a = ap.parse_args(argv)
    try:
        sub = export(a.source, a.out, group=a.group, name=a.name, blurb=a.blurb, author=a.author,
                     github_id=a.github_id, force=a.force)
    except ExportError as e:
        sys.exit(f"golf.export: {e}")
    print(f"golf.export: {a.out}: {len(sub['seeds'])} seed(s), val_bpb {sub['val_bpb']:.5f} (std {sub['val_bpb_std']:.5f}), "
          f"at most {sub['bytes_total']:,} bytes; run it with torchrun --standalone --nproc_per_node=N {SCRIPT_NAME}")


if __name__ == "__main__":
    main()
