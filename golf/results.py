"""A run's record: ``results.json`` written atomically (JSON has no NaN: non-finite numbers become null),
and the provenance every record carries (git SHA and dirty flag, library versions, device)."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

import golf

RESULTS_SCHEMA = 2


def finite_or_none(obj: Any) -> Any:
    """JSON has no NaN/inf: a diverged loss is written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(finite_or_none(obj), indent=2, default=str, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def provenance(device: torch.device) -> dict[str, Any]:
    source = getattr(golf, "__file__", None)  # none inside a submission script: its modules come from memory
    root = Path(source).resolve().parents[1] if source else None

    def git(*args: str) -> str | None:
        if root is None:
            return None
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    sha = git("rev-parse", "HEAD")
    dirty = None if sha is None else bool(git("status", "--porcelain", "--untracked-files=no"))
    versions = {"python": platform.python_version(), "torch": torch.__version__, "golf": golf.__version__, "numpy": np.__version__}
    for mod in ("hydra", "omegaconf", "sentencepiece", "zstandard", "safetensors", "wandb"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is recorded as absent
            versions[mod] = None
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"git_sha": sha, "git_dirty": dirty, "versions": versions, "device": dev,
            "host": platform.node(), "cuda": torch.version.cuda}


def new_results(*, info: dict[str, Any], seed: int, run_dir: Path, world_size: int) -> dict[str, Any]:
    return {
        "schema": RESULTS_SCHEMA, "status": "running", "error": None,
        "name": info.get("name"), "overrides": info.get("overrides", []), "group": info.get("group"),
        "seed": seed, "run_dir": str(run_dir), "world_size": world_size,
        "val": {"prequant": None, "roundtrip": None, "sliding": None, "ttt": None},
        "stages_s": {},
    }


def record_failure(run_dir: Path, error: str) -> None:
    """A run that failed before its pipeline started (an unresolvable config): its results.json and train.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results = {**new_results(info={}, seed=None, run_dir=run_dir, world_size=1), "status": "failed", "error": error}
    write_json_atomic(run_dir / "results.json", results)
    with open(run_dir / "train.log", "a", encoding="utf-8") as f:
        f.write(f"FAILED before the run started: {error}\n")
