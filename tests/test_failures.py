"""Failures that tell the truth: signals record ``interrupted`` with one console line and 128 + the signal, a sweep
interrupted that way prints what finished, bad config leaves a results.json and the log its message names, the
worker answers in one line, and a run leaves no empty file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_pipeline import FAST, golf_cli, results


def start(args: list[str], cache: Path) -> subprocess.Popen:
    env = dict(os.environ, GOLF_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1", WANDB_SILENT="true")
    return subprocess.Popen([sys.executable, "-m", "golf.train", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.2)


def training(run_dir: Path) -> bool:
    log = run_dir / "train.log"
    return log.is_file() and "step 2 loss" in log.read_text()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_records_interrupted_with_one_line(smoke_dir, tmp_path, sig, code):
    p = start([*FAST, "logger=none", "train.iterations=100000", f"hydra.run.dir={tmp_path}"], smoke_dir.parent)
    wait_for(lambda: training(tmp_path))
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    r = results(tmp_path)
    assert r["status"] == "interrupted" and r["error"] == f"interrupted by {sig.name} in stage train"
    lines = [ln for ln in (out + err).splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and "Traceback" not in err and len(err.splitlines()) <= 1, err


@pytest.mark.slow
def test_an_interrupted_sweep_prints_what_finished(smoke_dir, tmp_path):
    p = start(["-m", *FAST, "logger=none", "train.iterations=150", "seed=1,2,3", f"hydra.sweep.dir={tmp_path}"],
              smoke_dir.parent)

    def second_started() -> bool:
        done = [json.loads(f.read_text()).get("status") for f in tmp_path.glob("*/seed=1/results.json")]
        return done == ["ok"] and any(training(d) for d in tmp_path.glob("*/seed=2"))

    wait_for(second_started, timeout=300)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "sweep interrupted" in err and "1 finished runs" in out and "Traceback" not in err
    assert results(next(tmp_path.glob("*/seed=2")))["status"] == "interrupted"
    assert not list(tmp_path.glob("*/seed=3"))


def test_a_config_error_leaves_its_record_and_one_line(smoke_dir, tmp_path):
    p = golf_cli([*FAST, "logger=none", "train.iterations=-5", f"hydra.run.dir={tmp_path}"], smoke_dir.parent)
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "train.iterations must be >= 1" in err[0] and str(tmp_path / "train.log") in err[0]
    r = results(tmp_path)
    assert r["status"] == "failed" and "train.iterations must be >= 1" in r["error"]
    assert "train.iterations must be >= 1" in (tmp_path / "train.log").read_text()
    # An interpolation that cannot resolve fails before the pipeline: still one line and a record.
    p = golf_cli([*FAST, "logger=none", "eval.seq_len=${nowhere}", f"hydra.run.dir={tmp_path / 'b'}"], smoke_dir.parent)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "nowhere" in p.stderr
    assert results(tmp_path / "b")["status"] == "failed" and (tmp_path / "b" / "train.log").read_text()


def test_the_worker_answers_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "golf.worker", str(tmp_path / "missing" / "config.yaml")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        f"golf.worker: no resolved run config at {tmp_path / 'missing' / 'config.yaml'} (python -m golf.train writes "
        "<run_dir>/config.yaml)"]
    (tmp_path / "config.yaml").write_text("train: [unclosed")
    p = subprocess.run([sys.executable, "-m", "golf.worker", str(tmp_path / "config.yaml")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "not a readable run config" in p.stderr


def test_a_run_leaves_no_empty_file(smoke_dir, tmp_path):
    p = golf_cli([*FAST, "logger=none", "train.iterations=2", f"hydra.run.dir={tmp_path}"], smoke_dir.parent)
    assert p.returncode == 0, p.stderr
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert files and not [f for f in files if f.stat().st_size == 0]
    assert not (tmp_path / "golf.log").exists()
