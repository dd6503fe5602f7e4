"""Where GPTQ's calibration tokens come from (the ``calibration`` group, techniques.md §5).

  none    no calibration (quantizers that need Hessians refuse to start with it)
  train   training batches, inside the training budget: ``reserve_seconds`` come off the wallclock cap
          before training starts, so warmdown and QAT see the shorter run (#1060, #1089)
  val     validation batches: not allowed for a record (results.json says so)
  ar      the model's own samples, KV-cached (#1019: 64 x 2048 at temperature 0.8)
  random  uniform random tokens (an ablation)
A source yields this rank's share of ``sequences`` sequences of ``seq_len`` tokens (null: the training
length), ``batch_seqs`` at a time; batch b goes to rank b mod world_size, so the union over ranks, and hence
the all-reduced Hessians, do not depend on the world size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from golf.calibration.generate import check_decode_mode, generate


@dataclass
class CalibrationContext:
    model: Any
    device: torch.device
    autocast_dtype: torch.dtype | None
    rank: int
    world_size: int
    seed: int
    seq_len: int                 # the training sequence length
    loader: Any = None           # the training loader (continues after training)
    val_tokens: Tensor | None = None


class Calibration:
    name = "none"
    reserve_seconds = 0.0
    allowed_for_record = True

    def __init__(self, *, sequences: int = 0, seq_len: int | None = None, batch_seqs: int = 8, seed: int | None = None):
        if sequences < 0 or batch_seqs < 1:
            raise ValueError(f"calibration.sequences must be >= 0 and calibration.batch_seqs >= 1, got {sequences}, {batch_seqs}")
        self.sequences, self.seq_len, self.batch_seqs, self.seed = sequences, seq_len, batch_seqs, seed

    @property
    def enabled(self) -> bool:
        return self.name != "none" and self.sequences > 0

    def check(self, model: Any, train_cap_seconds: float | None) -> None:
        """Refuse, before training, a source that cannot run (the message names the option)."""

    def _shares(self, ctx: CalibrationContext) -> Iterator[tuple[int, int]]:
        """(batch index, sequences in it) for this rank's batches."""
        n_batches = -(-self.sequences // self.batch_seqs)
        for b in range(ctx.rank, n_batches, ctx.world_size):
            yield b, min(self.batch_seqs, self.sequences - b * self.batch_seqs)

    def batches(self, ctx: CalibrationContext) -> Iterator[Tensor]:
        return iter(())

    def describe(self) -> dict:
        return {"source": self.name, "sequences": self.sequences, "seq_len": self.seq_len,
                "allowed_for_record": self.allowed_for_record, "reserve_seconds": self.reserve_seconds}


class NoCalibration(Calibration):
    name = "none"


class TrainBatches(Calibration):
    name = "train"

    def __init__(self, *, sequences: int = 3072, seq_len: int | None = None, batch_seqs: int = 48,
                 reserve_seconds: float = 14.0, seed: int | None = None):
        super().__init__(sequences=sequences, seq_len=seq_len, batch_seqs=batch_seqs, seed=seed)
        if reserve_seconds < 0:
            raise ValueError(f"calibration.reserve_seconds must be >= 0, got {reserve_seconds}")
        self.reserve_seconds = reserve_seconds

    def check(self, model: Any, train_cap_seconds: float | None) -> None:
        if train_cap_seconds and self.reserve_seconds >= train_cap_seconds:
            raise ValueError(f"calibration.reserve_seconds={self.reserve_seconds} leaves no training time of "
                             f"train.max_wallclock_seconds={train_cap_seconds}; lower the reserve")

    def batches(self, ctx: CalibrationContext) -> Iterator[Tensor]:
        """Every rank walks all batches through its copy of the stream and keeps batch b when b mod world_size
        is its rank: the union is the next ``sequences`` sequences of the stream at any world size."""
        T = self.seq_len or ctx.seq_len
        for b in range(-(-self.sequences // self.batch_seqs)):
            n = min(self.batch_seqs, self.sequences - b * self.batch_seqs)
            x = ctx.loader.next_sequences(n, T, keep=b % ctx.world_size == ctx.rank)
            if x is not None:
                yield x


class ValBatches(Calibration):
    name = "val"
    allowed_for_record = False

    def __init__(self, *, sequences: int = 3072, seq_len: int | None = None, batch_seqs: int = 48, seed: int | None = None):
        super().__init__(sequences=sequences, seq_len=seq_len, batch_seqs=batch_seqs, seed=seed)

    def batches(self, ctx: CalibrationContext) -> Iterator[Tensor]:
        T = self.seq_len or ctx.seq_len
        val = ctx.val_tokens
        available = (val.numel() - 1) // T
        if available < self.sequences:
            raise ValueError(f"calibration=val wants {self.sequences} sequences of {T} but the validation split has "
                             f"{available}; lower calibration.sequences")
        for b, n in self._shares(ctx):
            start = b * self.batch_seqs * T
            yield val[start : start + n * T].to(device=ctx.device, dtype=torch.long).view(n, T)


class AutoRegressive(Calibration):
    name = "ar"

    def __init__(self, *, sequences: int = 64, seq_len: int | None = 2048, batch_seqs: int = 8, temperature: float = 0.8,
                 seed: int | None = None, decode: str = "auto"):
        super().__init__(sequences=sequences, seq_len=seq_len, batch_seqs=batch_seqs, seed=seed)
        if temperature <= 0:
            raise ValueError(f"calibration.temperature must be > 0, got {temperature}")
        self.temperature, self.decode = temperature, check_decode_mode(decode)
        self.generate_seconds: float | None = None

    def check(self, model: Any, train_cap_seconds: float | None) -> None:
        if not (hasattr(model, "decode_state") and hasattr(model, "decode")):
            raise ValueError(f"calibration=ar needs a model that decodes incrementally (decode_state / decode, as "
                             f"golf.models.gpt.GPT); {type(model).__name__} does not")

    def batches(self, ctx: CalibrationContext) -> Iterator[Tensor]:
        """This rank's batches, decoded together; their Hessian pass then goes ``batch_seqs`` at a time."""
        shares = list(self._shares(ctx))
        if not shares:
            return
        seed = ctx.seed if self.seed is None else self.seed
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        t0 = time.perf_counter()
        tokens = generate(ctx.model, shares, self.seq_len or ctx.seq_len, self.temperature, seed, ctx.device,
                          ctx.autocast_dtype, self.decode)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        self.generate_seconds = round(time.perf_counter() - t0, 3)
        yield from tokens.split(self.batch_seqs)

    def describe(self) -> dict:
        out = {**super().describe(), "temperature": self.temperature, "decode": self.decode}
        if self.generate_seconds is not None:
            out["generate_seconds"] = self.generate_seconds  # this rank's decoding alone (the Hessians come after)
        return out


class RandomTokens(Calibration):
    name = "random"

    def __init__(self, *, sequences: int = 64, seq_len: int | None = 2048, batch_seqs: int = 8, seed: int | None = None):
        super().__init__(sequences=sequences, seq_len=seq_len, batch_seqs=batch_seqs, seed=seed)

    def batches(self, ctx: CalibrationContext) -> Iterator[Tensor]:
        T = self.seq_len or ctx.seq_len
        for b, n in self._shares(ctx):
            g = torch.Generator().manual_seed((ctx.seed if self.seed is None else self.seed) * 1_000_003 + b)
            yield torch.randint(0, ctx.model.vocab_size, (n, T), generator=g).to(ctx.device)
