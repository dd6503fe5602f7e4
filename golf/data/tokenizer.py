"""SentencePiece tokenizers: the challenge's training spec, document encoding, and the byte-count
tables behind val_bpb (techniques.md §1.3).

Bytes of target y given the previous token x:
    base_bytes[y] + (has_leading_space[y] and not is_boundary[x])
Control/unknown/unused pieces are boundaries and count 0 bytes; byte-fallback pieces count 1 byte;
any other piece counts the UTF-8 length of its text without a leading "▁" (which counts 1 byte
unless it follows a boundary such as BOS).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOS_ID = 1

# The challenge's tokenizer spec (openai/parameter-golf data/download_hf_docs_and_tokenize.py).
CHALLENGE_SPM_SPEC: dict[str, object] = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "unk_id": 3,
    "hard_vocab_limit": False,
}


def load_sentencepiece(path: str | os.PathLike):
    """Load a SentencePiece model, naming the path (and how to get one) when it is missing."""
    import sentencepiece as spm

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"tokenizer not found: {path}. Make one with `python scripts/prepare_data.py --train-tokenizer ...` "
            f"or fetch the official one with `python scripts/download_data.py --variant sp1024`."
        )
    if path.suffix != ".model":
        raise ValueError(f"{path}: expected a SentencePiece .model file")
    return spm.SentencePieceProcessor(model_file=str(path))


def train_sentencepiece(
    texts: Iterable[str], model_prefix: str | os.PathLike, vocab_size: int, num_threads: int | None = None, **overrides
) -> Path:
    """Train a BPE tokenizer with the challenge's spec on ``texts``; returns the .model path."""
    import sentencepiece as spm

    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    kwargs = dict(CHALLENGE_SPM_SPEC)
    kwargs.update(
        sentence_iterator=iter(texts),
        model_prefix=str(prefix),
        vocab_size=int(vocab_size),
        num_threads=num_threads or os.cpu_count() or 1,
        minloglevel=2,
    )
    kwargs.update(overrides)
    spm.SentencePieceTrainer.train(**kwargs)
    return prefix.with_suffix(".model")


def encode_documents(sp, docs: Iterable[str], batch_size: int = 256) -> Iterator[np.ndarray]:
    """Yield, per batch of documents, the concatenation of ``[BOS] + encode(doc)`` (no EOS) as uint16."""
    batch: list[str] = []

    def flush() -> np.ndarray:
        pieces = sp.encode(batch, out_type=int)
        out = np.empty(sum(len(p) + 1 for p in pieces), dtype=np.uint16)
        pos = 0
        for ids in pieces:
            out[pos] = BOS_ID
            out[pos + 1 : pos + 1 + len(ids)] = ids
            pos += len(ids) + 1
        batch.clear()
        return out

    for doc in docs:
        batch.append(doc)
        if len(batch) >= batch_size:
            yield flush()
    if batch:
        yield flush()


@dataclass(frozen=True)
class ByteLUT:
    """Per-token-id tables for counting the bytes of targets (see module docstring)."""

    base_bytes: np.ndarray  # int16 [V]
    has_leading_space: np.ndarray  # bool [V]
    is_boundary: np.ndarray  # bool [V]

    @property
    def size(self) -> int:
        return int(self.base_bytes.shape[0])

    def count_bytes(self, prev_ids: np.ndarray, target_ids: np.ndarray) -> int:
        """Total bytes of ``target_ids`` given the preceding ``prev_ids`` (same shape)."""
        prev_ids = np.asarray(prev_ids, dtype=np.int64)
        target_ids = np.asarray(target_ids, dtype=np.int64)
        b = self.base_bytes[target_ids].astype(np.int64)
        b += self.has_leading_space[target_ids] & ~self.is_boundary[prev_ids]
        return int(b.sum())


def byte_lut(sp, vocab_size: int | None = None) -> ByteLUT:
    """Build the byte-count tables of a SentencePiece model (sized max(sp vocab, ``vocab_size``))."""
    n = int(sp.vocab_size())
    size = max(n, int(vocab_size or 0))
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteLUT(base, space, boundary)
