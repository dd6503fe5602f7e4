"""The entry point: ``python -m golf.train [group=option ...] [key=value ...]`` (``-m`` for sweeps).

Hydra composes the config here, and only here: it is resolved once, written to
``<run_dir>/config.yaml``, and handed to the launcher (this process, or torchrun ranks that read the file).
In a sweep a failed job is recorded in its results.json and the sweep goes on; a sweep started again skips
the jobs already finished (``golf.sweep``).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from golf.sweep import ConfigChanged, resume

if not OmegaConf.has_resolver("golf_group"):
    OmegaConf.register_new_resolver("golf_group", lambda s: s or "default")


def resolve_run_config(cfg: DictConfig, run_dir: Path, overrides: list[str], group: str) -> DictConfig:
    """The config every process will read: fully resolved, plus the run's identity: its group (the overrides
    without the seed) and its name (the experiment, the other overrides, the seed)."""
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    name = resolved.get("name") or (group if group else "run")
    extra = ",".join(p for p in group.split(",") if p and not p.startswith("experiment=")) if group else ""
    label = f"{name}/{extra}" if extra and extra != name else name
    resolved.run = {"dir": str(run_dir), "name": f"{label}/seed={resolved.seed}", "group": group or name,
                    "overrides": overrides}
    return resolved


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> int:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    resolved = resolve_run_config(cfg, run_dir, list(hc.overrides.task), hc.job.override_dirname)
    if hc.mode == RunMode.MULTIRUN:
        try:
            done = resume(run_dir, resolved)
        except ConfigChanged as e:
            print(f"golf: {e}", file=sys.stderr)
            return 1
        if done:
            print(done)
            return 0
    config_path = run_dir / "config.yaml"
    OmegaConf.save(resolved, config_path)
    launcher = instantiate(resolved.launcher)
    try:
        code = launcher.launch(config_path)
    except Exception as e:  # noqa: BLE001 - reported here; the traceback is in train.log and results.json
        if hc.mode != RunMode.MULTIRUN:
            print(f"golf: {type(e).__name__}: {e}\n(traceback in {run_dir / 'train.log'})", file=sys.stderr)
            sys.exit(1)
        traceback.print_exc()
        print(f"golf: job {run_dir} failed; the sweep continues (see its results.json)", file=sys.stderr)
        return 1
    if code != 0:
        print(f"golf: run {run_dir} ended with exit status {code} (see results.json)", file=sys.stderr)
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(code)
    return code


if __name__ == "__main__":
    main()
