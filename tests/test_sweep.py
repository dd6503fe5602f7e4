"""Sweeps through the real CLI: resuming an interrupted sweep, W&B offline runs read back from their files
(config, group, job_type, summary, the sweep's summary run), and the submitit launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from golf.sweep import ConfigChanged, resume
from tests.conftest import REPO
from tests.test_pipeline import FAST, golf_cli, results

SWEEP = [*FAST, "train.iterations=2", "train.val_every=0"]


def seeds_done(root: Path) -> dict[str, str]:
    out = {}
    for p in root.glob("*/seed=*/results.json"):
        try:
            out[p.parent.name] = json.loads(p.read_text())["status"]
        except (OSError, ValueError, KeyError):
            pass
    return out


@pytest.mark.slow
def test_interrupted_sweep_completes_the_other_seeds(smoke_dir, tmp_path):
    env = dict(os.environ, GOLF_CACHE_DIR=str(smoke_dir.parent), WANDB_SILENT="true")
    args = [sys.executable, "-m", "golf.train", "-m", *SWEEP, "logger=none", "seed=1,2,3", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while seeds_done(tmp_path).get("seed=1") != "ok":
            assert proc.poll() is None and time.time() < deadline, "the first seed never finished"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the machine goes away mid-sweep
        proc.wait()
    assert seeds_done(tmp_path).get("seed=3") is None
    first = next(tmp_path.glob("*/seed=1/results.json"))
    before = first.read_bytes()

    p = golf_cli(["-m", *SWEEP, "logger=none", "seed=1,2,3", f"hydra.sweep.dir={tmp_path}"], smoke_dir.parent)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"skipping {first.parent}" in p.stdout and "finished earlier (ok" in p.stdout
    assert first.read_bytes() == before
    assert seeds_done(tmp_path) == {"seed=1": "ok", "seed=2": "ok", "seed=3": "ok"}
    group = results(first.parent)["group"]
    assert "3 finished runs" in p.stdout and f"| {group} | 3 |" in (tmp_path / "summary.md").read_text()


def test_resume_reruns_failed_and_refuses_a_changed_config(tmp_path):
    cfg = OmegaConf.create({"seed": 1, "train": {"iterations": 2}, "run": {"dir": "x"}, "logger": {"mode": "a"}})
    assert resume(tmp_path, cfg) is None                                # nothing there yet
    (tmp_path / "results.json").write_text(json.dumps({"status": "failed", "error": "OOM"}))
    assert resume(tmp_path, cfg) is None
    assert not (tmp_path / "results.json").exists()
    assert json.loads((tmp_path / "results.previous.json").read_text())["error"] == "OOM"
    OmegaConf.save(cfg, tmp_path / "config.yaml")
    (tmp_path / "results.json").write_text(json.dumps({"status": "ok", "headline": {"val_bpb": 1.2345}}))
    moved = OmegaConf.merge(cfg, {"run": {"dir": "y"}, "logger": {"mode": "b"}})   # where/how, not what: same run
    assert "finished earlier (ok, val_bpb 1.2345)" in resume(tmp_path, moved)
    with pytest.raises(ConfigChanged, match=r"different config \(train.iterations differ\).*new hydra.sweep.dir"):
        resume(tmp_path, OmegaConf.merge(cfg, {"train": {"iterations": 3}}))


@pytest.mark.slow
def test_wandb_offline_sweep_reads_back(smoke_dir, tmp_path):
    from tests.wandb_files import read_run

    p = golf_cli(["-m", *SWEEP, "logger=wandb", "logger.mode=offline", "seed=1,2", "model.num_layers=1,2",
                  f"hydra.sweep.dir={tmp_path}", "hydra.callbacks.summary.baseline='model.num_layers=2'"], smoke_dir.parent)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = {}
    for d in tmp_path.glob("*/seed=*/wandb/offline-run-*"):
        runs[d.parents[1].relative_to(tmp_path).as_posix()] = read_run(d)
    assert len(runs) == 4 and len({k.split("/")[0] for k in runs}) == 2     # two groups of two seeds
    for key, run in runs.items():
        group, seed = key.split("/")
        res = results(tmp_path / key)
        assert run.group == group == res["group"] and "seed" not in group and run.job_type == "train"
        extra = ",".join(o for o in group.split(",") if o != "experiment=smoke")
        assert run.name == f"smoke/{extra}/{seed}" and run.config["seed"] == int(seed[5:])
        assert f"model.num_layers={run.config['model']['num_layers']}" in group.split(",")
        assert run.config["train"]["iterations"] == 2 and "${" not in json.dumps(run.config)
        assert run.summary["val_bpb"] == pytest.approx(res["headline"]["val_bpb"])
        assert run.summary["bytes/total"] == res["bytes"]["total"] and run.summary["stages_s/train"] >= 0
        assert run.summary["eval/prequant/val_bpb"] == pytest.approx(res["val"]["prequant"]["val_bpb"])
        assert [h["train/loss"] for h in run.history if "train/loss" in h]
    (summary_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    s = read_run(summary_dir)
    assert s.job_type == "summary" and "model.num_layers=2" in s.config["baseline"].split(",")
    assert sorted(s.config["groups"]) == sorted({k.split("/")[0] for k in runs})
    assert s.summary["summary_table/_type"] == "table-file" and s.summary["summary_plot/_type"] == "image-file"
    table = json.loads((summary_dir / "files" / s.summary["summary_table/path"]).read_text())
    assert [row[0] for row in table["data"]] == sorted(s.config["groups"]) and table["columns"][:2] == ["group", "n"]
    assert s.summary["markdown"] == (tmp_path / "summary.md").read_text().strip()


@pytest.mark.slow
def test_submitit_local_two_seed_sweep(smoke_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    p = golf_cli(["-m", *SWEEP, "logger=none", "seed=1,2", "hydra/launcher=submitit_local",
                  "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={tmp_path}"], smoke_dir.parent)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert seeds_done(tmp_path) == {"seed=1": "ok", "seed=2": "ok"}
    assert list((tmp_path / ".submitit").iterdir()), "the jobs did not go through submitit"
    assert "2 finished runs" in p.stdout


def test_slurm_torchrun_launcher_asks_one_task_with_a_gpu_per_rank():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm_torchrun", "launcher=torchrun", "launcher.nproc_per_node=4",
                                 "hydra.launcher.partition=gpu"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher") and launcher["partition"] == "gpu"
    assert cfg.hydra.launcher.tasks_per_node == 1 and cfg.hydra.launcher.nodes == 1
    assert OmegaConf.select(cfg, "hydra.launcher.gpus_per_node") == 4 == cfg.launcher.nproc_per_node


@pytest.mark.parametrize(("overrides", "job_type"), [
    ([], "train"),
    (["train.iterations=0", "train.load_weights=/w.safetensors"], "requantize"),
    (["train.iterations=5", "train.load_weights=/w.safetensors"], "train"),
])
def test_job_type_names_the_kind_of_run(monkeypatch, overrides, job_type):
    import golf.build
    from tests.conftest import compose_config

    seen = {}
    monkeypatch.setattr(golf.build, "run", lambda **kw: seen.update(kw))
    cfg = OmegaConf.to_container(compose_config(["experiment=smoke", *overrides]), resolve=True)
    golf.build.run_config(cfg, Path("unused"))
    assert seen["info"]["job_type"] == job_type
