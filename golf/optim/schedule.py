"""Learning-rate and momentum schedules shared by every optimizer group.

LR: constant, then a linear warmdown to 0. With a wallclock cap (the iteration cap is then ignored,
as in the records) the warmdown is timed by measured throughput (techniques.md §3.6):
warmdown_ms = warmdown_iters * elapsed_ms / step, and the multiplier is remaining_ms / warmdown_ms
once remaining_ms <= warmdown_ms. Without a cap it counts iterations. An optional floor keeps the
multiplier >= ``lr_floor``.
Muon momentum: linear from ``momentum_start`` to ``momentum_end`` over ``momentum_warmup_steps``.
"""

from __future__ import annotations


class WarmdownSchedule:
    def __init__(
        self,
        *,
        warmdown_iters: int = 1200,
        lr_floor: float = 0.0,
        momentum_start: float = 0.85,
        momentum_end: float = 0.95,
        momentum_warmup_steps: int = 500,
    ):
        if warmdown_iters < 0:
            raise ValueError(f"schedule.warmdown_iters must be >= 0, got {warmdown_iters}")
        self.warmdown_iters = warmdown_iters
        self.lr_floor = lr_floor
        self.momentum_start = momentum_start
        self.momentum_end = momentum_end
        self.momentum_warmup_steps = momentum_warmup_steps

    def lr_multiplier(self, step: int, elapsed_ms: float, cap_ms: float | None, max_steps: int | None) -> float:
        mult = 1.0
        if self.warmdown_iters > 0:
            if cap_ms is not None:
                warmdown_ms = self.warmdown_iters * elapsed_ms / max(step, 1)
                remaining_ms = max(cap_ms - elapsed_ms, 0.0)
                if remaining_ms <= warmdown_ms:
                    mult = remaining_ms / max(warmdown_ms, 1e-9)
            elif max_steps is not None and step >= max_steps - self.warmdown_iters:
                mult = max((max_steps - step) / self.warmdown_iters, 0.0)
        return max(mult, self.lr_floor)

    def muon_momentum(self, step: int) -> float:
        if self.momentum_warmup_steps <= 0:
            return self.momentum_end
        frac = min(step / self.momentum_warmup_steps, 1.0)
        return (1 - frac) * self.momentum_start + frac * self.momentum_end
