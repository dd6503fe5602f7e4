"""Score an artifact alone: ``python -m golf.score PATH [data=...] [eval=sliding|ttt] [key=value ...]``.

PATH is a run directory or a ``model.golf`` with the run's ``config.yaml`` beside it (or ``--config FILE``). The
model is the run's; the command line may change what it is scored on and how: the ``data`` and ``eval`` groups
(composed as ``golf.train`` would, with the run's own overrides), their keys, ``budget.*`` and the device and
precision (``train.device``, ``train.precision``, ``train.tf32``). It prints the evaluation lines of a run and
writes ``score.json`` (``score_<overrides>.json`` with overrides) and its log beside the artifact. A corrupt or
truncated artifact is refused before anything else, with its path and the reason.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from golf.build import EXIT_CODES, components
from golf.compress.artifact import read_artifact
from golf.pipeline import SCORING, run
from golf.run_state import ARTIFACT_NAME, RunFiles
from golf.stages.scoring import report
from golf.worker import ConfigFileError, load_config

GROUPS = ("data", "eval")                       # options the command line may choose
KEYS = ("data.", "eval.", "budget.", "train.device", "train.precision", "train.tf32")  # values it may set


class ScoreError(ValueError):
    """Bad input to golf.score: one line that names the file, key or value."""


def locate(path: Path, config: Path | None) -> tuple[Path, Path]:
    """(artifact, config.yaml) of a run directory or an artifact file."""
    artifact = path / ARTIFACT_NAME if path.is_dir() else path
    if not artifact.is_file():
        raise ScoreError(f"{artifact}: no such artifact (give a run directory or its {ARTIFACT_NAME})")
    config = config or artifact.parent / "config.yaml"
    if not config.is_file():
        raise ScoreError(f"{config}: no run config beside the artifact; pass the run's config.yaml with --config")
    return artifact, config


def scoring_config(run_cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The run's config with the command line's data/eval choices and keys laid over it."""
    groups = [o for o in overrides if o.split("=", 1)[0] in GROUPS]
    keys = [o for o in overrides if o not in groups]
    for o in keys:
        key = o.split("=", 1)[0].lstrip("+")
        if "=" not in o or not key.startswith(KEYS):
            raise ScoreError(f"{o!r}: golf.score takes data=..., eval=... and keys under {', '.join(KEYS)} (the "
                             f"artifact fixes the model and its quantization)")
    cfg = OmegaConf.create(run_cfg)
    if groups:
        composed = _compose([*(run_cfg.get("run") or {}).get("overrides", []), *groups])
        for g in {o.split("=", 1)[0] for o in groups}:
            cfg[g] = composed[g]
    for o in keys:
        key, value = o.lstrip("+").split("=", 1)
        OmegaConf.update(cfg, key, yaml.safe_load(value) if value else None, force_add=o.startswith("+"))
    out = OmegaConf.to_container(cfg, resolve=True)
    out["logger"] = {"_target_": "golf.logging.NullBackend"}
    return out


def _compose(overrides: list[str]) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir

    from golf.train import CONF_DIR, apply_overlay

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    apply_overlay(cfg, overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def score(path: Path, overrides: list[str], config: Path | None = None) -> dict[str, Any]:
    """Score ``path`` (module docstring); the results dict, also written beside the artifact."""
    artifact, config_path = locate(path, config)
    try:
        read_artifact(artifact)
    except ValueError as e:
        raise ScoreError(str(e)) from None
    cfg = scoring_config(load_config(config_path), overrides)
    tag = "_".join(re.sub(r"[^A-Za-z0-9.=-]+", "-", o) for o in overrides)
    stem = f"score_{tag}" if tag else "score"
    files = RunFiles(artifact.parent / f"{stem}.json", artifact.parent / f"{stem}.log", artifact)
    info = {"name": f"score {artifact}", "overrides": overrides, "config": cfg, "job_type": "score"}
    return run(run_dir=artifact.parent, seed=int(cfg["seed"]), info=info, build=lambda: components(cfg),
               stages=SCORING, close=report, files=files)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m golf.score", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, help="a run directory, or a model.golf with the run's config.yaml beside it")
    ap.add_argument("overrides", nargs="*", help="data=..., eval=..., data.*/eval.*/budget.* keys, train.device=...")
    ap.add_argument("--config", type=Path, help="the run's config.yaml, when it is not beside the artifact")
    args = ap.parse_args(argv)
    try:
        results = score(args.path, args.overrides, args.config)
    except KeyboardInterrupt as e:
        sys.exit(getattr(e, "exit_code", 130))
    except (ScoreError, ConfigFileError) as e:
        sys.exit(f"golf.score: {e}")
    except Exception as e:  # noqa: BLE001 - one line; the traceback is in the score log
        sys.exit(f"golf.score: {type(e).__name__}: {e}")
    sys.exit(EXIT_CODES.get(results["status"], 1))


if __name__ == "__main__":
    main()
