"""Weight averaging during training (techniques.md §3.7): an EMA and tight SWA, and the candidates the
pipeline's ``average`` stage chooses the exported weights from.

EMA: e <- d_t e + (1 - d_t) w after every optimizer step, in fp32. The records use d_t = 0.997 from step 0,
which after a short run is mostly the initialisation (the #1019 script after 231 steps: val_bpb 2.95 for
the EMA, 1.46 for the raw weights). With ``warmup`` (golf's default) d_t = min(decay, (1 + t) / (10 + t)),
so the average spans the last ~t/9 steps early on and reaches the records' decay after ~3,000 steps: the
same EMA for a record-length run, a useful one for a short run.
SWA: every ``every`` steps once the LR multiplier is below ``lr_below``, add the raw (or EMA) weights to a
running sum; the average is a candidate like any other, and is what is exported when chosen (#414-#1019
collected it and never applied it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

EXPORTS = ("raw", "ema", "swa", "best")


@dataclass
class EMAConfig:
    decay: float = 0.0      # 0: off; the #414 line: 0.997
    warmup: bool = True     # d_t = min(decay, (1 + t) / (10 + t)); false: the records' constant decay from step 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"train.ema.decay must be in [0, 1) (0: off), got {self.decay}")


@dataclass
class SWAConfig:
    every: int = 0          # 0: off; the records: every 50 steps
    lr_below: float = 0.2   # only while the LR multiplier is below this
    source: str = "raw"     # raw | ema (#635 averaged EMA snapshots)

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"train.swa.every must be >= 0 (0: off), got {self.every}")
        if self.source not in ("raw", "ema"):
            raise ValueError(f"train.swa.source must be raw or ema, got {self.source!r}")


class WeightAverager:
    """Keeps the EMA and the SWA sum of a model's parameters (fp32, on the parameters' device)."""

    def __init__(self, model: nn.Module, ema: EMAConfig, swa: SWAConfig):
        self.model, self.ema_cfg, self.swa_cfg = model, ema, swa
        self.names = [n for n, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.ema: list[Tensor] | None = [p.detach().float().clone() for p in self.params] if ema.decay > 0 else None
        self.swa_sum: list[Tensor] | None = None
        self.swa_count = 0
        self.swa_first_step: int | None = None
        self.updates = 0

    @property
    def active(self) -> bool:
        return self.ema is not None or self.swa_cfg.every > 0

    def ema_decay(self, t: int) -> float:
        d = self.ema_cfg.decay
        return min(d, (1 + t) / (10 + t)) if self.ema_cfg.warmup else d

    @torch.no_grad()
    def update(self, step: int, lr_mult: float) -> None:
        """After optimizer step ``step`` (1-based) at LR multiplier ``lr_mult``."""
        current = [p.detach() if p.dtype == torch.float32 else p.detach().float() for p in self.params]
        if self.ema is not None:
            torch._foreach_lerp_(self.ema, current, 1.0 - self.ema_decay(self.updates))
        self.updates += 1
        cfg = self.swa_cfg
        if cfg.every and lr_mult < cfg.lr_below and step % cfg.every == 0:
            src = self.ema if cfg.source == "ema" and self.ema is not None else current
            if self.swa_sum is None:
                self.swa_sum = [t.clone() for t in src]
                self.swa_first_step = step
            else:
                torch._foreach_add_(self.swa_sum, src)
            self.swa_count += 1

    def candidates(self) -> dict[str, list[Tensor]]:
        """The weights a run can export: ``raw`` always, ``ema`` and ``swa`` when they exist."""
        out = {"raw": [p.detach().float().clone() for p in self.params]}
        if self.ema is not None:
            out["ema"] = self.ema
        if self.swa_sum is not None:
            out["swa"] = [t / self.swa_count for t in self.swa_sum]
        return out

    @torch.no_grad()
    def load(self, weights: list[Tensor]) -> None:
        """Copy a candidate into the model (cast to each parameter's dtype)."""
        for p, w in zip(self.params, weights):
            p.copy_(w.to(p.dtype))

    def describe(self) -> dict:
        return {"ema_decay": self.ema_cfg.decay if self.ema is not None else None, "ema_warmup": self.ema_cfg.warmup,
                "ema_final_decay": self.ema_decay(max(self.updates - 1, 0)) if self.ema is not None else None,
                "swa_snapshots": self.swa_count, "swa_first_step": self.swa_first_step, "swa_source": self.swa_cfg.source}
