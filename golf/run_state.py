"""What a run's stages share: its components (``Parts``) and its state (``Run``): the process's place in the
job, the log and metrics, results.json, and what earlier stages made."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from golf.calibration.sources import Calibration, NoCalibration
from golf.compress.code_size import CodeAccount
from golf.data.loader import SequentialLoader
from golf.dist import DistInfo
from golf.eval.bpb import TargetBytes
from golf.logging import RunLog
from golf.quant.pack import Packed, Quantized
from golf.results import write_json_atomic
from golf.trainer import TrainConfig

ARTIFACT_NAME = "model.golf"
TRAINING_STAGES = ("build", "train", "prepare")  # the stages outside the post-training (evaluation) budget


@dataclass(frozen=True)
class RunFiles:
    """A run's record (results.json, train.log) and its artifact; ``golf.score`` writes its own record beside an
    artifact it reads."""

    results: Path
    log: Path
    artifact: Path

    @classmethod
    def of(cls, run_dir: Path) -> RunFiles:
        return cls(run_dir / "results.json", run_dir / "train.log", run_dir / ARTIFACT_NAME)


@dataclass
class Budget:
    artifact_bytes: int = 16_000_000   # decimal bytes: code + compressed model
    eval_seconds: float = 600.0


class VocabMismatch(ValueError):
    pass


@dataclass
class Parts:
    """The run's components, as the config built them."""

    data: Any
    model_factory: Callable[[], nn.Module]
    optimizer_factory: Callable[[nn.Module], Any]
    schedule: Any
    train_cfg: TrainConfig
    evaluator: Any
    quantizer: Any
    compressor: Any
    budget: Budget
    calibration: Calibration = field(default_factory=NoCalibration)
    loader_factory: Callable[..., Any] = SequentialLoader   # (train pattern, rank=, world_size=, device=) -> loader

    @property
    def calibrating(self) -> bool:
        """Whether the run collects Hessians: its quantizer needs them and its calibration gives them."""
        return bool(self.quantizer.needs_hessians) and self.calibration.enabled


@dataclass
class Run:
    """What the stages share: the components, the process's place in the job, and what earlier stages made."""

    run_dir: Path
    seed: int
    parts: Parts
    dist: DistInfo
    log: RunLog
    metrics: Any
    results: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config it runs (its submission script's)
    files: RunFiles | None = None         # where its record and artifact live (default: in run_dir)
    stop: bool = False                   # a stage ended the run early (status already set)
    exit_code: int = 0
    autocast_dtype: torch.dtype | None = None
    val_bytes: TargetBytes | None = None  # the bytes each validation target counts (val_bpb's denominator)
    val_tokens: torch.Tensor | None = None
    model: nn.Module | None = None
    train_model: nn.Module | None = None
    optimizer: Any = None
    loader: Any = None
    outcome: Any = None                   # train: golf.trainer.TrainOutcome
    prequant: dict[str, Any] | None = None  # average: the exported candidate's score, when it scored them
    hessians: dict[str, torch.Tensor] | None = None  # calibrate
    code: CodeAccount | None = None       # the submission script the byte budget counts (made once)
    quantized: Quantized | None = None    # quantize
    packed: Packed | None = None          # compress
    loaded: nn.Module | None = None       # load_artifact

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def main(self) -> bool:
        return self.dist.is_main

    def post_training_seconds(self) -> float:
        """Seconds of every stage after training so far (what budget.eval_seconds bounds)."""
        return sum(v for k, v in self.results["stages_s"].items() if k not in TRAINING_STAGES)

    def __post_init__(self) -> None:
        self.files = self.files or RunFiles.of(self.run_dir)

    def save(self) -> None:
        if self.main:
            write_json_atomic(self.files.results, self.results)

    def evaluate(self, model: nn.Module, time_budget: float | None = None) -> dict[str, Any]:
        """Score ``model`` with the configured evaluator (stopped by the time guard at ``time_budget`` seconds);
        the result as results.json stores it."""
        t = time.perf_counter()
        r = self.parts.evaluator.evaluate(model, self.val_tokens, self.val_bytes, rank=self.dist.rank,
                                          world_size=self.dist.world_size, autocast_dtype=self.autocast_dtype,
                                          time_budget=time_budget)
        out = {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes,
               "seconds": round(time.perf_counter() - t, 3)}
        return out if r.status == "complete" else {**out, "status": r.status}


def fmt_eval(r: dict[str, Any]) -> str:
    return f"val_loss {r['val_loss']:.4f} val_bpb {r['val_bpb']:.4f}"
