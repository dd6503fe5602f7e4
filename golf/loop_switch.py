"""When depth recurrence switches on in training (``model.loop_from``, #1394: 0.50; #1493-#1855: 0.35).

The records run the plain order until that fraction of the training budget has passed (by wallclock under a cap,
else by steps), then the looped one; evaluation always loops. The compile warm-up runs a step in each order, so
the switch mid-run finds its graph compiled, and the end of training leaves the loop on whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


class LoopSwitch:
    def __init__(self, model: nn.Module):
        self.model = model if getattr(model, "loop", None) is not None and getattr(model, "loop_from", 0) > 0 else None
        self.start_step: int | None = None

    @property
    def enabled(self) -> bool:
        return self.model is not None

    def begin(self) -> None:
        if self.enabled:
            self.model.looping = False

    def precompile(self, one_step: Callable[[], object]) -> None:
        """One step in the looped order (its graph compiles now), then back to the plain one."""
        if self.enabled:
            self.model.looping = True
            one_step()
            self.model.looping = False

    def before_step(self, step: int, elapsed_ms: float, cap_ms: float | None, max_steps: int,
                    log: Callable[[str], None]) -> None:
        if not self.enabled or self.start_step is not None:
            return
        frac = elapsed_ms / cap_ms if cap_ms else step / max(max_steps, 1)
        if frac >= self.model.loop_from:
            self.model.looping, self.start_step = True, step
            log(f"depth recurrence: layers {list(self.model.loop)} x{self.model.loop_repeats + 1} on at step {step} "
                f"({frac:.2f} of training, {len(self.model.layer_order())} virtual layers)")

    def finish(self) -> dict | None:
        if not self.enabled:
            return None
        self.model.looping = True
        return {"loop_from": self.model.loop_from, "start_step": self.start_step}
