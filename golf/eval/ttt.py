"""Legal score-first test-time training (techniques.md §1.6; PR #461's recipe as #549 and #635 ran it).

The validation targets are cut into chunks of ``chunk_tokens``; sliding windows (exactly-once, as
``golf.eval.sliding``) belong to the chunk of their first scored target. For each chunk in order: score its
windows under inference mode, then (except after the last chunk) train on sequences of ``seq_len`` tokens
whose targets all lie in [chunk start, scored so far), so no target ever shapes the weights it is scored
with. Training: SGD with momentum, one optimizer for the whole pass, the LR cosine over chunks (constant
within one), ``epochs`` passes, mini-batches of ``batch_seqs`` split over ranks, gradients averaged, global
norm clipped. ``freeze_blocks`` freezes every parameter of the first blocks (golf keeps per-layer weights,
so nothing escapes: in the banked records freezing a block froze only its scalars).
The time guard: before each chunk, if the time spent plus the slowest chunk so far would pass
``time_budget``, TTT stops; the score is that of the chunks scored, and the result says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from golf.dist import guard_stops, sync_and_step
from golf.eval.bpb import TargetBytes, bits_per_byte
from golf.eval.sliding import SlidingEvaluator


@dataclass
class TTTResult:
    val_loss: float
    val_bpb: float
    tokens: int
    bytes: int
    seconds: float
    chunks: int
    chunks_scored: int
    status: str                  # complete | stopped by the time guard ...

    def details(self) -> dict:
        return {"method": "chunk SGD", "chunks": self.chunks, "chunks_scored": self.chunks_scored}


class TTTEvaluator:
    def __init__(self, *, chunk_tokens: int = 32_768, window: int = 2048, stride: int = 64, batch_windows: int = 32,
                 seq_len: int = 2048, lr: float = 0.002, momentum: float = 0.9, epochs: int = 3, batch_seqs: int = 32,
                 grad_clip: float = 1.0, freeze_blocks: int = 0, compile: bool | str = "auto"):
        if chunk_tokens < seq_len:
            raise ValueError(f"eval.ttt.chunk_tokens={chunk_tokens} must hold at least one sequence (seq_len={seq_len})")
        if epochs < 0 or lr < 0 or freeze_blocks < 0:
            raise ValueError(f"eval.ttt: epochs, lr and freeze_blocks must be >= 0, got {epochs}, {lr}, {freeze_blocks}")
        self.chunk_tokens, self.seq_len, self.lr, self.momentum = chunk_tokens, seq_len, lr, momentum
        self.epochs, self.batch_seqs, self.grad_clip, self.freeze_blocks = epochs, batch_seqs, grad_clip, freeze_blocks
        self.sliding = SlidingEvaluator(window=window, stride=stride, batch_windows=batch_windows, compile=compile)

    def trainable(self, model) -> list[torch.nn.Parameter]:
        frozen = {id(p) for b in list(model.blocks)[: self.freeze_blocks] for p in b.parameters()}
        return [p for p in model.parameters() if id(p) not in frozen]

    def evaluate(self, model, val_tokens: Tensor, val_bytes: TargetBytes, *, rank: int = 0, world_size: int = 1,
                 autocast_dtype: torch.dtype | None = None, time_budget: float | None = None,
                 recorder: Callable[[str, int, Tensor], None] | None = None) -> TTTResult:
        """Score-first TTT of ``model`` (its weights change). ``recorder(kind, version, target positions)``
        sees every scored ("score") and trained-on ("train") target with the weights' version number."""
        t0 = time.perf_counter()
        device = val_bytes.device
        n = val_tokens.numel() - 1
        starts, first, end = self.sliding.windows(n)
        chunk_of = (starts + first) // self.chunk_tokens
        n_chunks = int(chunk_of.max()) + 1
        params = self.trainable(model)
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else torch.autocast(device.type, enabled=False)
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        version, done, slowest, status = 0, 0, 0.0, "complete"
        for ci in range(n_chunks):
            elapsed = time.perf_counter() - t0
            if guard_stops(time_budget is not None and done > 0 and elapsed + slowest > time_budget, device, world_size):
                budget = f"budget {time_budget:.0f}s" if time_budget is not None else "another rank's budget"
                status = (f"stopped by the time guard before chunk {ci} of {n_chunks} ({elapsed:.0f}s spent, "
                          f"{budget}): the score covers the chunks scored")
                break
            tc = time.perf_counter()
            sel = torch.nonzero(chunk_of == ci).squeeze(1)
            mine = sel[len(sel) * rank // world_size : len(sel) * (rank + 1) // world_size]
            model.eval()
            sums += self.sliding.score(model, val_tokens, val_bytes, (starts[mine], first[mine], end[mine]), autocast_dtype)
            scored_upto = int((starts[sel] + end[sel]).max())  # targets < this are scored (all ranks)
            if recorder is not None:
                for i in sel.tolist():
                    recorder("score", version, torch.arange(int(starts[i] + first[i]), int(starts[i] + end[i])))
            if ci < n_chunks - 1 and self.epochs and self.lr:
                lr = self.lr * 0.5 * (1 + math.cos(math.pi * ci / max(n_chunks - 1, 1)))
                version = self._train_chunk(model, opt, params, val_tokens, ci * self.chunk_tokens, scored_upto, lr, ctx,
                                            rank, world_size, version, recorder)
            done += 1
            slowest = max(slowest, time.perf_counter() - tc)
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        model.eval()
        nll, n_tok, n_bytes = (float(v) for v in sums.tolist())
        return TTTResult(val_loss=nll / n_tok, val_bpb=bits_per_byte(nll, n_bytes), tokens=int(n_tok), bytes=int(n_bytes),
                         seconds=time.perf_counter() - t0, chunks=n_chunks, chunks_scored=done, status=status)


    def _train_chunk(self, model, opt, params, val_tokens: Tensor, lo: int, hi: int, lr: float, ctx, rank: int,
                     world_size: int, version: int, recorder) -> int:
        """Train on sequences whose targets lie in [lo, hi); returns the weights' new version."""
        T = self.seq_len
        seq_starts = list(range(lo, hi - T + 1, T))
        if not seq_starts:
            return version
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        device = next(model.parameters()).device
        for _ in range(self.epochs):
            for b in range(0, len(seq_starts), self.batch_seqs):
                batch = seq_starts[b : b + self.batch_seqs]
                mine = batch[len(batch) * rank // world_size : len(batch) * (rank + 1) // world_size]
                opt.zero_grad(set_to_none=True)
                if mine:
                    chunk = torch.stack([val_tokens[s : s + T + 1] for s in mine]).to(device=device, dtype=torch.long)
                    with ctx:
                        loss = model(chunk[:, :-1], chunk[:, 1:])
                    (loss * len(mine) / len(batch)).backward()
                sync_and_step(opt, params, self.grad_clip, world_size)
                version += 1
                if recorder is not None:
                    for s in batch:
                        recorder("train", version, torch.arange(s, s + T))
        return version
