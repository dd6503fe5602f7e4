"""Learning-rate and momentum schedules shared by every optimizer group (techniques.md §3.5, §3.6).

LR multiplier: constant, then a linear warmdown to 0, floored at ``lr_floor`` (#1089: 0.05). The warmdown
length is either
- ``warmdown_iters`` steps: with a wallclock cap (the iteration cap is then ignored, as in the records)
  it is timed by measured throughput, warmdown_ms = warmdown_iters * elapsed_ms / step, and the
  multiplier is remaining_ms / warmdown_ms once remaining_ms <= warmdown_ms (``cap_at_budget``: warmdown_ms
  is at most the whole budget, #1089); without a cap it counts iterations; or
- ``warmdown_fraction`` of the run: the last fraction of the wallclock budget (or of the iterations),
  which behaves the same at any run length.
Muon momentum: linear from ``momentum_start`` to ``momentum_end`` over ``momentum_warmup_steps``.
Muon weight-decay taper (#1729's folder; no other record has one, frontier.md §8): the decay times 1 until
``wd_taper_start`` of the run (wallclock or iterations), then linearly down to ``wd_taper_final`` at its end.
"""

from __future__ import annotations


class WarmdownSchedule:
    def __init__(
        self,
        *,
        warmdown_iters: int = 1200,
        warmdown_fraction: float | None = None,
        cap_at_budget: bool = False,
        lr_floor: float = 0.0,
        momentum_start: float = 0.85,
        momentum_end: float = 0.95,
        momentum_warmup_steps: int = 500,
        wd_taper_start: float | None = None,
        wd_taper_final: float = 0.5,
    ):
        if warmdown_iters < 0:
            raise ValueError(f"schedule.warmdown_iters must be >= 0, got {warmdown_iters}")
        if warmdown_fraction is not None and not 0 < warmdown_fraction <= 1:
            raise ValueError(f"schedule.warmdown_fraction must be in (0, 1] (or null), got {warmdown_fraction}")
        if not 0 <= lr_floor <= 1:
            raise ValueError(f"schedule.lr_floor must be in [0, 1], got {lr_floor}")
        self.warmdown_iters, self.warmdown_fraction = warmdown_iters, warmdown_fraction
        self.cap_at_budget, self.lr_floor = cap_at_budget, lr_floor
        self.momentum_start = momentum_start
        self.momentum_end = momentum_end
        self.momentum_warmup_steps = momentum_warmup_steps
        if wd_taper_start is not None and not 0 <= wd_taper_start < 1:
            raise ValueError(f"schedule.wd_taper_start must be in [0, 1) (or null: no taper), got {wd_taper_start}")
        if wd_taper_final < 0:
            raise ValueError(f"schedule.wd_taper_final must be >= 0, got {wd_taper_final}")
        self.wd_taper_start, self.wd_taper_final = wd_taper_start, wd_taper_final

    def lr_multiplier(self, step: int, elapsed_ms: float, cap_ms: float | None, max_steps: int | None) -> float:
        mult = 1.0
        if self.warmdown_fraction is not None:
            if cap_ms is not None:
                mult = max(cap_ms - elapsed_ms, 0.0) / (self.warmdown_fraction * cap_ms)
            elif max_steps is not None:
                mult = max(max_steps - step, 0) / (self.warmdown_fraction * max_steps)
        elif self.warmdown_iters > 0:
            if cap_ms is not None:
                warmdown_ms = self.warmdown_iters * elapsed_ms / max(step, 1)
                if self.cap_at_budget:
                    warmdown_ms = min(warmdown_ms, cap_ms)
                remaining_ms = max(cap_ms - elapsed_ms, 0.0)
                if remaining_ms <= warmdown_ms:
                    mult = remaining_ms / max(warmdown_ms, 1e-9)
            elif max_steps is not None and step >= max_steps - self.warmdown_iters:
                mult = max((max_steps - step) / self.warmdown_iters, 0.0)
        return max(min(mult, 1.0), self.lr_floor)

    def muon_momentum(self, step: int) -> float:
        if self.momentum_warmup_steps <= 0:
            return self.momentum_end
        frac = min(step / self.momentum_warmup_steps, 1.0)
        return (1 - frac) * self.momentum_start + frac * self.momentum_end

    def wd_multiplier(self, step: int, elapsed_ms: float, cap_ms: float | None, max_steps: int | None) -> float:
        if self.wd_taper_start is None:
            return 1.0
        frac = elapsed_ms / cap_ms if cap_ms else step / max(max_steps or 1, 1)
        progress = min(max((frac - self.wd_taper_start) / (1.0 - self.wd_taper_start), 0.0), 1.0)
        return 1.0 + (self.wd_taper_final - 1.0) * progress
