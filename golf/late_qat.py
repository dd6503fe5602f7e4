"""When quantization-aware training switches on, and the soft-round sharpness ramp (techniques.md §3.8-3.9).

QAT starts once the LR multiplier drops below ``lr_below`` (the records: 0.15) or, with ``last_fraction``,
once that fraction of the wallclock budget remains (#635: 0.15). It fake-quantizes every block matrix (the
model's shared ``FakeQuant``). Soft-round's alpha ramps linearly from ``alpha_start`` to ``alpha_end`` over
what remains of the run (by time under a wallclock cap, else by steps). With ``precompile`` the trainer
runs one QAT micro-step during the compile warm-up, so the switch mid-run finds its graph compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from golf.models.qat import MODES, FakeQuant, qat_range


@dataclass
class QATConfig:
    mode: str = "none"                 # none | ste | soft_round
    bits: int = 6
    lr_below: float = 0.15             # start when the LR multiplier is below this
    last_fraction: float | None = None  # or: start when this fraction of the wallclock budget is left
    clip: float = 1.0                  # row scale = clip * max |w| / qmax (#1089: 0.9995)
    symmetric: bool = False            # grid [-qmax, qmax] instead of the records' [-qmax - 1, qmax]
    alpha_start: float = 1.0
    alpha_end: float = 16.0
    precompile: bool = True
    scale_floor: float | None = None   # smallest row scale: null = the records' 1/qmax (conf: quant.scale_floor)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"train.qat.mode must be one of {MODES}, got {self.mode!r}")
        qat_range(self.bits, self.symmetric)
        if self.last_fraction is not None and not 0 < self.last_fraction < 1:
            raise ValueError(f"train.qat.last_fraction must be in (0, 1) (or null), got {self.last_fraction}")


class LateQAT:
    def __init__(self, cfg: QATConfig, fake_quant: FakeQuant | None):
        if cfg.mode != "none" and fake_quant is None:
            raise ValueError(f"train.qat.mode={cfg.mode} but the model has no fake-quantizer (model.qat); "
                             "use a golf.models.gpt.GPT or train.qat.mode=none")
        self.cfg, self.fq = cfg, fake_quant
        self.start_step: int | None = None
        self.start_ms = 0.0
        self.start_lr_mult: float | None = None

    @property
    def enabled(self) -> bool:
        return self.cfg.mode != "none"

    @property
    def active(self) -> bool:
        return self.start_step is not None

    def switch(self, on: bool) -> None:
        c = self.cfg
        self.fq.configure(mode=c.mode if on else "none", bits=c.bits, clip=c.clip, symmetric=c.symmetric,
                          scale_floor=c.scale_floor)
        self.fq.alpha.fill_(c.alpha_start)

    def precompile(self, one_micro_step: Callable[[], None]) -> None:
        """Run ``one_micro_step`` with QAT on (its graph compiles now), then switch back off."""
        if self.enabled and self.cfg.precompile:
            self.switch(True)
            one_micro_step()
            self.switch(False)

    def before_step(self, step: int, lr_mult: float, elapsed_ms: float, cap_ms: float | None,
                    max_steps: int, log: Callable[[str], None]) -> None:
        """Switch on when due; then set soft-round's alpha for this step."""
        if not self.enabled:
            return
        c = self.cfg
        if not self.active:
            if c.last_fraction is not None and cap_ms is not None:
                due = elapsed_ms >= (1 - c.last_fraction) * cap_ms
            else:
                due = lr_mult < c.lr_below
            if not due:
                return
            self.start_step, self.start_ms, self.start_lr_mult = step, elapsed_ms, lr_mult
            self.switch(True)
            log(f"qat: {c.mode} int{c.bits} on at step {step} (lr_mult {lr_mult:.3f}, {elapsed_ms / 1000:.1f}s)")
            if step <= 1 and c.last_fraction is None:
                log(f"qat: warning: the LR multiplier starts below train.qat.lr_below={c.lr_below}: the warmdown "
                    "covers the whole run, so the model trains fake-quantized from its first step. The records' "
                    "own late QAT never ran under torch.compile; to train as they did, set train.qat.mode=none, "
                    "or shorten schedule.warmdown_iters for a short run.")
        if c.mode == "soft_round":
            if cap_ms is not None:
                progress = (elapsed_ms - self.start_ms) / max(cap_ms - self.start_ms, 1e-9)
            else:
                progress = (step - self.start_step) / max(max_steps - self.start_step, 1)
            self.fq.alpha.fill_(c.alpha_start + (c.alpha_end - c.alpha_start) * min(max(progress, 0.0), 1.0))

    def describe(self) -> dict:
        return {"mode": self.cfg.mode, "bits": self.cfg.bits, "start_step": self.start_step,
                "start_lr_mult": self.start_lr_mult, "final_alpha": float(self.fq.alpha) if self.active and self.fq is not None else None}
