"""End to end: the smoke pipeline through the real CLI, torchrun (2 gloo ranks) against one process,
sweeps, and what a user sees on bad input (missing data, vocabulary mismatch, divergence)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import REPO

# A small, fast variant of experiment=smoke shared by these tests.
FAST = ["experiment=smoke", "model.num_layers=2", "model.model_dim=64", "train.batch_tokens=4096",
        "train.seq_len=128", "train.max_micro_batch_tokens=4096", "eval.batch_tokens=16384"]


def golf_cli(args: list[str], cache: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, GOLF_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1", WANDB_SILENT="true",
               HYDRA_FULL_ERROR="1")
    return subprocess.run([sys.executable, "-m", "golf.train", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def run_in_process(overrides: list[str], run_dir: Path):
    from golf.worker import run_config
    from tests.conftest import compose_config

    return run_config(OmegaConf.to_container(compose_config(overrides), resolve=True), run_dir)


@pytest.fixture(scope="module")
def smoke_run(smoke_dir, tmp_path_factory) -> Path:
    """One real CLI run of the smoke experiment (W&B offline on), shared by the assertions below."""
    run_dir = tmp_path_factory.mktemp("smoke_run") / "run"
    p = golf_cli([*FAST, "train.iterations=24", "train.val_every=12", "logger=wandb", "logger.mode=offline",
                  f"hydra.run.dir={run_dir}"], smoke_dir.parent)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return run_dir


def test_smoke_run_writes_a_complete_record(smoke_run):
    r = results(smoke_run)
    assert r["status"] == "ok" and r["error"] is None
    assert r["steps"] == 24 and r["stop_reason"] == "iteration cap"
    assert [v["step"] for v in r["val_history"]] == [12]
    assert len(r["train_loss"]) == 24 and r["train_loss"][-1] < r["train_loss"][0]
    for key in ("prequant", "roundtrip"):
        v = r["val"][key]
        assert v["tokens"] > 0 and v["bytes"] > 0
        assert v["val_bpb"] == pytest.approx(v["val_loss"] / math.log(2) * v["tokens"] / v["bytes"], rel=1e-12)
    assert abs(r["val"]["roundtrip"]["val_bpb"] - r["val"]["prequant"]["val_bpb"]) < 0.02
    b = r["bytes"]
    assert b["total"] == b["code"] + b["model"] and b["limit"] == 16_000_000 and b["headroom"] == 16_000_000 - b["total"]
    assert b["model"] == (smoke_run / "model.golf").stat().st_size
    assert "golf/pipeline.py" in b["code_files"] and "UTF-8" in b["code_method"] and len(b["code_sha256"]) == 64
    assert {"python", "torch", "hydra"} <= set(r["env"]["versions"]) and r["env"]["device"]
    for stage in ("build", "train", "eval_prequant", "quantize", "compress", "load_artifact", "eval_roundtrip"):
        assert r["stages_s"][stage] >= 0
    log = (smoke_run / "train.log").read_text()
    assert "step 10 loss" in log and "eta" in log and "tok/s" in log and "roundtrip val_loss" in log


def test_smoke_config_is_resolved_and_reloadable(smoke_run):
    text = (smoke_run / "config.yaml").read_text()
    assert "${" not in text
    cfg = OmegaConf.load(smoke_run / "config.yaml")
    assert cfg.run.group == ",".join(sorted([*FAST, "train.iterations=24", "train.val_every=12"]))
    assert cfg.run.name == "smoke/" + cfg.run.group.replace("experiment=smoke,", "") + "/seed=1337"
    assert cfg.train.iterations == 24 and cfg.model.num_layers == 2


def test_wandb_offline_run_holds_the_runs_record(smoke_run):
    from tests.wandb_files import read_run

    (run_dir,) = (smoke_run / "wandb").glob("offline-run-*")
    run, r = read_run(run_dir), results(smoke_run)
    assert run.job_type == "train" and run.group == r["group"] and run.config["train"]["iterations"] == 24
    assert run.summary["val_bpb"] == pytest.approx(r["headline"]["val_bpb"]) and run.summary["steps"] == 24
    assert run.summary["bytes/total"] == r["bytes"]["total"]
    losses = [h["train/loss"] for h in run.history if "train/loss" in h]
    assert losses and losses[-1] == pytest.approx(r["train_loss"][-1], rel=1e-6)


def test_score_is_that_of_the_artifact(smoke_run, smoke_dir):
    """Re-scoring model.golf from scratch reproduces the recorded roundtrip numbers exactly."""
    from golf.compress.artifact import read_artifact
    from golf.data.shards import read_shard
    from golf.data.tokenizer import byte_lut, load_sentencepiece
    from golf.eval.bpb import Evaluator, LutOnDevice, TargetBytes, truncate_validation
    from golf.models.gpt import GPT
    from golf.quant.format import dequantize_state

    cfg = OmegaConf.load(smoke_run / "config.yaml")
    model_kw = {k: v for k, v in OmegaConf.to_container(cfg.model).items() if not k.startswith("_")}
    model = GPT(**model_kw)
    model.load_state_dict(dequantize_state(*read_artifact(smoke_run / "model.golf")), strict=True)
    sp = load_sentencepiece(smoke_dir / "tokenizer.model")
    val = torch.from_numpy(truncate_validation(read_shard(smoke_dir / "fineweb_val_000000.bin"), 128).astype("int32"))
    res = Evaluator(batch_tokens=16384, seq_len=128).evaluate(
        model, val, TargetBytes.of_lut(LutOnDevice(byte_lut(sp, 512), torch.device("cpu")), val))
    rt = results(smoke_run)["val"]["roundtrip"]
    assert res.val_loss == pytest.approx(rt["val_loss"], rel=1e-6) and res.val_bpb == pytest.approx(rt["val_bpb"], rel=1e-6)


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_match_one_process(smoke_dir, tmp_path):
    common = [*FAST, "train.iterations=4", "train.val_every=0", "logger=none"]
    local = golf_cli([*common, f"hydra.run.dir={tmp_path / 'local'}"], smoke_dir.parent)
    assert local.returncode == 0, local.stderr[-3000:]
    dist = golf_cli([*common, "launcher=torchrun", "launcher.nproc_per_node=2", f"hydra.run.dir={tmp_path / 'ddp'}"],
                    smoke_dir.parent)
    assert dist.returncode == 0, dist.stdout[-3000:] + dist.stderr[-3000:]
    a, b = results(tmp_path / "local"), results(tmp_path / "ddp")
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert a["grad_accum"] == b["grad_accum"] == 1
    assert b["train_loss"][0] == pytest.approx(a["train_loss"][0], rel=1e-5)  # same init and tokens; fp32 sum order
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-3)  # Muon's bf16 Newton–Schulz adds rounding
    assert b["val"]["roundtrip"]["val_bpb"] == pytest.approx(a["val"]["roundtrip"]["val_bpb"], rel=2e-3)
    assert a["bytes"]["code"] == b["bytes"]["code"] and a["bytes"]["code_files"] == b["bytes"]["code_files"]
    assert "golf/submission.py" in a["bytes"]["code_files"] and "golf/train.py" not in a["bytes"]["code_files"]
    assert "golf/worker.py" not in a["bytes"]["code_files"]  # the YAML reader: the submission script embeds its config
    assert (tmp_path / "local" / "train_gpt.py").read_bytes() == (tmp_path / "ddp" / "train_gpt.py").read_bytes()
    assert not (tmp_path / "ddp" / "rank1").exists() and len(list((tmp_path / "ddp").glob("results.json"))) == 1


def test_sweep_keeps_going_past_a_failed_seed(smoke_dir, tmp_path):
    p = golf_cli(["-m", *FAST, "train.iterations=2", "train.val_every=0", "logger=none", "seed=1,-5",
                  f"hydra.sweep.dir={tmp_path}"], smoke_dir.parent)
    assert p.returncode == 0, p.stderr[-3000:]
    ok = results(next(tmp_path.glob("*/seed=1")))
    bad = results(next(tmp_path.glob("*/seed=-5")))
    assert ok["status"] == "ok"
    assert bad["status"] == "failed" and "seed must be in" in bad["error"]
    assert "the sweep continues" in p.stderr
    assert "1 finished runs" in p.stdout and "left out:" in p.stdout and (tmp_path / "summary.md").is_file()


def test_missing_data_dir_names_path_and_command(tmp_path, smoke_dir):
    p = golf_cli(["data=fineweb_sp1024", f"data.path={tmp_path / 'nowhere'}", "logger=none",
                  f"hydra.run.dir={tmp_path / 'run'}"], smoke_dir.parent)
    assert p.returncode != 0
    assert str(tmp_path / "nowhere") in p.stderr and "scripts/download_data.py" in p.stderr
    r = results(tmp_path / "run")
    assert r["status"] == "failed" and "data directory not found" in r["error"]


def test_unknown_option_lists_the_available_ones(tmp_path, smoke_dir):
    p = golf_cli(["model=nope", f"hydra.run.dir={tmp_path}"], smoke_dir.parent)
    assert p.returncode != 0 and "nope" in p.stderr and "baseline" in p.stderr and "tiny" in p.stderr


def test_vocabulary_mismatch_is_refused_before_training(smoke_dir, tmp_path, monkeypatch):
    from golf.pipeline import VocabMismatch

    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    with pytest.raises(VocabMismatch, match="model.vocab_size=1000 does not match the tokenizer"):
        run_in_process([*FAST, "logger=none", "model.vocab_size=1000"], tmp_path)
    r = results(tmp_path)
    assert r["status"] == "failed" and "steps" not in r

    shard_cfg = [*FAST, "logger=none", "data=enwiki_sp1024", f"data.path={smoke_dir}", "data.vocab_size=1024"]
    with pytest.raises(VocabMismatch, match="has vocabulary 512 but data.vocab_size=1024"):
        run_in_process(shard_cfg, tmp_path / "b")


def test_divergence_stops_with_status_diverged_and_keeps_the_record(smoke_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    r = run_in_process([*FAST, "logger=none", "train.iterations=10", "+model.nan_after=3",
                        "model._target_=tests.helpers.DivergingGPT"], tmp_path)
    assert r["status"] == "diverged" and "non-finite loss" in r["error"]
    on_disk = results(tmp_path)
    assert on_disk["status"] == "diverged" and on_disk["steps"] == 3 and on_disk["train_loss"][-1] is None
    assert "STOP: non-finite loss" in (tmp_path / "train.log").read_text()
    assert not (tmp_path / "model.golf").exists()


def test_artifact_over_the_byte_budget_is_flagged(smoke_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    r = run_in_process([*FAST, "logger=none", "train.iterations=2", "budget.artifact_bytes=100000"], tmp_path)
    assert r["status"] == "over_budget" and r["bytes"]["headroom"] < 0
    assert r["val"]["roundtrip"]["val_bpb"] > 0  # still scored, so the user sees what it would have been
    assert "OVER BUDGET" in (tmp_path / "train.log").read_text()
    from golf.worker import EXIT_CODES

    assert EXIT_CODES["over_budget"] == 0 and results(tmp_path)["status"] == "over_budget"


@pytest.mark.slow
def test_averaging_candidates_are_scored_and_the_chosen_one_exported(smoke_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    r = run_in_process([*FAST, "logger=none", "train.iterations=8", "train.ema.decay=0.9", "train.swa.every=2",
                        "train.swa.lr_below=1.01", "train.export=swa", "train.qat.mode=ste", "train.qat.lr_below=0.6",
                        "schedule.warmdown_iters=4", "train.save_weights=true"], tmp_path)
    a = r["averaging"]
    assert a["requested"] == a["exported"] == "swa" and a["swa_snapshots"] == 4 and a["swa_first_step"] == 2
    assert set(a["candidates"]) == {"raw", "ema", "swa"} and a["note"] is None
    assert r["val"]["prequant"] == a["candidates"]["swa"]  # the exported weights are what prequant scored
    assert len({c["val_bpb"] for c in a["candidates"].values()}) == 3
    assert r["qat"]["mode"] == "ste" and r["qat"]["start_step"] is not None and r["qat"]["start_lr_mult"] < 0.6
    assert "average" in r["stages_s"] and "qat: ste int6 on at step" in (tmp_path / "train.log").read_text()
    # Fake quantization acts in training mode only: the pre-quant score is the float model's, equal to scoring the
    # saved weights in a fresh model (a requantize run, where QAT never switched on).
    again = run_in_process([*FAST, "logger=none", "train.iterations=0", f"train.load_weights={tmp_path / 'weights.safetensors'}"],
                           tmp_path / "again")
    assert again["val"]["prequant"]["val_bpb"] == r["val"]["prequant"]["val_bpb"]

    best = run_in_process([*FAST, "logger=none", "train.iterations=4", "train.ema.decay=0.9", "train.export=best",
                           "train.swa.every=50"], tmp_path / "best")
    cands = best["averaging"]["candidates"]
    assert best["averaging"]["exported"] == min(cands, key=lambda k: cands[k]["val_bpb"])
    assert "scored data" in best["averaging"]["note"]
    # SWA asked for but never collected: raw is exported and the record says why.
    none = run_in_process([*FAST, "logger=none", "train.iterations=4", "train.swa.every=50", "train.export=swa"],
                          tmp_path / "none")
    assert none["averaging"]["exported"] == "raw" and "SWA took no snapshot" in none["averaging"]["note"]


def test_gptq_calibrated_inside_the_training_budget(smoke_dir, tmp_path, monkeypatch):
    """quant=gptq: calibration=train reserves its seconds off the wallclock cap, collects Hessians from the
    continuing training stream, and GPTQ quantizes every block matrix (the smoke model's are tiny, so the
    float-keeping threshold is lowered)."""
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    r = run_in_process([*FAST, "logger=none", "quant=gptq", "quant.keep_float_max_numel=1000", "train.iterations=500",
                        "train.max_wallclock_seconds=4", "calibration.reserve_seconds=1.5", "calibration.sequences=16",
                        "calibration.batch_seqs=8"], tmp_path)
    assert r["status"] == "ok"
    assert r["train_budget"] == {"wallclock_seconds": 4, "reserved_for_calibration": 1.5, "training_cap": 2.5}
    assert r["train_seconds"] < 4 and r["stop_reason"] == "wallclock cap"
    c = r["calibration"]
    assert c["source"] == "train" and c["tokens"] == 16 * 128 and c["matrices"] == 2 * 6 and c["allowed_for_record"]
    assert "within_reserve" in c
    g = r["quant_stats"]["gptq"]
    assert g["matrices"] == 12 and g["fallbacks"] == 0 and r["quant_stats"]["bits"]["6"] > 0
    assert r["bytes"]["code"] < r["bytes"]["code_raw"] and "self-extracting" in r["bytes"]["code_method"]


def test_gptq_without_calibration_is_refused_before_training(smoke_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    with pytest.raises(ValueError, match="quant.method=gptq needs calibration data but calibration=none"):
        run_in_process([*FAST, "logger=none", "quant=gptq", "calibration=none"], tmp_path)
    assert "steps" not in results(tmp_path)


@pytest.mark.slow
def test_mixed_precision_fits_the_byte_budget_exactly(smoke_dir, tmp_path, monkeypatch):
    """quant=mixed (#1089) against imposed budgets: int5 block matrices; the allocator promotes the most
    sensitive layer groups while the estimate fits; +-1/+-2 pruning closes what is left; results.json says
    what fitting did, and without fitting the same budget is refused loudly."""
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    common = [*FAST, "logger=none", "quant=mixed", "quant.fit_scale_floor=false", "quant.keep_float_max_numel=1000",
              "train.iterations=6",
              "calibration.sequences=8", "calibration.reserve_seconds=0", "compressor=brotli", "compressor.quality=5"]
    base = run_in_process([*common, "quant.allocate_max_bits=0"], tmp_path / "base")  # int5 everywhere
    t0 = base["bytes"]["total"]
    assert base["status"] == "ok" and base["fitting"]["pruning"]["pruned"] == 0

    pruned = run_in_process([*common, "quant.allocate_max_bits=0", f"budget.artifact_bytes={t0 - 2000}"], tmp_path / "p")
    p = pruned["fitting"]["pruning"]
    assert pruned["status"] == "ok" and pruned["bytes"]["total"] <= t0 - 2000 and pruned["bytes"]["headroom"] >= 0
    assert p["fits"] and 0 < p["pruned"] < p["candidates"] and p["bytes_after"] == pruned["bytes"]["total"]
    assert pruned["bytes"]["codec"] == "brotli+shuffle"

    grown = run_in_process([*common, "quant.allocate_max_bits=7", f"budget.artifact_bytes={t0 + 6000}"], tmp_path / "a")
    alloc = grown["fitting"]["allocation"]
    assert grown["status"] == "ok" and t0 < grown["bytes"]["total"] <= t0 + 6000
    assert set(alloc["groups"]) == {"layer0.attn", "layer0.mlp", "layer1.attn", "layer1.mlp"}
    promoted = [g["group"] for g in alloc["promoted"]]
    by_sensitivity = sorted(alloc["groups"], key=lambda g: -alloc["groups"][g]["sensitivity"])
    assert promoted and promoted == by_sensitivity[: len(promoted)]
    assert any(int(b) > 5 for b in grown["quant_stats"]["bits"])  # promoted matrices are wider than int5

    over = run_in_process([*common, "quant.allocate_max_bits=0", "quant.prune_max_abs=0", f"budget.artifact_bytes={t0 - 2000}"],
                          tmp_path / "over")
    assert over["status"] == "over_budget" and over["bytes"]["headroom"] < 0 and "fitting" not in over


def test_floor_fitting_spends_the_byte_budget_on_a_finer_grid(smoke_dir, tmp_path, monkeypatch):
    """quant.fit_scale_floor: with room for the rows' own grids the floor goes (factor 0, no row at it);
    with a limit between the two ends, results.json carries the fitted factor and the artifact fits."""
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    common = [*FAST, "logger=none", "quant=int6", "quant.keep_float_max_numel=1000", "train.iterations=6",
              "quant.fit_scale_floor=true", "quant.prune_max_abs=1"]
    free = run_in_process(common, tmp_path / "free")
    f = free["fitting"]["scale_floor"]
    assert free["status"] == "ok" and f["factor"] == 0.0 and free["quant_stats"]["floor_rows"] == 0
    assert f["model_bytes_no_floor"] > f["model_bytes_full_floor"]
    limit = free["bytes"]["code"] + (f["model_bytes_no_floor"] + f["model_bytes_full_floor"]) // 2
    tight = run_in_process([*common, f"budget.artifact_bytes={limit}"], tmp_path / "tight")
    t = tight["fitting"]["scale_floor"]
    assert tight["status"] == "ok" and 0 < t["factor"] < 1 and tight["bytes"]["total"] <= limit
    assert 0 < tight["quant_stats"]["floor_rows"] <= tight["quant_stats"]["matrix_rows"]


def test_saved_weights_are_requantized_without_training(smoke_dir, tmp_path, monkeypatch):
    """train.save_weights writes the exported float weights; train.load_weights with train.iterations=0 runs
    only the post-training stages on them (another quantizer on the same model), scoring them the same."""
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    first = run_in_process([*FAST, "logger=none", "train.iterations=6", "train.save_weights=true"], tmp_path / "a")
    weights = tmp_path / "a" / first["weights"]
    assert weights.is_file()
    again = run_in_process([*FAST, "logger=none", "train.iterations=0", f"train.load_weights={weights}", "quant=int6",
                            "quant.keep_float_max_numel=1000"], tmp_path / "b")
    assert again["status"] == "ok" and again["steps"] == 0 and again["loaded_weights"] == str(weights)
    assert again["val"]["prequant"]["val_bpb"] == pytest.approx(first["val"]["prequant"]["val_bpb"], rel=1e-9)
    assert again["quant_stats"]["bits"]["6"] > 0 and again["val"]["roundtrip"]["val_bpb"] != first["val"]["roundtrip"]["val_bpb"]
    with pytest.raises(FileNotFoundError, match="train.load_weights: no file"):
        run_in_process([*FAST, "logger=none", "train.iterations=0", f"train.load_weights={tmp_path / 'none.st'}"],
                       tmp_path / "c")
    with pytest.raises(ValueError, match="does not fit this model config"):
        run_in_process([*FAST, "logger=none", "train.iterations=0", f"train.load_weights={weights}",
                        "model.model_dim=96"], tmp_path / "d")
    with pytest.raises(Exception, match="train.iterations must be >= 1"):  # raised building the config (Hydra wraps it)
        run_in_process([*FAST, "logger=none", "train.iterations=0"], tmp_path / "e")


def test_sliding_and_ttt_scores_land_in_results(smoke_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    small = ["eval.sliding.window=128", "eval.sliding.stride=64", "eval.sliding.batch_windows=16", "eval.ttt.chunk_tokens=4096",
             "eval.ttt.epochs=1", "eval.ttt.batch_seqs=8"]
    r = run_in_process([*FAST, "logger=none", "train.iterations=4", "eval=ttt", *small], tmp_path / "a")
    v = r["val"]
    assert r["status"] == "ok" and r["headline"]["eval"] == "ttt" and r["headline"]["val_bpb"] == v["ttt"]["val_bpb"]
    assert v["sliding"]["tokens"] == v["ttt"]["tokens"] == v["roundtrip"]["tokens"]  # every target once, each way
    assert v["sliding"]["windows"] == "exactly once" and v["ttt"]["status"] == "complete"
    assert v["ttt"]["chunks"] == v["ttt"]["chunks_scored"] > 1 and v["sliding"]["tokens_per_s"] > 0
    assert {"eval_sliding", "eval_ttt"} <= set(r["stages_s"])
    guarded = run_in_process([*FAST, "logger=none", "train.iterations=4", "eval=ttt", *small, "budget.eval_seconds=0"],
                             tmp_path / "b")
    g = guarded["val"]
    assert guarded["status"] == "partial_eval" and "time guard" in g["ttt"]["status"] and "time guard" in g["sliding"]["status"]
    assert g["ttt"]["tokens"] < v["ttt"]["tokens"] and g["sliding"]["tokens"] < v["sliding"]["tokens"]
    assert g["roundtrip"]["tokens"] < v["roundtrip"]["tokens"] and "time guard" in g["roundtrip"]["status"]


# A tiny override of any record preset: its own depth and features, 64 wide, two steps on the smoke data,
# each option applied only where the preset has it (calibration, sliding and TTT settings).
TINY_RECORD = ["data=smoke", "model.model_dim=64", "model.num_heads=4", "model.num_kv_heads=2", "train.batch_tokens=512",
               "train.seq_len=64", "train.max_micro_batch_tokens=256", "train.iterations=2", "train.warmup_steps=0",
               "train.max_wallclock_seconds=0", "train.compile=false", "train.device=cpu", "eval.batch_tokens=16384",
               "eval.sliding.window=64", "eval.sliding.stride=32", "eval.sliding.batch_windows=128",
               "eval.ttt.chunk_tokens=32768", "eval.ttt.epochs=1", "eval.ttt.batch_seqs=128", "eval.ttt.chunk=256",
               "eval.ttt.window=256", "eval.ttt.batch_docs=8", "eval.ttt.prefix_docs=8",
               "eval.ttt.rank=4", "eval.ttt.global_chunk_tokens=4096", "calibration.sequences=4",
               "calibration.seq_len=64", "calibration.reserve_seconds=0", "quant.keep_float_max_numel=1000",
               "model.bigram_dim=32", "logger=none"]
RECORDS = [p.stem for p in sorted((REPO / "conf" / "experiment").glob("*.yaml")) if p.stem != "smoke"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", RECORDS)
def test_every_record_preset_runs_a_tiny_override_of_itself(smoke_dir, tmp_path, monkeypatch, experiment):
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    full = compose_config([f"experiment={experiment}", "data=smoke"])
    tiny = [o for o in TINY_RECORD if OmegaConf.select(full, o.split("=", 1)[0]) is not None]
    r = run_in_process([f"experiment={experiment}", *tiny], tmp_path)
    assert r["status"] == "ok" and r["steps"] == 2
    assert r["headline"]["val_bpb"] > 0
    if OmegaConf.select(full, "eval.sliding") is not None:
        assert r["val"]["sliding"]["tokens"] == r["val"]["roundtrip"]["tokens"]
    if full.quant.get("method") == "gptq":
        assert r["calibration"]["tokens"] > 0 and r["quant_stats"]["gptq"]["matrices"] > 0


def test_phased_ttt_scores_every_target_and_heads_the_results(smoke_dir, tmp_path, monkeypatch):
    """eval=phased_ttt end to end on the smoke data (its 61 documents in batches of 16, two phases)."""
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    small = ["eval.sliding.window=128", "eval.sliding.stride=64", "eval.ttt.chunk=64", "eval.ttt.batch_docs=16",
             "eval.ttt.rank=4", "eval.ttt.prefix_docs=32", "eval.ttt.phases=2", "eval.ttt.global_chunk_tokens=2048",
             "eval.ttt.lr=0.001"]
    r = run_in_process([*FAST, "logger=none", "train.iterations=4", "eval=phased_ttt", *small], tmp_path / "a")
    v = r["val"]
    assert r["status"] == "ok" and r["headline"]["eval"] == "ttt" and v["ttt"]["method"] == "phased LoRA"
    assert v["ttt"]["tokens"] == v["sliding"]["tokens"] == v["roundtrip"]["tokens"]  # every target once
    assert v["ttt"]["docs"] == v["ttt"]["docs_scored"] and v["ttt"]["phases_done"] == 2
    assert len(v["ttt"]["phase_seconds"]) == 2 and v["ttt"]["status"] == "complete"
