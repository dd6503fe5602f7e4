"""What a sweep adds around its jobs: resuming, and the summary at the end.

A sweep started again in the same ``hydra.sweep.dir`` skips every job whose run directory already holds a
finished run (results.json with status ok, over_budget, partial_eval or diverged) of the same config, and runs
the others again: failed ones, and ones interrupted mid-run (status ``running``); the earlier attempt's
results.json is kept as results.previous.json. A finished run of a *different* config in the same place is
refused rather than overwritten. At the end ``SweepSummary`` writes the table of ``golf.summary`` into the
sweep directory and, with ``logger=wandb``, a W&B run of job_type ``summary`` carrying it.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

DONE = ("ok", "over_budget", "partial_eval", "diverged")
NOT_COMPARED = ("run", "logger", "launcher")  # where and how a run is launched and logged, not what it computes


class ConfigChanged(RuntimeError):
    """A finished run of another config sits where this job would write."""


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def config_diff(saved: Path, resolved: DictConfig) -> list[str]:
    """Dotted keys whose values differ between the run's saved config.yaml and ``resolved`` (the keys of
    ``NOT_COMPARED`` left out); every key when the saved file is missing or unreadable."""
    def flat(cfg) -> dict:
        c = OmegaConf.to_container(cfg, resolve=True)
        return _flat({k: v for k, v in c.items() if k not in NOT_COMPARED})

    new = flat(resolved)
    try:
        old = flat(OmegaConf.load(saved))
    except (OSError, ValueError) as e:
        return [f"(config.yaml unreadable: {e})"]
    return sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))


def resume(run_dir: Path, resolved: DictConfig) -> str | None:
    """A message when this job is already done (skip it); None to run it. Raises ConfigChanged when a finished
    run of another config is in ``run_dir``."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    try:
        prev = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        prev = {"status": "unreadable"}
    status = prev.get("status")
    if status not in DONE:
        path.replace(run_dir / "results.previous.json")
        print(f"golf: {run_dir}: earlier attempt {status} ({prev.get('error') or 'interrupted'}); running it again "
              f"(its record kept as results.previous.json)")
        return None
    changed = config_diff(run_dir / "config.yaml", resolved)
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise ConfigChanged(f"{run_dir} holds a finished run ({status}) of a different config ({shown} differ): "
                            f"start this sweep in a new hydra.sweep.dir, or delete {path} to replace that run")
    headline = (prev.get("headline") or {}).get("val_bpb")
    return (f"golf: skipping {run_dir}: finished earlier ({status}"
            + (f", val_bpb {headline:.4f}" if headline is not None else "") + "); delete its results.json to run it again")


class SweepSummary(Callback):
    """After a sweep: the table of ``scripts/summarize.py`` (summary.md/.json/.png in the sweep directory), and
    with ``logger=wandb`` a W&B run of job_type ``summary`` carrying it."""

    def __init__(self, baseline: str | None = None, plot: bool = True):
        self.baseline, self.plot = baseline, plot

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        summarize_sweep(Path(config.hydra.sweep.dir), config, self.baseline, self.plot)


def summarize_sweep(sweep_dir: Path, config: DictConfig, baseline: str | None = None, plot: bool = True) -> None:
    """Print and write the sweep's table of finished runs (and its W&B summary run, with logger=wandb)."""
    from golf.summary import load_results, stats_of, write_summary

    groups, problems = load_results(sweep_dir)
    try:
        md = write_summary(sweep_dir, groups, problems, baseline, plot)
    except KeyError as e:
        baseline = None
        md = write_summary(sweep_dir, groups, problems, None, plot) + f"\n(no baseline test: {e.args[0]})"
    print(f"sweep {sweep_dir}: {sum(len(g.runs) for g in groups.values())} finished runs\n{md}")
    if not groups or "logger" not in config:
        return
    try:
        backend = instantiate(config.logger)
        overrides = list(config.hydra.overrides.task) if "hydra" in config else []
        backend.sweep_summary(
            sweep_dir=sweep_dir, stats=stats_of(groups, baseline), markdown=md,
            plot=sweep_dir / "summary.png" if plot else None,
            config={"sweep_dir": str(sweep_dir), "baseline": baseline, "groups": sorted(groups), "overrides": overrides})
    except Exception as e:  # noqa: BLE001 - the summary files are written; the dashboard copy is extra
        print(f"golf: the sweep summary is in {sweep_dir}, but its W&B run failed: {type(e).__name__}: {e}")
