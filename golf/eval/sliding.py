"""Sliding-window evaluation (techniques.md §1.5): every target scored once, with at least window - stride
tokens of context.

With N targets, window W and stride s (N > W): window 0 covers x positions [0, W) and scores all of them;
window k >= 1 scores targets [W + (k-1) s, min(W + k s, N)) and ends with them, so it covers
[end - W, end): every window is full length (no padding) and the scored ranges partition the targets.
``reproduce_record_tail`` instead uses the records' windows (starts 0, s, 2s, ... while < N, the short tail
windows padded, each scoring its last s): their final windows score the last targets again, up to W/s times.
Only the scored positions go through the head, and in batches whose windows all score their last ``stride``
targets also through the last block (its keys and values still cover the window: exact, about 1/L of the
forward saved); NLL and bytes accumulate in float64; windows are split over
ranks in contiguous ranges and batched ``batch_windows`` at a time in static shapes (the last batch is
padded with repeats that are masked out). Only a shape that at least ``COMPILE_MIN_BATCHES`` batches use is
compiled; the one or two batches of another shape (window 0's, the records' tail) run eagerly: each would
otherwise cost a whole second compilation (about 25 s for the #1019 model) to save well under a second.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from golf.dist import guard_stops
from golf.eval.bpb import EvalResult, TargetBytes, bits_per_byte
from golf.trainer import COMPILE_MODES

COMPILE_MIN_BATCHES = 3


def golf_windows(n: int, window: int, stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """(start, first scored offset, end offset) per window, every target scored exactly once."""
    if n <= window:
        return torch.tensor([0]), torch.tensor([0]), torch.tensor([n])
    k = torch.arange(1, 1 + -(-(n - window) // stride))
    lo, hi = window + (k - 1) * stride, torch.clamp(window + k * stride, max=n)
    starts = torch.cat((torch.tensor([0]), hi - window))
    return starts, torch.cat((torch.tensor([0]), lo - (hi - window))), torch.cat((torch.tensor([window]), torch.full_like(k, window)))


def record_windows(n: int, window: int, stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """The records' windows: starts 0, s, 2s, ... < n; each scores its last s targets (window 0 all)."""
    starts = torch.arange(0, n, stride)
    wlen = torch.clamp(starts + window, max=n) - starts
    first = torch.where(starts == 0, torch.zeros_like(wlen), torch.clamp(wlen - stride, min=0))
    return starts, first, wlen


class SlidingEvaluator:
    def __init__(self, *, window: int = 2048, stride: int = 64, batch_windows: int = 32, reproduce_record_tail: bool = False,
                 compile: bool | str = "auto", compile_mode: str = "default"):
        if not 0 < stride <= window:
            raise ValueError(f"eval.sliding: stride must be in 1..window={window}, got {stride}")
        if batch_windows < 1:
            raise ValueError(f"eval.sliding.batch_windows must be >= 1, got {batch_windows}")
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"eval.sliding.compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
        self.window, self.stride, self.batch_windows, self.compile_mode = window, stride, batch_windows, compile_mode
        self.reproduce_record_tail, self.compile = reproduce_record_tail, compile
        self._compiled = {}

    def windows(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        return (record_windows if self.reproduce_record_tail else golf_windows)(n, self.window, self.stride)

    def _hidden(self, model, device: torch.device, batches: int):
        """The forward for a shape that ``batches`` batches use: compiled when compiling and there are enough."""
        want = self.compile if self.compile != "auto" else device.type == "cuda"
        if not want or batches < COMPILE_MIN_BATCHES:
            return model.hidden
        key = id(model)
        if key not in self._compiled:
            self._compiled = {key: torch.compile(model.hidden, dynamic=False, mode=self.compile_mode)}
        return self._compiled[key]

    @torch.inference_mode()
    def score(self, model, val_tokens: Tensor, val_bytes: TargetBytes, windows: tuple[Tensor, Tensor, Tensor],
              autocast_dtype: torch.dtype | None = None) -> Tensor:
        """float64 [nll, targets, bytes] of ``windows`` (start, first, end offsets) on this process."""
        device = val_bytes.device
        starts, first, end = windows
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        if starts.numel() == 0:
            return sums
        W, B = int(end.max()), self.batch_windows
        # Batches whose windows all score their last ``stride`` targets (all but the first and the records'
        # tail) run the last block for those positions only: two shapes in all, ``tail`` or full.
        los = [int(first[b : b + B].min()) for b in range(0, starts.numel(), B)]  # host copy: no device sync
        tails = [W - lo == self.stride and lo > 0 for lo in los]
        forward = {t: self._hidden(model, device, tails.count(t)) for t in (True, False)}
        ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        offsets = torch.arange(W + 1, device=device)
        val = val_tokens.to(device)
        n = val.numel() - 1
        on_device = [t.to(device) for t in (starts, first, end)]
        pos = torch.arange(W, device=device)[None, :]
        for b, lo, tail in zip(range(0, starts.numel(), B), los, tails):
            s, f, e = (t[b : b + B] for t in on_device)
            real = s.numel()
            if real < B:  # a static shape: repeat the last window, masked out below
                s, f, e = (torch.cat((t, t[-1:].expand(B - real))) for t in (s, f, e))
            at = torch.clamp(s[:, None] + offsets[None, :], max=n)
            chunk = val[at].long()
            y = chunk[:, lo + 1 :]
            with ctx:
                h = forward[tail](chunk[:, :-1], last=self.stride) if tail else forward[tail](chunk[:, :-1])[:, lo:]
                logits = model._project(h, None)
            nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(B, -1)
            # Multiplying by the mask (not indexing with it) keeps every shape static: no host sync per batch.
            mask = ((pos[:, lo:] >= f[:, None]) & (pos[:, lo:] < e[:, None])).double()
            mask[real:] = 0.0
            sums[0] += (nll.double() * mask).sum()
            sums[1] += mask.sum()
            sums[2] += (val_bytes.at(at[:, lo + 1 :]).double() * mask).sum()
        return sums

    def evaluate(self, model, val_tokens: Tensor, val_bytes: TargetBytes, *, rank: int = 0, world_size: int = 1,
                 autocast_dtype: torch.dtype | None = None, time_budget: float | None = None) -> EvalResult:
        """The sliding score of every window, each rank its share. ``time_budget`` (seconds): the windows go in
        ``GUARD_PARTS`` parts, and the eval stops before a part it would not finish; the score is then that of the
        windows scored, and ``status`` says so."""
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        starts, first, end = self.windows(val_tokens.numel() - 1)
        lo, hi = starts.numel() * rank // world_size, starts.numel() * (rank + 1) // world_size
        parts = 1 if time_budget is None else GUARD_PARTS
        sums = torch.zeros(3, dtype=torch.float64, device=val_bytes.device)
        status, slowest = "complete", 0.0
        for k in range(parts):
            elapsed = time.perf_counter() - t0
            if guard_stops(time_budget is not None and k > 0 and elapsed + slowest > time_budget, val_bytes.device,
                           world_size):
                status = (f"stopped by the time guard before part {k} of {parts} ({elapsed:.0f}s spent, budget "
                          f"{time_budget:.0f}s): the score covers the windows scored")
                break
            tk = time.perf_counter()
            a, b = lo + (hi - lo) * k // parts, lo + (hi - lo) * (k + 1) // parts
            sums += self.score(model, val_tokens, val_bytes, (starts[a:b], first[a:b], end[a:b]), autocast_dtype)
            if time_budget is not None:
                sums.sum().item()  # the part's time is the GPU's, not the host's queueing
            slowest = max(slowest, time.perf_counter() - tk)
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        model.train(was_training)
        nll, n_tok, n_bytes = (float(v) for v in sums.tolist())
        return EvalResult(val_loss=nll / n_tok, val_bpb=bits_per_byte(nll, n_bytes), tokens=int(n_tok), bytes=int(n_bytes),
                          seconds=time.perf_counter() - t0, status=status)


GUARD_PARTS = 32  # a guarded sliding eval checks the clock between 32 parts of its windows

