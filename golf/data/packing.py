"""The frontier's document-packing loader (#1530, kept to #1855): one flat row per rank and micro-step, whose
documents the model keeps apart (``model.doc_mask``).

The records read the shards in sorted order on every rank (no sampling, no RNG) and start each shard at its first
BOS, so no row begins with the tail of a document whose head is in another shard. Each micro-step takes one span
of W * (T_local + 1) tokens from the cursor, T_local = global_tokens / (W * grad_accum); rank r takes the r-th
(T_local + 1)-token part, its inputs and targets shifted by one, as a single row [1, T_local]. A shard's tail
shorter than a whole span is dropped, and after the last shard the first comes again.

Where the documents are is not computed here: the model finds the BOS tokens on the device (golf.models.documents),
so no step waits for the host to send ``cu_seqlens``, and the same rule holds in every eval. With 8 ranks this is
#1530's batch, token for token; at fewer ranks and gradient accumulation each micro-step is a rank of that step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from golf.data.loader import BatchLoader
from golf.data.shards import read_shard, shard_files


class PackedLoader(BatchLoader):
    flat = True  # rows are whole spans: the model must mask documents (checked where it is built)

    def __init__(self, pattern: str, *, bos_id: int = 1, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu"):
        super().__init__(rank=rank, world_size=world_size, device=device)
        self.files: list[Path] = shard_files(pattern)
        self.bos_id = int(bos_id)
        self.file_idx = 0
        self.tokens = self._open(0)
        self.pos = self._first_bos(self.tokens, self.files[0])

    def _open(self, i: int) -> np.ndarray:
        return read_shard(self.files[i], mmap=True)

    def _first_bos(self, tokens: np.ndarray, path: Path) -> int:
        hits = np.flatnonzero(tokens[: 1 << 20] == self.bos_id)
        if hits.size == 0:
            hits = np.flatnonzero(tokens == self.bos_id)
        if hits.size == 0:
            raise ValueError(f"{path} holds no BOS token (id {self.bos_id}): the packing loader starts each shard at "
                             f"a document; set loader.bos_id to the tokenizer's BOS or use loader=sequential")
        return int(hits[0])

    def _advance(self, span: int) -> None:
        """Move to the next shard that holds a whole span after its first BOS."""
        for _ in range(len(self.files)):
            self.file_idx = (self.file_idx + 1) % len(self.files)
            self.tokens = self._open(self.file_idx)
            self.pos = self._first_bos(self.tokens, self.files[self.file_idx])
            if self.pos + span <= self.tokens.size:
                return
        raise ValueError(f"no training shard under {self.files[0].parent} holds {span:,} tokens after its first BOS; "
                         f"lower train.batch_tokens or use loader=sequential")

    def _take(self, span: int) -> np.ndarray:
        if self.pos + span > self.tokens.size:
            self._advance(span)
        chunk = self.tokens[self.pos : self.pos + span]
        self.pos += span
        return chunk

    def _draw(self, global_tokens: int, seq_len: int, grad_accum: int) -> tuple[np.ndarray, np.ndarray]:
        local = self.local_rows(global_tokens, seq_len, grad_accum) * seq_len
        chunk = self._take((local + 1) * self.world_size)
        part = chunk[self.rank * (local + 1) : (self.rank + 1) * (local + 1)]
        return part[None, :-1], part[None, 1:]

    def _sequences(self, n: int, seq_len: int) -> np.ndarray:
        return np.asarray(self._take(n * seq_len)).reshape(n, seq_len)

    def _state(self) -> dict:
        return {"file_idx": self.file_idx, "pos": self.pos}

    def _restore(self, state: dict) -> None:
        if state["file_idx"] != self.file_idx:
            self.tokens = self._open(state["file_idx"])
        self.file_idx, self.pos = state["file_idx"], state["pos"]
