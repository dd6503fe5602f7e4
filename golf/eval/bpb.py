"""Non-sliding validation (techniques.md §1.4) and the val_bpb formula (§1.3).

The validation stream (truncated to a multiple of ``seq_len`` plus one token) is cut into disjoint
``seq_len`` windows split evenly over ranks; every target is scored. A target's bytes come from
``TargetBytes`` (the tokenizer's pieces, or a CaseOps sidecar). NLL, token and byte counts are
accumulated in float64 and summed over ranks:
    val_loss = sum NLL / N_tokens,   val_bpb = sum NLL / (ln 2 * sum bytes).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from golf.data.tokenizer import ByteLUT
from golf.dist import guard_stops


@dataclass(frozen=True)
class EvalResult:
    val_loss: float
    val_bpb: float
    tokens: int
    bytes: int
    seconds: float = 0.0
    status: str = "complete"     # or what stopped it early (the time guard): the score covers what was scored


def bits_per_byte(nll_sum: float, n_bytes: float) -> float:
    return nll_sum / (math.log(2.0) * n_bytes)


MAX_LOGITS = 1 << 29  # 2 GiB of fp32 logits a forward: vocab 1024 keeps 524,288 tokens, vocab 8192 gets 65,536


def logit_cap(model) -> int:
    """Tokens one forward may hold so that its logits stay within ``MAX_LOGITS`` elements: a batch of 524,288
    tokens at vocab 8192 would make 17 GB of fp32 logits in an uncompiled forward (and a 32 GiB request)."""
    vocab = getattr(model, "vocab_size", None)
    return MAX_LOGITS // vocab if isinstance(vocab, int) and vocab > 0 else 1 << 62


def truncate_validation(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"validation split ({tokens.size} tokens) is shorter than one sequence of {seq_len}")
    return tokens[: usable + 1]


class LutOnDevice:
    """The byte tables as device tensors, built once per device."""

    def __init__(self, lut: ByteLUT, device: torch.device):
        self.base = torch.as_tensor(lut.base_bytes.astype(np.int32), device=device)
        self.space = torch.as_tensor(lut.has_leading_space, device=device)
        self.boundary = torch.as_tensor(lut.is_boundary, device=device)

    def bytes(self, prev: Tensor, tgt: Tensor) -> Tensor:
        """UTF-8 bytes of each target given its previous token (int32, the shape of ``tgt``)."""
        return self.base[tgt] + (self.space[tgt] & ~self.boundary[prev]).int()

    def count(self, prev: Tensor, tgt: Tensor) -> Tensor:
        return self.bytes(prev, tgt).sum(dtype=torch.float64)


class TargetBytes:
    """The bytes each position of the validation stream counts as a target (position 0, never a target, counts 0):
    from the tokenizer's pieces (``of_lut``: the challenge's rule, which needs the previous token), or from a byte
    sidecar (``of_sidecar``: CaseOps data, the original text's bytes). Every evaluation sums them over the targets
    it scores, so every tokenizer's val_bpb counts bytes the same way."""

    def __init__(self, per_position: Tensor):
        self.per_position = per_position

    @classmethod
    def of_lut(cls, lut: LutOnDevice, tokens: Tensor) -> TargetBytes:
        t = tokens.to(lut.base.device).long()
        out = torch.zeros(t.numel(), dtype=torch.int32, device=t.device)
        out[1:] = lut.bytes(t[:-1], t[1:])
        return cls(out)

    @classmethod
    def of_sidecar(cls, sidecar: np.ndarray, device: torch.device) -> TargetBytes:
        out = torch.from_numpy(sidecar.astype(np.int32)).to(device)
        out[0] = 0
        return cls(out)

    @property
    def device(self) -> torch.device:
        return self.per_position.device

    def span(self, lo: int, hi: int) -> Tensor:
        """float64 bytes of the targets at positions lo..hi-1."""
        return self.per_position[lo:hi].sum(dtype=torch.float64)

    def at(self, positions: Tensor) -> Tensor:
        return self.per_position[positions]


class Evaluator:
    """Scores a model (``model(x, y) -> mean NLL``) on the validation tokens: disjoint ``seq_len`` windows
    (pre-quantization, averaging candidates, round trip). ``sliding`` and ``ttt`` (instantiated
    ``golf.eval.sliding.SlidingEvaluator`` / ``golf.eval.ttt.TTTEvaluator``, or None) are the further scores
    the run computes on the model loaded back from the artifact."""

    def __init__(self, *, batch_tokens: int = 524_288, seq_len: int = 1024, sliding=None, ttt=None):
        if batch_tokens < seq_len:
            raise ValueError(f"eval.batch_tokens={batch_tokens} must be at least one sequence (seq_len={seq_len})")
        self.batch_tokens = batch_tokens
        self.seq_len = seq_len
        self.sliding, self.ttt = sliding, ttt

    @torch.inference_mode()
    def evaluate(self, model, val_tokens: Tensor, val_bytes: TargetBytes, *, rank: int = 0, world_size: int = 1,
                 autocast_dtype: torch.dtype | None = None, time_budget: float | None = None) -> EvalResult:
        """``time_budget`` (seconds): before each batch, stop if the slowest batch so far would pass it; the
        score is then that of the batches scored, and ``status`` says so."""
        t0 = time.perf_counter()
        device = val_bytes.device
        T = self.seq_len
        total_seqs = (val_tokens.numel() - 1) // T
        lo, hi = total_seqs * rank // world_size, total_seqs * (rank + 1) // world_size
        per_batch = max(min(self.batch_tokens // world_size, logit_cap(model)) // T, 1)
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # nll, tokens, bytes
        ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        was_training = model.training
        model.eval()
        status, slowest = "complete", 0.0
        most = math.ceil(total_seqs / world_size)
        n_batches = math.ceil(most / per_batch)  # the same count on every rank
        for i in range(n_batches):
            s = lo + i * per_batch
            elapsed = time.perf_counter() - t0
            if time_budget is not None and guard_stops(i > 0 and elapsed + slowest > time_budget, device, world_size):
                status = (f"stopped by the time guard after {i} batches of {per_batch} sequences ({elapsed:.0f}s spent, "
                          f"budget {time_budget:.0f}s): the score covers the batches scored")
                break
            if s >= hi:  # a rank with fewer sequences still takes part in the guard's collective
                continue
            tb = time.perf_counter()
            e = min(s + per_batch, hi)
            chunk = val_tokens[s * T : e * T + 1].to(device=device, dtype=torch.int64, non_blocking=True)
            x, y = chunk[:-1].view(-1, T), chunk[1:].view(-1, T)
            with ctx:
                loss = model(x, y).detach()
            sums[0] += loss.double() * y.numel()
            sums[1] += y.numel()
            sums[2] += val_bytes.span(s * T + 1, e * T + 1)
            if time_budget is not None:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                slowest = max(slowest, time.perf_counter() - tb)
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        model.train(was_training)
        nll, n_tok, n_bytes = (float(v) for v in sums.tolist())
        if n_tok == 0 or n_bytes == 0:
            raise ValueError(f"no validation tokens scored (rank {rank} of {world_size}, {total_seqs} sequences)")
        return EvalResult(val_loss=nll / n_tok, val_bpb=bits_per_byte(nll, n_bytes), tokens=int(n_tok), bytes=int(n_bytes),
                          seconds=time.perf_counter() - t0, status=status)
