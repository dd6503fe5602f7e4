"""Training loaders: the protocol they share (``BatchLoader``), and the records' sequential loader
(techniques.md §1.2). The sampling loaders of #1060 and #1394 are in ``golf.data.sampling``.

Shards are read in sorted order and wrap around forever. Each micro-step takes one contiguous chunk
of W * (T_local + 1) tokens from the stream, T_local = global_tokens / (W * grad_accum); rank r
takes span r, and x / y are that span shifted by one token. Any world size therefore sees the same
tokens per optimizer step. The cursor (shard index, position) is the loader's whole state.

``prefetch`` takes the next micro-batch early and queues its host-to-device copy, so the host's share of
loading runs while the GPU is busy with the current micro-step instead of while it waits for the next one.
A prefetched batch is not yet consumed: ``state_dict`` names the cursor before it, and any other read
rewinds to there first, so prefetching never changes which tokens a step, a resume or calibration sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from golf.data.shards import read_header, read_shard, shard_files


class TokenStream:
    def __init__(self, files: list[Path]):
        if not files:
            raise ValueError("TokenStream needs at least one shard")
        self.files = files
        if not any(read_header(f) for f in files):
            raise ValueError(f"all {len(files)} training shards are empty (first: {files[0]})")
        self.file_idx, self.pos = 0, 0
        self.tokens = read_shard(files[0])

    def state_dict(self) -> dict:
        return {"file_idx": self.file_idx, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        if state["file_idx"] != self.file_idx:
            self.tokens = read_shard(self.files[state["file_idx"]])
        self.file_idx, self.pos = state["file_idx"], state["pos"]

    def take(self, n: int) -> np.ndarray:
        chunks, remaining = [], n
        while remaining > 0:
            avail = self.tokens.size - self.pos
            if avail <= 0:
                self.file_idx = (self.file_idx + 1) % len(self.files)
                self.tokens, self.pos = read_shard(self.files[self.file_idx]), 0
                continue
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            remaining -= k
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


class BatchLoader:
    """What every training loader shares: micro-batches as (x, y) on the device, ``prefetch`` of the next one
    while the GPU works, and a state that a prefetched, unconsumed batch never advances. A loader defines
    ``_draw(global_tokens, seq_len, grad_accum) -> (x, y)`` (this rank's int arrays, [rows, seq_len]),
    ``_sequences(n, seq_len) -> [n, seq_len]`` (calibration's), ``_state()`` and ``_restore(state)``."""

    def __init__(self, *, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self._pin = self.device.type == "cuda"
        self._ahead: tuple[tuple[int, int, int], tuple[Tensor, Tensor], dict] | None = None

    def state_dict(self) -> dict:
        return dict(self._ahead[2]) if self._ahead is not None else self._state()

    def load_state_dict(self, state: dict) -> None:
        self._ahead = None
        self._restore(state)

    def _rewind(self) -> None:
        """Give a prefetched, unconsumed batch back."""
        if self._ahead is not None:
            self.load_state_dict(self._ahead[2])

    def next_sequences(self, n: int, seq_len: int, keep: bool = True) -> Tensor | None:
        """The next ``n`` sequences of ``seq_len`` tokens for calibration: every rank draws them alike and keeps
        its own batches (``keep``), so the union over ranks does not depend on the world size."""
        self._rewind()
        rows = self._sequences(n, seq_len)
        return torch.from_numpy(rows.astype(np.int64)).to(self.device) if keep else None

    def prefetch(self, global_tokens: int, seq_len: int, grad_accum: int) -> None:
        """Take the micro-batch that ``next_batch`` with these arguments would return next, and queue its copy."""
        key = (global_tokens, seq_len, grad_accum)
        if self._ahead is None or self._ahead[0] != key:
            self._rewind()
            state = self._state()
            self._ahead = key, self._load(*key), state

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum: int) -> tuple[Tensor, Tensor]:
        key = (global_tokens, seq_len, grad_accum)
        if self._ahead is not None and self._ahead[0] == key:
            batch, self._ahead = self._ahead[1], None
            return batch
        self._rewind()
        return self._load(*key)

    def local_rows(self, global_tokens: int, seq_len: int, grad_accum: int) -> int:
        local = global_tokens // (self.world_size * grad_accum)
        if local % seq_len:
            raise ValueError(
                f"train.batch_tokens={global_tokens} / (world_size={self.world_size} * grad_accum={grad_accum}) "
                f"= {local} is not a multiple of train.seq_len={seq_len}"
            )
        return local // seq_len

    def _load(self, global_tokens: int, seq_len: int, grad_accum: int) -> tuple[Tensor, Tensor]:
        x, y = self._draw(global_tokens, seq_len, grad_accum)
        out = []
        for part in (x, y):
            t = torch.from_numpy(np.ascontiguousarray(part, dtype=np.int32))
            out.append((t.pin_memory() if self._pin else t).to(self.device, non_blocking=True).long())
        return out[0], out[1]


class SequentialLoader(BatchLoader):
    """The records' loader until #1060: one stream in shard order, each micro-step one contiguous span per rank."""

    def __init__(self, pattern: str, *, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        super().__init__(rank=rank, world_size=world_size, device=device)
        self.stream = TokenStream(shard_files(pattern))

    def _state(self) -> dict:
        return self.stream.state_dict()

    def _restore(self, state: dict) -> None:
        self.stream.load_state_dict(state)

    def _sequences(self, n: int, seq_len: int) -> np.ndarray:
        return self.stream.take(n * seq_len).reshape(n, seq_len)

    def _draw(self, global_tokens: int, seq_len: int, grad_accum: int) -> tuple[np.ndarray, np.ndarray]:
        span = self.local_rows(global_tokens, seq_len, grad_accum) * seq_len + 1
        chunk = self.stream.take(span * self.world_size)
        part = chunk[self.rank * span : (self.rank + 1) * span]
        return part[:-1].reshape(-1, seq_len), part[1:].reshape(-1, seq_len)
