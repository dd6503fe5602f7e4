"""Scoring an artifact alone (golf.score), exporting a submission folder (golf.export), and the exported
train_gpt.py: run where golf cannot be imported, it gives the golf run's score and artifact, byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_pipeline import FAST, golf_cli, results, run_in_process

# Runs a script with every golf module blocked: what is not packed in it fails to import.
NO_GOLF = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "golf" or name.startswith("golf."):
            raise ModuleNotFoundError("golf is not installed here: " + name)
sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".") and not p.endswith("/tests")]
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""
SEED = 7


@pytest.fixture(scope="module")
def sweep(smoke_dir, tmp_path_factory) -> Path:
    """A two-seed sweep of a short smoke run with GPTQ (its floor fitted) and the sliding eval, by the CLI."""
    root = tmp_path_factory.mktemp("sweep")
    p = golf_cli(["-m", *FAST, "logger=none", "train.iterations=6", "quant=gptq_ar", "quant.keep_float_max_numel=1000",
                  "eval=sliding", f"seed={SEED},8", f"hydra.sweep.dir={root}"], smoke_dir.parent)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return root


def seed_dir(sweep: Path, seed: int) -> Path:
    return next(sweep.glob(f"*/seed={seed}"))


def test_exported_script_reproduces_the_run_without_golf(sweep, tmp_path, smoke_dir):
    from golf.export import export

    sub = export(sweep, tmp_path / "sub")
    script, golf_run = tmp_path / "sub" / "train_gpt.py", seed_dir(sweep, SEED)
    assert script.read_bytes() == (golf_run / "train_gpt.py").read_bytes()
    (tmp_path / "noglf.py").write_text(NO_GOLF)
    env = dict(os.environ, SEED=str(SEED), RUN_DIR=str(tmp_path / "out"), GOLF_CACHE_DIR=str(smoke_dir.parent))
    env.pop("PYTHONPATH", None)
    p = subprocess.run([sys.executable, str(tmp_path / "noglf.py"), str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    mine, theirs = results(tmp_path / "out"), results(golf_run)
    assert mine["status"] == "ok" and mine["seed"] == SEED and mine["env"]["git_sha"] is None
    for key in ("roundtrip", "sliding"):
        assert mine["val"][key]["val_bpb"] == pytest.approx(theirs["val"][key]["val_bpb"], abs=1e-6)
    assert (tmp_path / "out" / "model.golf").read_bytes() == (golf_run / "model.golf").read_bytes()
    assert mine["bytes"]["code"] == theirs["bytes"]["code"] == script.stat().st_size == sub["bytes_code"]
    assert mine["bytes"]["total"] == theirs["bytes"]["total"]
    assert theirs["fitting"]["scale_floor"]["factor"] < 1  # the fitted floor, which depends on the code bytes


def test_submission_folder_has_the_records_fields(sweep, tmp_path):
    from golf.export import export

    export(sweep, tmp_path / "sub", name="smoke gptq", author="me")
    out = tmp_path / "sub"
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "README.md", "submission.json", "train_gpt.py", f"train_seed{SEED}.log", "train_seed8.log",
        f"results_seed{SEED}.json", "results_seed8.json"])
    sub = json.loads((out / "submission.json").read_text())
    runs = [results(seed_dir(sweep, s)) for s in (SEED, 8)]
    bpb = [r["headline"]["val_bpb"] for r in runs]
    assert sub["name"] == "smoke gptq" and sub["author"] == "me" and sub["track"] == "10min_16mb"
    assert sub["seeds"] == [SEED, 8] and sub["val_bpb"] == pytest.approx(sum(bpb) / 2, abs=1e-8)
    assert sub["val_bpb_std"] == pytest.approx(abs(bpb[0] - bpb[1]) / 2**0.5, abs=1e-8)
    assert set(sub["seed_results"][str(SEED)]) == {"val_loss", "val_bpb", "artifact_bytes", "steps", "step_avg_ms",
                                                  "eval_time_s"}
    assert sub["bytes_total"] == max(r["bytes"]["total"] for r in runs) and sub["bytes_code"] == runs[0]["bytes"]["code"]
    assert {"val_loss_std", "date", "blurb", "hardware", "versions", "github_id"} <= set(sub)
    readme = (out / "README.md").read_text()
    assert f"SEED={SEED} torchrun --standalone" in readme and f"seed={SEED},8" in readme and "| preset | smoke |" in readme


def test_export_refuses_what_is_not_a_submission(sweep, tmp_path):
    from golf.export import ExportError, export

    with pytest.raises(ExportError, match="no such directory"):
        export(tmp_path / "nowhere", tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ExportError, match="is not empty"):
        export(sweep, tmp_path / "full")
    with pytest.raises(ExportError, match="--group 'nope' is not in"):
        export(sweep, tmp_path / "b", group="nope")


def test_score_rescores_an_artifact_with_another_eval(sweep, tmp_path):
    from golf.score import ScoreError, score

    run_dir = seed_dir(sweep, SEED)
    recorded = results(run_dir)
    again = score(run_dir, [])
    assert again["val"]["roundtrip"]["val_bpb"] == pytest.approx(recorded["val"]["roundtrip"]["val_bpb"], abs=1e-9)
    assert json.loads((run_dir / "score.json").read_text())["headline"]["eval"] == "sliding"
    wider = score(run_dir / "model.golf", ["eval.sliding.stride=128"])
    assert wider["val"]["sliding"]["stride"] == 128 and (run_dir / "score_eval.sliding.stride=128.json").is_file()
    assert score(run_dir, ["eval=standard"])["val"]["sliding"] is None
    blob = (run_dir / "model.golf").read_bytes()
    (tmp_path / "model.golf").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ScoreError, match=r"model.golf: corrupt .* payload"):
        score(tmp_path / "model.golf", [], config=run_dir / "config.yaml")
    with pytest.raises(ScoreError, match="no run config beside the artifact"):
        score(tmp_path / "model.golf", [])
    with pytest.raises(ScoreError, match="the artifact fixes the model"):
        score(run_dir, ["model.num_layers=3"])


def test_load_weights_takes_an_artifact_or_saved_weights(sweep, tmp_path, smoke_dir, monkeypatch):
    from golf.stages.training import load_weights

    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    run_dir = seed_dir(sweep, SEED)
    requant = run_in_process([*FAST, "logger=none", "train.iterations=0", f"train.load_weights='{run_dir / 'model.golf'}'",
                              "quant=gptq_ar", "quant.keep_float_max_numel=1000"], tmp_path / "r")
    assert requant["status"] == "ok" and requant["loaded_weights"].endswith("model.golf")
    assert requant["val"]["prequant"]["val_bpb"] == pytest.approx(results(run_dir)["val"]["roundtrip"]["val_bpb"], abs=1e-6)
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 64)
    import torch

    with pytest.raises(ValueError, match="neither a golf artifact .* nor safetensors weights"):
        load_weights(torch.nn.Linear(2, 2), tmp_path / "junk.bin")
