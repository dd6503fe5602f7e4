"""Where a run's tokens and tokenizer come from (the ``data`` config group).

``prepare()`` returns concrete paths, building or validating as needed, and fails with a message that
names the missing path and the command that makes it.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataPaths:
    train_pattern: str
    val_pattern: str
    tokenizer: Path
    vocab_size: int
    byte_sidecar: bool = False  # val bytes from the sidecars beside the val shards (CaseOps), not the tokenizer


class ShardData:
    """A directory of challenge shards plus a SentencePiece model."""

    def __init__(self, *, path: str, tokenizer: str, vocab_size: int = 1024,
                 train_pattern: str = "fineweb_train_*.bin", val_pattern: str = "fineweb_val_*.bin",
                 byte_sidecar: bool = False, make_hint: str | None = None):
        self.path = Path(path).expanduser()
        self.tokenizer = Path(tokenizer).expanduser()
        self.vocab_size = vocab_size
        self.train_pattern, self.val_pattern = train_pattern, val_pattern
        self.byte_sidecar = byte_sidecar
        self.make_hint = make_hint or (
            "python scripts/download_data.py --variant sp1024 --train-shards 10   # the challenge's FineWeb export, or\n"
            "  python scripts/prepare_data.py --train corpus.jsonl --val val.jsonl --tokenizer MODEL --output DIR"
        )

    def prepare(self) -> DataPaths:
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"data directory not found: {self.path.resolve()} (data.path={self.path}). Make it with:\n  {self.make_hint}\n"
                f"or point data.path at an existing directory of shards."
            )
        for kind, pat in (("train", self.train_pattern), ("validation", self.val_pattern)):
            if not glob.glob(str(self.path / pat)):
                raise FileNotFoundError(
                    f"no {kind} shards match {self.path / pat} (data.path / data.{kind[:5] if kind == 'train' else 'val'}_pattern). "
                    f"Make them with:\n  {self.make_hint}"
                )
        if not self.tokenizer.is_file():
            raise FileNotFoundError(
                f"tokenizer not found: {self.tokenizer.resolve()} (data.tokenizer={self.tokenizer}). "
                f"Make or fetch it with:\n  {self.make_hint}"
            )
        return DataPaths(str(self.path / self.train_pattern), str(self.path / self.val_pattern), self.tokenizer,
                         self.vocab_size, self.byte_sidecar)


class SmokeData:
    """The embedded corpus: Python's own documentation, tokenized with a small BPE trained on it,
    built once and cached (``golf.data.smoke``)."""

    def __init__(self, *, vocab_size: int = 512, cache_dir: str | None = None):
        self.vocab_size = vocab_size
        self.cache_dir = cache_dir

    def prepare(self) -> DataPaths:
        from golf.data.smoke import build_smoke_dataset

        root = Path(build_smoke_dataset(self.cache_dir, vocab_size=self.vocab_size))
        return DataPaths(str(root / "fineweb_train_*.bin"), str(root / "fineweb_val_*.bin"), root / "tokenizer.model", self.vocab_size)
