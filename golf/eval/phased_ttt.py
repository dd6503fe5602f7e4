"""Phased test-time training: per-document LoRA adapters and global SGD over the scored prefix (#1530, #1610,
#1626; #1855's settings in conf/eval/phased_ttt.yaml; frontier.md §12).

Documents are cut at BOS (each keeps the next document's BOS as its last target), sorted by length, grouped into
batches of ``batch_docs`` (one document a row, each row its own adapters: golf.models.lora) and run longest batch
first. A document is read in chunks of ``chunk`` targets; for each chunk the model, with the row's adapters, sees the
last ``window`` tokens up to the chunk's end, the chunk's targets are scored, and then, if the document goes on,
one AdamW step trains the adapters on that chunk's mean loss. A new batch zeroes B and keeps A (``warm_start_a``).

Phases: once ``prefix_docs * (k + 1) / phases`` documents have been scored, the base model's weights are trained by
SGD on that many of the scored documents' tokens (the scored batches taken in length order; chunks of
``global_chunk_tokens``, the LR cosine over them, the last chunk skipped; all as #1626), and scoring resumes with
fresh adapters on the adapted model.

Legal by construction: a target is scored before any update that saw it. An adapter step uses only the chunk just
scored; a phase uses only documents whose every target was scored. Ranks take batches round-robin in rounds of
``world_size``; phases start between rounds on every rank alike, on documents of the batches scored so far, so the
adapted weights depend on the same tokens on every rank.
The time guard: before each round (and each phase) the run stops if the slowest round (or the last phase) would pass
``time_budget``; the score is that of the documents scored, and the status says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from golf.dist import guard_stops, sync_and_step
from golf.eval.bpb import TargetBytes, bits_per_byte
from golf.models.lora import TARGETS, DocLoRA

Recorder = Callable[[int, int, Tensor, Tensor], None]  # (batch, chunk, target positions, their NLLs)


@dataclass
class PhasedTTTResult:
    val_loss: float
    val_bpb: float
    tokens: int
    bytes: int
    seconds: float
    docs: int
    docs_scored: int
    phases_done: int
    phase_seconds: list[float] = field(default_factory=list)
    status: str = "complete"

    def details(self) -> dict:
        return {"method": "phased LoRA", "docs": self.docs, "docs_scored": self.docs_scored,
                "phases_done": self.phases_done, "phase_seconds": [round(s, 2) for s in self.phase_seconds]}


def adapter_generator(seed: int, phase: int, rows: int) -> torch.Generator:
    """The draw of a phase's adapters for batches of ``rows`` (the same on every rank: a batch's result does not
    depend on which rank runs it)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + phase * 1009 + rows)


def find_docs(tokens: Tensor, bos_id: int) -> list[tuple[int, int]]:
    """(start, length) of each document: from its BOS through the next BOS (the last: to the end)."""
    bos = torch.nonzero(tokens == bos_id).squeeze(1).tolist()
    if not bos or bos[0] != 0:
        raise ValueError(f"eval.ttt (phased): the validation tokens must start with a document (BOS id {bos_id} at "
                         f"position 0{'' if bos else '; none found'}); set model.bos_id to the tokenizer's BOS")
    ends = [b + 1 for b in bos[1:]] + [tokens.numel()]
    return [(s, e - s) for s, e in zip(bos, ends) if e - s >= 2]


def batches_longest_first(docs: list[tuple[int, int]], size: int) -> list[tuple[int, list[int]]]:
    """Document indices by length in groups of ``size``, the group with the longest document first; each group
    with its index in length order (the order in which a phase takes the scored documents, as #1626 did)."""
    order = sorted(range(len(docs)), key=lambda i: docs[i][1])
    groups = list(enumerate(order[i : i + size] for i in range(0, len(order), size)))
    return sorted(groups, key=lambda g: -max(docs[i][1] for i in g[1]))


def phase_documents(scored: list[tuple[int, list[int]]], count: int) -> list[int]:
    """The first ``count`` of the scored batches' documents, the batches in length order."""
    return [i for _, group in sorted(scored) for i in group][:count]


def chunk_window(ci: int, targets: int, n_chunks: int, chunk: int, window: int) -> tuple[int, int, int, int]:
    """Chunk ``ci`` of a document with ``targets`` targets: (window start, window length, the chunk's offset in
    the window, the chunk's length), positions counted from the document's first token."""
    end = targets if ci == n_chunks - 1 else (ci + 1) * chunk
    start = max(0, end - window)
    return start, end - start, ci * chunk - start, end - ci * chunk


class PhasedTTTEvaluator:
    def __init__(self, *, chunk: int = 48, window: int = 2048, batch_docs: int = 64, rank: int = 80,
                 alpha: float = 144.0, targets: tuple[str, ...] | list[str] = TARGETS, lr: float = 1e-4,
                 betas: tuple[float, float] | list[float] = (0.0, 0.99), weight_decay: float = 0.5,
                 warm_start_a: bool = True, grad_steps: int = 1, prefix_docs: int = 2500, phases: int = 3,
                 global_lr: float = 0.001, global_momentum: float = 0.9, global_epochs: int = 1,
                 global_chunk_tokens: int = 32768, global_batch_seqs: int = 32, global_grad_clip: float = 1.0,
                 bos_id: int = 1, seed: int = 0, compile: bool | str = "auto"):
        if chunk < 1 or window < chunk or batch_docs < 1 or grad_steps < 0 or phases < 1 or prefix_docs < 0:
            raise ValueError(f"eval.ttt: need chunk >= 1, window >= chunk, batch_docs >= 1, phases >= 1, prefix_docs "
                             f">= 0; got chunk={chunk}, window={window}, batch_docs={batch_docs}, phases={phases}, "
                             f"prefix_docs={prefix_docs}")
        if global_chunk_tokens < window:
            raise ValueError(f"eval.ttt.global_chunk_tokens={global_chunk_tokens} must hold a window ({window})")
        self.chunk, self.window, self.batch_docs, self.grad_steps = chunk, window, batch_docs, grad_steps
        self.lora_kw = {"rank": rank, "alpha": alpha, "targets": tuple(targets)}
        self.adam_kw = {"lr": lr, "betas": tuple(betas), "eps": 1e-10, "weight_decay": weight_decay}
        self.warm_start_a, self.prefix_docs, self.phases = warm_start_a, prefix_docs, phases
        self.global_kw = {"lr": global_lr, "momentum": global_momentum, "epochs": global_epochs,
                          "chunk_tokens": global_chunk_tokens, "batch_seqs": global_batch_seqs,
                          "grad_clip": global_grad_clip}
        self.bos_id, self.seed, self.compile = bos_id, seed, compile
        DocLoRA(1, 1, 8, 8, 8, rank=rank, alpha=alpha, targets=self.lora_kw["targets"],
                generator=torch.Generator())  # checks the targets and rank now, not after training

    def boundaries(self, n_docs: int) -> list[int]:
        prefix = min(self.prefix_docs, n_docs)
        return [prefix * (k + 1) // self.phases for k in range(self.phases)] if prefix else []

    def evaluate(self, model, val_tokens: Tensor, val_bytes: TargetBytes, *, rank: int = 0, world_size: int = 1,
                 autocast_dtype: torch.dtype | None = None, time_budget: float | None = None,
                 recorder: Recorder | None = None) -> PhasedTTTResult:
        """Phased TTT of ``model`` (its weights change in the phases); per-target scores go to ``recorder``."""
        t0 = time.perf_counter()
        device = val_bytes.device
        docs = find_docs(val_tokens.cpu(), self.bos_id)
        tokens = val_tokens.to(device=device, dtype=torch.int64)
        was_training, grads = model.training, [p.requires_grad for p in model.parameters()]
        model.eval()
        for p in model.parameters():  # the adapters train; the weights only in a phase
            p.requires_grad_(False)
        try:
            return self._evaluate(model, tokens, val_bytes, docs, t0, rank, world_size, autocast_dtype, time_budget,
                                  recorder)
        finally:
            model.train(was_training)
            for p, g in zip(model.parameters(), grads):
                p.requires_grad_(g)

    def _evaluate(self, model, tokens, val_bytes, docs, t0, rank, world_size, autocast_dtype, time_budget,
                  recorder) -> PhasedTTTResult:
        device = val_bytes.device
        batches = batches_longest_first(docs, self.batch_docs)
        bounds = self.boundaries(len(docs))
        run = _Run(self, model, tokens, val_bytes, autocast_dtype, rank, world_size, recorder)
        scored = phase = 0
        slowest, status = 0.0, "complete"
        for r in range(0, len(batches), world_size):
            elapsed = time.perf_counter() - t0
            if guard_stops(time_budget is not None and r > 0 and elapsed + slowest > time_budget, device, world_size):
                status = (f"stopped by the time guard before batch {r} of {len(batches)} ({elapsed:.0f}s spent): the "
                          f"score covers the {scored} documents scored")
                break
            tr = time.perf_counter()
            if r + rank < len(batches):
                run.score_batch(r + rank, [docs[i] for i in batches[r + rank][1]])
            slowest = max(slowest, time.perf_counter() - tr)
            scored = sum(len(b) for _, b in batches[: r + world_size])
            if phase < len(bounds) and scored >= bounds[phase] and r + world_size < len(batches):
                elapsed = time.perf_counter() - t0
                last = run.phase_seconds[-1] if run.phase_seconds else 0.0
                if guard_stops(time_budget is not None and elapsed + last + slowest > time_budget, device, world_size):
                    bounds = bounds[:phase]  # no further phase fits; scoring goes on with the model as it is
                    continue
                run.global_phase([docs[i] for i in phase_documents(batches[: r + world_size], bounds[phase])])
                phase += 1
        sums = run.sums
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        nll, n_tok, n_bytes = (float(v) for v in sums.tolist())
        if n_tok == 0:
            raise ValueError("eval.ttt (phased): no target was scored (the time budget ran out before the first batch)")
        return PhasedTTTResult(val_loss=nll / n_tok, val_bpb=bits_per_byte(nll, n_bytes), tokens=int(n_tok),
                               bytes=int(n_bytes), seconds=time.perf_counter() - t0, docs=len(docs), docs_scored=scored,
                               phases_done=phase, phase_seconds=run.phase_seconds, status=status)


class _Run:
    """One evaluation's state: the adapters of the current phase, the sums, the compiled forward."""

    def __init__(self, ev: PhasedTTTEvaluator, model, tokens: Tensor, val_bytes: TargetBytes,
                 autocast_dtype: torch.dtype | None, rank: int, world_size: int, recorder: Recorder | None):
        self.ev, self.model, self.tokens, self.val_bytes = ev, model, tokens, val_bytes
        self.device = val_bytes.device
        self.rank, self.world_size, self.recorder = rank, world_size, recorder
        self.ctx = (torch.autocast(self.device.type, dtype=autocast_dtype) if autocast_dtype
                    else torch.autocast(self.device.type, enabled=False))
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # nll, targets, bytes
        self.phase_seconds: list[float] = []
        self.phase = 0
        self.reusable = self._new(ev.batch_docs)  # drawn when a phase starts, as the records do
        compiled = ev.compile is True or (ev.compile == "auto" and self.device.type == "cuda")
        forward = (lambda x, y, lora: model(x, y, reduction="none", lora=lora))  # noqa: E731
        self._forward = torch.compile(forward, dynamic=True) if compiled else forward

    def forward(self, x: Tensor, y: Tensor, lora: DocLoRA) -> Tensor:
        """Per-token NLL [rows, ctx]. A row holds one document (its BOS first, padding after its window), so
        causal attention is document attention: a document-masked model runs its dense kernel here (exact), as
        the records' TTT forward does."""
        masked = getattr(self.model, "doc_mask", False)
        self.model.doc_mask = False
        try:
            return self._forward(x, y, lora)
        finally:
            self.model.doc_mask = masked

    def _new(self, rows: int) -> DocLoRA:
        gen = adapter_generator(self.ev.seed, self.phase, rows)
        return DocLoRA.for_model(self.model, rows, generator=gen, **self.ev.lora_kw).to(self.device)

    def adapters(self, rows: int) -> DocLoRA:
        """The adapters for a batch of ``rows`` documents: a full batch reuses the phase's set (B zeroed, A kept
        when warm-started, else drawn again), a short one gets a fresh set."""
        if rows != self.ev.batch_docs:
            return self._new(rows)
        self.reusable.reset(None if self.ev.warm_start_a else adapter_generator(self.ev.seed, self.phase, -1))
        return self.reusable

    def score_batch(self, index: int, docs: list[tuple[int, int]]) -> None:
        ev = self.ev
        lora = self.adapters(len(docs))
        opt = torch.optim.AdamW(lora.parameters(), **ev.adam_kw, fused=self.device.type == "cuda")
        targets = [n - 1 for _, n in docs]
        n_chunks = [(t + ev.chunk - 1) // ev.chunk for t in targets]
        trains = torch.tensor([float(n) for n in n_chunks], device=self.device)
        for ci in range(max(n_chunks)):
            x, y, pos, mask = self._rows(docs, targets, n_chunks, ci)
            with self.ctx:
                nll = self.forward(x, y, lora)
            with torch.no_grad():
                m = mask.to(torch.float64)
                self.sums[0] += (nll.double() * m).sum()
                self.sums[1] += m.sum()
                self.sums[2] += (self.val_bytes.at(pos.clamp(min=0)).double() * m).sum()
            if self.recorder is not None:
                self.recorder(index, ci, pos[mask].cpu(), nll.detach()[mask].float().cpu())
            if not any(ci < n - 1 for n in n_chunks):
                continue
            _, ctx_len, off, _ = chunk_window(ci, (ci + 1) * ev.chunk, ci + 1, ev.chunk, ev.window)
            goes_on = (trains - 1 > ci).float()
            for g in range(ev.grad_steps):
                if g:
                    with self.ctx:
                        nll = self.forward(x, y, lora)
                per_doc = nll[:, off : off + ev.chunk].float().mean(dim=-1)
                opt.zero_grad(set_to_none=True)
                (per_doc * goes_on).sum().backward()
                opt.step()

    def _rows(self, docs, targets, n_chunks, ci) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Inputs and targets [rows, ctx] of chunk ``ci`` of each document (zeros past a row's window), each
        target's position in the stream (-1: none) and the mask of the targets scored now."""
        ev = self.ev
        _, ctx_len, _, _ = chunk_window(ci, (ci + 1) * ev.chunk, ci + 1, ev.chunk, ev.window)
        rows = len(docs)
        start = torch.zeros(rows, dtype=torch.int64)
        length, off, clen = (torch.zeros(rows, dtype=torch.int64) for _ in range(3))
        for b, (d0, _) in enumerate(docs):
            if ci < n_chunks[b]:
                ws, wl, o, cl = chunk_window(ci, targets[b], n_chunks[b], ev.chunk, ev.window)
                start[b], length[b], off[b], clen[b] = d0 + ws, wl, o, cl
        col = torch.arange(ctx_len)
        valid = col[None, :] < length[:, None]
        idx = (start[:, None] + col[None, :]).clamp(max=self.tokens.numel() - 2)
        idx, valid = idx.to(self.device), valid.to(self.device)
        x = torch.where(valid, self.tokens[idx], 0)
        y = torch.where(valid, self.tokens[idx + 1], 0)
        col_d = col.to(self.device)[None, :]
        mask = (col_d >= off.to(self.device)[:, None]) & (col_d < (off + clen).to(self.device)[:, None]) & valid
        pos = torch.where(mask, idx + 1, -1)
        return x, y, pos, mask

    def global_phase(self, prefix: list[tuple[int, int]]) -> None:
        """SGD on every weight of the model over the scored documents' tokens (in batch order)."""
        t0 = time.perf_counter()
        if prefix:  # a first boundary of 0 documents (prefix_docs < phases) trains on nothing, as #1626's does
            stream = torch.cat([self.tokens[s : s + n] for s, n in prefix])
            global_sgd(self.model, stream, self.ev.window, self.ctx, self.rank, self.world_size, **self.ev.global_kw)
        self.phase += 1
        self.reusable = self._new(self.ev.batch_docs)  # fresh adapters on the adapted model
        self.phase_seconds.append(time.perf_counter() - t0)


def global_sgd(model, stream: Tensor, seq_len: int, ctx, rank: int, world_size: int, *, lr: float, momentum: float,
               epochs: int, chunk_tokens: int, batch_seqs: int, grad_clip: float) -> None:
    """#1626's global phase: chunks of ``chunk_tokens`` (the last skipped), each cut into ``seq_len`` sequences
    split over ranks, ``batch_seqs`` a step; SGD with momentum, the LR cosine over chunks, gradients averaged over
    ranks and clipped. A model with document masking reads each batch as one packed row."""
    params = list(model.parameters())
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    total = stream.numel() - 1
    n_chunks = (total + chunk_tokens - 1) // chunk_tokens
    packed = bool(getattr(model, "doc_mask", False))
    with torch.enable_grad():
        for ci in range(n_chunks - 1):
            lo, hi = ci * chunk_tokens, min((ci + 1) * chunk_tokens, total)
            seqs = (hi - lo) // seq_len
            share = -(-seqs // world_size)  # every rank takes as many steps (collectives pair up)
            mine = range(min(rank * share, seqs), min((rank + 1) * share, seqs))
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(n_chunks - 1, 1)))
            for _ in range(epochs):
                for step in range(0, share, batch_seqs):
                    n_all = sum(max(0, min(r * share + step + batch_seqs, (r + 1) * share, seqs) - (r * share + step))
                                for r in range(world_size))
                    b, e = mine.start + step, min(mine.start + step + batch_seqs, mine.stop)
                    opt.zero_grad(set_to_none=True)
                    if e > b:
                        part = stream[lo + b * seq_len : lo + e * seq_len + 1]
                        x, y = part[:-1], part[1:]
                        x, y = (x[None], y[None]) if packed else (x.view(-1, seq_len), y.view(-1, seq_len))
                        with ctx:
                            loss = model(x, y)
                        (loss * ((e - b) / n_all)).backward()  # the mean over every rank's tokens
                    sync_and_step(opt, params, grad_clip, world_size)
    for p, w in zip(params, was):
        p.requires_grad_(w)

