"""Rank-0 logging: console + ``train.log`` lines, and a metrics backend (W&B or none).

Every rank gets an object with the same methods; only rank 0's does anything.
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

    def start(self, *, config: dict, run_dir: Path, name: str, group: str | None) -> None:
        pass

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
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

    def start(self, *, config: dict, run_dir: Path, name: str, group: str | None) -> None:
        import wandb

        t0 = time.perf_counter()
        self._run = wandb.init(
            project=self.project, entity=self.entity, group=self.group or group, name=name, job_type="train",
            config=config, dir=str(run_dir), mode=self.mode, tags=self.tags, reinit="finish_previous",
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        print(f"wandb: {self.mode} run {name} (start {time.perf_counter() - t0:.1f}s)", file=sys.stderr)

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
