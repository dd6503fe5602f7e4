"""The frontier's sampling loaders: windows of ``seq_len + 1`` tokens drawn from the shards instead of one stream.

``ShuffledLoader`` (#1394): rank r owns the shards ``sorted[r::world_size]``; each shard's windows start at a
random phase, every ``seq_len`` tokens after it, in a random order; each row picks a shard with probability in
proportion to its windows left and takes that shard's next window; when every window of the rank's shards is
used, all are dealt again. The record seeds its generator with the rank (``seed: null``), so every training seed
sees the same data; an integer ``seed`` is mixed with the rank.

``CoprimeLoader`` (#1060, from #726, used to #1334): one generator on every rank, seeded by a 64-bit FNV-1a hash of
the shard paths (``seed: null``, the records') or ``seed``. A shard's windows are visited as ``start + j * stride``
modulo their count, ``stride`` a random number coprime with it, from a random phase. Each optimizer step draws its
global list of windows: ``mix`` shards (from 8 to 64 as training goes, over 1800 steps) chosen without replacement
with weights (windows left)^(0.9 - 0.4 progress), a multinomial count per shard (at least one), shard buckets
shuffled and interleaved in random rounds. Micro-step k of rank r takes every (world_size x grad_accum)-th window
from position k * world_size + r: at 8 ranks with no accumulation that is the record's ``gw[rank::8]``, and any
world size sees the same windows per step.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from golf.data.loader import BatchLoader
from golf.data.shards import read_shard, shard_files

MIX_STEPS = 1800  # #1060's ramp of the shard mix and of the weights' exponent, in optimizer steps


def _phase(rng: np.random.Generator, n_tokens: int, seq_len: int) -> int:
    """A window offset in [0, seq_len): the records' rule (0 where a shard is barely one window long)."""
    top = min(seq_len - 1, max(0, n_tokens - seq_len - 1))
    return int(rng.integers(top + 1)) if top > 0 else 0


def _window(shard: np.ndarray, start: int, seq_len: int) -> np.ndarray:
    return np.asarray(shard[start : start + seq_len + 1], dtype=np.int32)


def fnv_seed(files: list[Path]) -> int:
    """#1060's seed: FNV-1a (offset basis 0) over the UTF-8 bytes of every shard path, in order."""
    seed = 0
    for f in files:
        for b in str(f).encode():
            seed = ((seed ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return seed


class ShuffledLoader(BatchLoader):
    def __init__(self, pattern: str, *, seed: int | None = None, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu"):
        super().__init__(rank=rank, world_size=world_size, device=device)
        files = shard_files(pattern)
        self.files = files[rank::world_size]
        if not self.files:
            raise ValueError(f"data: {len(files)} training shards for {world_size} ranks; the shuffled loader gives "
                             f"each rank its own shards (use loader=sequential or more shards)")
        self.shards = [read_shard(f, mmap=True) for f in self.files]
        self.rng = np.random.Generator(np.random.PCG64(rank if seed is None else [seed, rank]))
        self.seq_len: int | None = None
        self.starts: list[np.ndarray] = []   # per shard, its window starts in the order they are taken (from the end)
        self.left = np.zeros(0, dtype=np.int64)

    def _deal(self, seq_len: int) -> None:
        self.seq_len, self.starts = seq_len, []
        for shard in self.shards:
            phase = _phase(self.rng, shard.size, seq_len)
            n = max((shard.size - 1 - phase) // seq_len, 0)
            self.starts.append(phase + self.rng.permutation(n) * seq_len)
        self.left = np.array([s.size for s in self.starts], dtype=np.int64)
        if not self.left.sum():
            raise ValueError(f"the training shards {self.files[0]}... hold no window of {seq_len + 1} tokens")

    def _rows(self, n: int, seq_len: int) -> np.ndarray:
        if self.seq_len != seq_len:
            self._deal(seq_len)
        out = []
        for _ in range(n):
            total = self.left.sum()
            if total == 0:
                self._deal(seq_len)
                total = self.left.sum()
            si = int(self.rng.choice(len(self.left), p=self.left / total))
            self.left[si] -= 1
            out.append(_window(self.shards[si], int(self.starts[si][self.left[si]]), seq_len))
        return np.stack(out)

    def _draw(self, global_tokens: int, seq_len: int, grad_accum: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(self.local_rows(global_tokens, seq_len, grad_accum), seq_len)
        return rows[:, :-1], rows[:, 1:]

    def _sequences(self, n: int, seq_len: int) -> np.ndarray:
        return self._rows(n, seq_len)[:, :-1]

    def _state(self) -> dict:
        # The start arrays are never changed in place (a deal makes new ones), so they are kept by reference.
        return {"rng": self.rng.bit_generator.state, "left": self.left.copy(), "starts": list(self.starts),
                "seq_len": self.seq_len}

    def _restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.left, self.starts, self.seq_len = state["left"].copy(), list(state["starts"]), state["seq_len"]


class CoprimeLoader(BatchLoader):
    def __init__(self, pattern: str, *, seed: int | None = None, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu"):
        super().__init__(rank=rank, world_size=world_size, device=device)
        self.files = shard_files(pattern)
        self.shards = [read_shard(f, mmap=True) for f in self.files]
        self.rng = np.random.Generator(np.random.PCG64(fnv_seed(self.files) if seed is None else seed))
        n = len(self.files)
        self.phase, self.count, self.next, self.start, self.stride = (np.zeros(n, dtype=np.int64) for _ in range(5))
        self.ready = np.zeros(n, dtype=bool)
        self.steps = 0                           # global lists drawn (optimizer steps)
        self.step_windows: list[tuple[int, int]] = []
        self.micro = 0                           # micro-steps of this rank taken from the current list

    def _reset(self, si: int, seq_len: int) -> None:
        nt = self.shards[si].size
        self.phase[si] = _phase(self.rng, nt, seq_len)
        self.count[si] = bc = (nt - 1 - self.phase[si]) // seq_len
        self.start[si] = int(self.rng.integers(bc)) if bc > 1 else 0
        stride = 1
        if bc > 1:
            stride = int(self.rng.integers(1, bc))
            while math.gcd(stride, int(bc)) != 1:
                stride = int(self.rng.integers(1, bc))
        self.stride[si], self.next[si], self.ready[si] = stride, 0, True

    def _take(self, si: int, k: int, seq_len: int) -> list[tuple[int, int]]:
        out = []
        for _ in range(k):
            if not self.ready[si] or self.next[si] >= self.count[si]:
                self._reset(si, seq_len)
            block = (self.start[si] + self.next[si] * self.stride[si]) % self.count[si]
            out.append((si, int(self.phase[si] + block * seq_len)))
            self.next[si] += 1
        return out

    def _global_windows(self, total: int, virtual_ranks: int, seq_len: int) -> list[tuple[int, int]]:
        """One step's windows, the same on every rank (module docstring)."""
        base = np.array([(s.size - 1) // seq_len for s in self.shards], dtype=np.int64)
        eligible = np.nonzero(base > 0)[0]
        if eligible.size == 0:
            raise ValueError(f"no training shard of {self.files[0].parent} holds a window of {seq_len + 1} tokens")
        progress = min(self.steps / MIX_STEPS, 1.0)
        remaining = np.where(self.ready, np.maximum(self.count - self.next, 1), base)[eligible].astype(np.float64)
        weights = remaining ** (0.9 - 0.4 * progress)
        probs = weights / weights.sum() if np.isfinite(weights.sum()) and weights.sum() > 0 else None
        ec = eligible.size
        low, high = min(max(8, virtual_ranks), ec, total), min(max(32, 8 * virtual_ranks), ec, total)
        mix = max(1, min(int(round(low + progress * (high - low))), ec, total))
        chosen = self.rng.choice(ec, size=mix, replace=False, p=probs)
        p = (probs[chosen] / probs[chosen].sum()) if probs is not None else np.full(mix, 1.0 / mix)
        counts = 1 + self.rng.multinomial(total - mix, p)
        order = self.rng.permutation(mix)
        buckets = []
        for i in order:
            bucket = self._take(int(eligible[chosen[i]]), int(counts[i]), seq_len)
            if len(bucket) > 1:
                bucket = [bucket[j] for j in self.rng.permutation(len(bucket))]
            buckets.append(bucket)
        windows: list[tuple[int, int]] = []
        while buckets:
            for j in self.rng.permutation(len(buckets)):
                windows.append(buckets[j].pop())
            buckets = [b for b in buckets if b]
        return windows

    def _draw(self, global_tokens: int, seq_len: int, grad_accum: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.local_rows(global_tokens, seq_len, grad_accum)
        virtual = self.world_size * grad_accum
        if self.micro % grad_accum == 0:
            self.step_windows = self._global_windows(rows * virtual, virtual, seq_len)
            self.steps += 1
            self.micro = 0
        mine = self.step_windows[self.micro * self.world_size + self.rank :: virtual]
        self.micro += 1
        w = np.stack([_window(self.shards[si], pos, seq_len) for si, pos in mine])
        return w[:, :-1], w[:, 1:]

    def _sequences(self, n: int, seq_len: int) -> np.ndarray:
        windows = self._global_windows(n, self.world_size, seq_len)
        return np.stack([_window(self.shards[si], pos, seq_len)[:-1] for si, pos in windows])

    def _state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "steps": self.steps, "micro": self.micro,
                "step_windows": list(self.step_windows),
                "cursors": [a.copy() for a in (self.phase, self.count, self.next, self.start, self.stride, self.ready)]}

    def _restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.steps, self.micro, self.step_windows = state["steps"], state["micro"], list(state["step_windows"])
        self.phase, self.count, self.next, self.start, self.stride, self.ready = (a.copy() for a in state["cursors"])
