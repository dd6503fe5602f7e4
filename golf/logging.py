"""Rank-0 logging: console + ``train.log`` lines, and a metrics backend (W&B or none).

Every rank gets an object with the same methods; only rank 0's does anything. A W&B run is one golf run:
config = the resolved config, group = the overrides without the seed, job_type = ``train`` or ``requantize``
(saved weights re-quantized and re-scored without training); per-step metrics while training, and at the end
every eval, the artifact's bytes and the stage timings in the run summary. A sweep adds one run of job_type
``summary`` with the table and the plot of ``golf.summary``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


class RunLog:
    """Console and file lines, rank 0 only."""

    def __init__(self, path: str | Path | None, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(path) if path and enabled else None
        self._f = open(self.path, "a", encoding="utf-8", buffering=1) if self.path else None

    def __call__(self, msg: str, console: bool = True) -> None:
        if not self.enabled:
            return
        if console:
            print(msg, flush=True)
        if self._f:
            self._f.write(msg + "\n")

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None


class NullBackend:
    """No metrics backend (``logger=none``), also what non-zero ranks get."""

    name = "none"

    def start(self, *, config: dict, run_dir: Path, name: str, group: str | None, job_type: str = "train") -> None:
        pass

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass

    def sweep_summary(self, *, sweep_dir: Path, stats: dict, markdown: str, plot: Path | None,
                      config: dict) -> None:
        pass


class WandbBackend(NullBackend):
    """Weights & Biases, offline by default (files under the run directory; ``wandb sync`` later)."""

    name = "wandb"

    def __init__(self, *, mode: str = "offline", project: str = "golf", entity: str | None = None,
                 group: str | None = None, tags: list[str] | None = None):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be offline, online or disabled, got {mode!r}")
        self.mode, self.project, self.entity, self.group = mode, project, entity, group
        self.tags = list(tags or [])
        self._run = None

    def _init(self, *, config: dict, run_dir: Path, name: str, group: str | None, job_type: str):
        import wandb

        t0 = time.perf_counter()
        run = wandb.init(
            project=self.project, entity=self.entity, group=self.group or group, name=name, job_type=job_type,
            config=config, dir=str(run_dir), mode=self.mode, tags=self.tags, reinit="finish_previous",
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        print(f"wandb: {self.mode} {job_type} run {name} (start {time.perf_counter() - t0:.1f}s)", file=sys.stderr)
        return run

    def start(self, *, config: dict, run_dir: Path, name: str, group: str | None, job_type: str = "train") -> None:
        self._run = self._init(config=config, run_dir=run_dir, name=name, group=group, job_type=job_type)

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._run is not None:
            self._run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            for k, v in values.items():
                self._run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self._run is not None:
            self._run.finish(exit_code=exit_code)
            self._run = None

    def sweep_summary(self, *, sweep_dir: Path, stats: dict, markdown: str, plot: Path | None,
                      config: dict) -> None:
        """One run of job_type ``summary``: the per-group table, the plot, and each group's means in its summary."""
        import wandb

        from golf.summary import COLUMNS

        run = self._init(config=config, run_dir=sweep_dir, name=f"summary {sweep_dir.name}",
                         group=f"sweep {sweep_dir.parent.name}/{sweep_dir.name}", job_type="summary")
        metrics = [m for m, _, _ in COLUMNS]
        columns = ["group", "n"] + [f"{m} {s}" for m in metrics for s in ("mean", "std")] + [
            "diff_nats", "p_two_sided", "p_beats_bar", "seeds_needed"]
        rows = []
        for name, row in stats.items():
            vs = row.get("vs_baseline") or {}
            rows.append([name, row["n"]] + [row[m][s] for m in metrics for s in ("mean", "std")]
                        + [vs.get(k) for k in ("diff_nats", "p_two_sided", "p_beats_bar", "seeds_needed")])
            for m in metrics:
                run.summary[f"{name}/{m}"] = row[m]["mean"]
        logged = {"summary_table": wandb.Table(columns=columns, data=rows)}
        if plot is not None and Path(plot).is_file():
            logged["summary_plot"] = wandb.Image(str(plot))
        run.log(logged)
        run.summary["markdown"] = markdown
        run.finish()
