#!/usr/bin/env python
"""Turn JSONL or plain-text corpora into challenge token shards (``fineweb_{val,train}_NNNNNN.bin``).

The challenge's own data is a fixed export of FineWeb; this script makes datasets of the same
format from any other text (or from the challenge's ``docs_selected.jsonl``), so golf can train and
evaluate on them unchanged. Per split, the token stream is ``[BOS] + encode(doc)`` for each
document in input order (no EOS), cut into shards of ``--shard-tokens`` tokens, exactly as the
challenge's exporter does. Encoding runs in worker processes; the output does not depend on their
number.

Examples:
    python scripts/prepare_data.py --val val.jsonl.xz --train train_*.jsonl.xz \\
        --tokenizer fineweb_1024_bpe.model --output data/enwiki_sp1024
    python scripts/prepare_data.py --input docs_selected.jsonl --val-docs 50000 \\
        --train-tokenizer --vocab-size 1024 --tokenizer-docs 500000 --output data/my_sp1024
    python scripts/prepare_data.py --val val.jsonl.xz --train train_*.jsonl.xz --caseops \\
        --tokenizer fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model --output data/enwiki_sp8192_caseops
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import lzma
import multiprocessing
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

try:
    import golf  # noqa: F401
except ImportError:  # run as `python scripts/prepare_data.py` from a checkout without installing golf
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golf.data.caseops import OPERATORS as caseops_operators
from golf.data.caseops import check_caseops_tokenizer as caseops_check
from golf.data.caseops import encode as caseops_encode
from golf.data.caseops import token_bytes as caseops_token_bytes
from golf.data.shards import MAX_TOKEN_ID, SIDECAR_KIND, sidecar_path, write_shard
from golf.data.tokenizer import BOS_ID, encode_documents, load_sentencepiece, train_sentencepiece

DEFAULT_SHARD_TOKENS = 100_000_000
DEFAULT_BATCH_DOCS = 64
TOKENIZER_FILE = "tokenizer.model"
META_FILE = "prepare_meta.json"
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_SUFFIXES = (".txt", ".text")
SPLITS = ("val", "train")
SPM_MAX_SENTENCE_LENGTH = 4192  # SentencePiece's default, which the challenge's tokenizers were trained with


class CorpusError(ValueError):
    """An input file is missing, of an unknown kind, or malformed (the message names it)."""


# ---------------------------------------------------------------------------------------------
# Reading documents


def open_text(path: str | os.PathLike) -> TextIO:
    """Open ``path`` for reading UTF-8 text, decompressing ``.gz`` / ``.xz`` by suffix."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: input file does not exist")
    suffix = path.suffix.lower()
    # newline="" keeps the documents' characters exactly as stored (no \r\n translation).
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    if suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def corpus_kind(path: str | os.PathLike) -> str:
    """``"jsonl"`` or ``"txt"``, from the suffix under any ``.gz`` / ``.xz``."""
    path = Path(path)
    name = path.name.lower()
    for compressed in (".gz", ".xz"):
        name = name.removesuffix(compressed)
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(TEXT_SUFFIXES):
        return "txt"
    raise CorpusError(
        f"{path}: unknown input kind; expected one of {', '.join(JSONL_SUFFIXES + TEXT_SUFFIXES)} "
        f"(optionally followed by .gz or .xz)"
    )


def iter_documents(path: str | os.PathLike, text_key: str = "text", split_blank_lines: bool = False) -> Iterator[str]:
    """Yield the documents of one input file in order.

    JSONL: one JSON object per line, the text under ``text_key``; blank lines are ignored.
    Plain text: the whole file is one document, or, with ``split_blank_lines``, each block of
    lines between blank lines is one."""
    kind = corpus_kind(path)
    with open_text(path) as f:
        if kind == "jsonl":
            yield from _jsonl_documents(f, Path(path), text_key)
        elif split_blank_lines:
            yield from _paragraphs(f)
        else:
            yield f.read()


def _jsonl_documents(f: TextIO, path: Path, text_key: str) -> Iterator[str]:
    for lineno, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict) or text_key not in record:
            raise CorpusError(f"{path}:{lineno}: expected a JSON object with a {text_key!r} key")
        text = record[text_key]
        if not isinstance(text, str):
            raise CorpusError(f"{path}:{lineno}: {text_key!r} is a {type(text).__name__}, expected a string")
        yield text


def _paragraphs(f: TextIO) -> Iterator[str]:
    block: list[str] = []
    for line in f:
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block).rstrip("\r\n")
            block = []
    if block:
        yield "".join(block).rstrip("\r\n")


def iter_corpus(
    paths: Iterable[str | os.PathLike], text_key: str = "text", split_blank_lines: bool = False
) -> Iterator[str]:
    """The documents of several files, one file after the other."""
    for path in paths:
        yield from iter_documents(path, text_key, split_blank_lines)


def check_inputs(paths: Iterable[str | os.PathLike]) -> None:
    """Fail early, naming the path, if an input is missing or of an unknown kind."""
    for path in paths:
        if not Path(path).is_file():
            raise CorpusError(f"{path}: input file does not exist")
        corpus_kind(path)


# ---------------------------------------------------------------------------------------------
# Encoding

_worker_sp = None
_worker_caseops = False


def _init_worker(model_path: str, caseops: bool = False) -> None:
    import sentencepiece as spm

    global _worker_sp, _worker_caseops
    # One thread per process: the parallelism comes from the pool.
    _worker_sp = spm.SentencePieceProcessor(model_file=model_path, num_threads=1)
    _worker_caseops = caseops


def _encode_batch(job: tuple[str, list[str]]) -> tuple[str, int, np.ndarray, np.ndarray | None]:
    """(split, documents, [BOS] + tokens per document, and with CaseOps on the val split the byte sidecar: 0 for
    BOS, then each token's bytes of the original text)."""
    split, docs = job
    if not _worker_caseops:
        return split, len(docs), np.concatenate(list(encode_documents(_worker_sp, docs, batch_size=len(docs)))), None
    texts = [caseops_encode(doc) for doc in docs]
    if split != "val":
        return split, len(docs), np.concatenate(list(encode_documents(_worker_sp, texts, batch_size=len(texts)))), None
    tokens, sidecar = [], []
    for doc, text in zip(docs, texts):
        pieces = _worker_sp.encode(text, out_type="proto").pieces
        ids = [p.id for p in pieces]
        if _worker_sp.unk_id() in ids:
            raise CorpusError(f"a val document ({doc[:50]!r}...) holds characters the tokenizer cannot encode (unknown "
                              f"pieces): their bytes could not be counted; use a tokenizer with byte fallback")
        tokens += [BOS_ID, *ids]
        sidecar += [0, *caseops_token_bytes(text, [(p.begin, p.end) for p in pieces])]
    return split, len(docs), np.array(tokens, dtype=np.uint16), np.array(sidecar, dtype=np.int64)


def batch_documents(tagged: Iterable[tuple[str, str]], batch_docs: int) -> Iterator[tuple[str, list[str]]]:
    """Group consecutive ``(split, doc)`` pairs into ``(split, docs)`` batches of at most
    ``batch_docs``; a batch never mixes splits."""
    for split, group in itertools.groupby(tagged, key=lambda pair: pair[0]):
        docs = (doc for _, doc in group)
        while batch := list(itertools.islice(docs, batch_docs)):
            yield split, batch


def _bounded(items: Iterable, slots: threading.Semaphore, stop: threading.Event) -> Iterator:
    # Pool.imap drains its input eagerly (in its task thread); this keeps only a few batches in
    # flight. ``stop`` lets the consumer unblock and end it, so the pool can shut down.
    for item in items:
        slots.acquire()
        if stop.is_set():
            return
        yield item


def encode_batches(
    batches: Iterable[tuple[str, list[str]]], model_path: str | os.PathLike, workers: int = 1, caseops: bool = False
) -> Iterator[tuple[str, int, np.ndarray, np.ndarray | None]]:
    """Yield ``(split, n_docs, tokens, sidecar)`` per batch, in input order, encoding with ``workers``
    processes (in this process when ``workers <= 1``)."""
    if workers <= 1:
        _init_worker(str(model_path), caseops)
        yield from map(_encode_batch, batches)
        return
    slots, stop = threading.Semaphore(4 * workers), threading.Event()
    with multiprocessing.Pool(workers, initializer=_init_worker, initargs=(str(model_path), caseops)) as pool:
        try:
            for result in pool.imap(_encode_batch, _bounded(batches, slots, stop)):
                slots.release()
                yield result
        finally:
            stop.set()
            slots.release()


# ---------------------------------------------------------------------------------------------
# Writing shards


@dataclass
class SplitStats:
    """What was written for one split."""

    documents: int = 0
    tokens: int = 0
    shards: list[str] = field(default_factory=list)
    original_bytes: int = 0   # with CaseOps, the val split's sidecar total: the documents' UTF-8 bytes


class ShardWriter:
    """Accumulates one split's token stream (and its byte sidecar, if given) and writes it as shards of
    ``shard_tokens`` tokens, each sidecar shard beside its token shard."""

    def __init__(self, directory: Path, split: str, shard_tokens: int) -> None:
        if shard_tokens <= 0:
            raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
        self.directory, self.split, self.shard_tokens = directory, split, shard_tokens
        self.stats = SplitStats()
        self._pending: list[np.ndarray] = []
        self._side: list[np.ndarray] = []
        self._pending_tokens = 0

    def add(self, tokens: np.ndarray, documents: int, sidecar: np.ndarray | None = None) -> None:
        self.stats.documents += documents
        self.stats.tokens += int(tokens.size)
        self._pending.append(tokens)
        if sidecar is not None:
            self._side.append(sidecar)
            self.stats.original_bytes += int(sidecar.sum())
        self._pending_tokens += int(tokens.size)
        if self._pending_tokens >= self.shard_tokens:
            stream = np.concatenate(self._pending)
            side = np.concatenate(self._side) if self._side else None
            full = len(stream) // self.shard_tokens * self.shard_tokens
            for start in range(0, full, self.shard_tokens):
                cut = slice(start, start + self.shard_tokens)
                self._write(stream[cut], None if side is None else side[cut])
            self._pending, self._pending_tokens = [stream[full:]], int(stream.size - full)
            self._side = [side[full:]] if side is not None else []

    def close(self) -> SplitStats:
        if self._pending_tokens:
            self._write(np.concatenate(self._pending), np.concatenate(self._side) if self._side else None)
        self._pending, self._side, self._pending_tokens = [], [], 0
        return self.stats

    def _write(self, tokens: np.ndarray, sidecar: np.ndarray | None) -> None:
        path = self.directory / f"fineweb_{self.split}_{len(self.stats.shards):06d}.bin"
        write_shard(path, tokens)
        if sidecar is not None:
            if int(sidecar.max(initial=0)) > MAX_TOKEN_ID:
                raise CorpusError(f"{sidecar_path(path)}: a token stands for more than {MAX_TOKEN_ID} bytes")
            write_shard(sidecar_path(path), sidecar, kind=SIDECAR_KIND)
        self.stats.shards.append(path.name)


def existing_shards(output: Path, splits: Iterable[str]) -> list[Path]:
    return sorted(p for split in splits for p in output.glob(f"fineweb_{split}_*.bin"))


# ---------------------------------------------------------------------------------------------
# The pipeline


def _tokenizer_training_text(docs: Iterable[str]) -> Iterator[str]:
    # As the challenge's exporter: NULs become spaces, surrounding whitespace goes, empty docs are skipped.
    for doc in docs:
        text = doc.replace("\x00", " ").strip()
        if text:
            yield text


def resolve_tokenizer(
    output: Path,
    tokenizer: str | os.PathLike | None,
    train_docs: Iterable[str] | None,
    vocab_size: int | None,
    threads: int,
    max_sentence_length: int | None = None,
    reserved: Sequence[str] = (),
) -> Path:
    """Put the tokenizer at ``output/tokenizer.model``: a copy of ``tokenizer``, or a new one
    trained with the challenge spec on ``train_docs`` (SentencePiece skips documents longer than
    ``max_sentence_length`` bytes, by default 4192 as in the challenge), with ``reserved`` symbols as
    single pieces right after the control ids (CaseOps' operators). Returns its path."""
    target = output / TOKENIZER_FILE
    if tokenizer is not None:
        source = Path(tokenizer)
        load_sentencepiece(source)  # validates, naming the path when missing
        if not (target.exists() and target.samefile(source)):
            shutil.copyfile(source, target.with_name(target.name + ".tmp"))
            os.replace(target.with_name(target.name + ".tmp"), target)
        return target
    if train_docs is None or not vocab_size:
        raise ValueError("either a tokenizer or training documents and a vocab size are needed")
    # Read the documents here rather than inside the trainer, so that input errors surface as
    # themselves (SentencePiece would wrap them in a RuntimeError); it holds them all anyway.
    texts = list(_tokenizer_training_text(train_docs))
    if not texts:
        raise ValueError("no non-empty training documents to train the tokenizer on")
    limit = max_sentence_length or SPM_MAX_SENTENCE_LENGTH
    too_long = sum(len(t.encode("utf-8")) > limit for t in texts)
    if too_long:
        print(
            f"prepare_data: note: SentencePiece skips the {too_long:,} of {len(texts):,} tokenizer training documents "
            f"longer than {limit} bytes (raise --max-sentence-length to keep them)",
            file=sys.stderr,
        )
    overrides = {"max_sentence_length": max_sentence_length} if max_sentence_length else {}
    if reserved:
        overrides["user_defined_symbols"] = list(reserved)
    prefix = output / ".tokenizer-training"
    model = train_sentencepiece(texts, prefix, vocab_size, num_threads=threads, **overrides)
    os.replace(model, target)
    model.with_suffix(".vocab").replace(target.with_suffix(".vocab"))
    return target


@dataclass(frozen=True)
class Corpus:
    """Where each split's documents come from: ``train``/``val`` files, or ``inputs`` whose first
    ``val_docs`` documents are val and the rest train."""

    train: tuple[Path, ...] = ()
    val: tuple[Path, ...] = ()
    inputs: tuple[Path, ...] = ()
    val_docs: int | None = None
    text_key: str = "text"
    split_blank_lines: bool = False

    def check(self) -> None:
        if self.inputs and (self.train or self.val):
            raise ValueError("give either inputs (with val_docs) or train/val files, not both")
        if self.inputs and self.val_docs is None:
            raise ValueError("inputs need val_docs: the number of leading documents that form the val split")
        if not (self.inputs or self.train or self.val):
            raise ValueError("no input files: give train and/or val files, or inputs with val_docs")
        check_inputs([*self.inputs, *self.val, *self.train])

    @property
    def splits(self) -> tuple[str, ...]:
        if self.inputs:
            return SPLITS
        return tuple(split for split, paths in (("val", self.val), ("train", self.train)) if paths)

    def read(self, paths: Iterable[Path]) -> Iterator[str]:
        return iter_corpus(paths, self.text_key, self.split_blank_lines)

    def tagged(self) -> Iterator[tuple[str, str]]:
        """``(split, document)`` for every document, val before train."""
        if self.inputs:
            for i, doc in enumerate(self.read(self.inputs)):
                yield ("val" if i < self.val_docs else "train"), doc
            return
        for split, paths in (("val", self.val), ("train", self.train)):
            yield from ((split, doc) for doc in self.read(paths))

    def training_documents(self) -> Iterator[str]:
        if self.inputs:
            return itertools.islice(self.read(self.inputs), self.val_docs, None)
        return self.read(self.train)


def encode_corpus(
    corpus: Corpus,
    model_path: Path,
    output: Path,
    shard_tokens: int,
    workers: int,
    batch_docs: int,
    progress: bool,
    caseops: bool = False,
) -> dict[str, SplitStats]:
    """Encode every document and write each split's shards; returns per-split statistics."""
    writers = {split: ShardWriter(output, split, shard_tokens) for split in corpus.splits}
    bar = tqdm(desc="encoding", unit="doc", disable=not progress, dynamic_ncols=True)
    start, tokens_done = time.perf_counter(), 0
    batches = batch_documents(corpus.tagged(), batch_docs)
    for split, n_docs, tokens, sidecar in encode_batches(batches, model_path, workers, caseops):
        writers[split].add(tokens, n_docs, sidecar)
        tokens_done += int(tokens.size)
        rate = tokens_done / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix_str(f"{tokens_done:,} tok, {rate:,.0f} tok/s", refresh=False)
        bar.update(n_docs)
    bar.close()
    return {split: writer.close() for split, writer in writers.items()}


def _clear_old_shards(output: Path, overwrite: bool) -> None:
    stale = existing_shards(output, SPLITS)
    if stale and not overwrite:
        raise FileExistsError(f"{output} already holds shards ({stale[0].name}, ...); pass overwrite to replace them")
    for path in stale:
        path.unlink()


def prepare(
    output: str | os.PathLike,
    *,
    train: Sequence[str | os.PathLike] = (),
    val: Sequence[str | os.PathLike] = (),
    inputs: Sequence[str | os.PathLike] = (),
    val_docs: int | None = None,
    tokenizer: str | os.PathLike | None = None,
    vocab_size: int | None = None,
    tokenizer_docs: int | None = None,
    max_sentence_length: int | None = None,
    text_key: str = "text",
    split_blank_lines: bool = False,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    workers: int | None = None,
    batch_docs: int = DEFAULT_BATCH_DOCS,
    overwrite: bool = False,
    progress: bool = True,
    caseops: bool = False,
) -> dict:
    """Write the shards (and ``tokenizer.model``, ``prepare_meta.json``) of a dataset to ``output``.

    Give ``train`` and/or ``val`` files, or ``inputs`` with ``val_docs`` (the first ``val_docs``
    documents become val, the rest train). Give ``tokenizer`` (an existing SentencePiece model) or
    ``vocab_size`` to train one on the first ``tokenizer_docs`` training documents (all if None).
    ``caseops``: documents go through golf.data.caseops before the tokenizer (a trained one reserves the
    operators), and every val shard gets its byte sidecar. Returns the metadata also written to
    ``prepare_meta.json``."""
    output = Path(output)
    workers = max(1, workers or os.cpu_count() or 1)
    corpus = Corpus(
        tuple(map(Path, train)), tuple(map(Path, val)), tuple(map(Path, inputs)), val_docs, text_key, split_blank_lines
    )
    corpus.check()
    if (tokenizer is None) == (vocab_size is None):
        raise ValueError("give exactly one of tokenizer (an existing model) or vocab_size (train a new one)")
    if tokenizer is None and "train" not in corpus.splits:
        raise ValueError("training a tokenizer needs training documents (train files or inputs)")
    output.mkdir(parents=True, exist_ok=True)
    _clear_old_shards(output, overwrite)

    start = time.perf_counter()
    tok_docs = None if tokenizer is not None else itertools.islice(corpus.training_documents(), tokenizer_docs)
    if tok_docs is not None and caseops:
        tok_docs = map(caseops_encode, tok_docs)
    model_path = resolve_tokenizer(output, tokenizer, tok_docs, vocab_size, workers, max_sentence_length,
                                   caseops_operators if caseops else ())
    sp = load_sentencepiece(model_path)
    if sp.vocab_size() - 1 > MAX_TOKEN_ID:
        raise ValueError(f"{model_path}: vocab size {sp.vocab_size()} does not fit the uint16 shard format")
    if caseops:
        caseops_check(sp, tokenizer or model_path)
    stats = encode_corpus(corpus, model_path, output, shard_tokens, workers, batch_docs, progress, caseops)

    meta = {
        "tokenizer": TOKENIZER_FILE,
        "tokenizer_source": str(tokenizer) if tokenizer is not None else f"trained (vocab_size={vocab_size})",
        "vocab_size": int(sp.vocab_size()),
        "inputs": {name: [str(p) for p in getattr(corpus, name)] for name in ("val", "train", "inputs")},
        "val_docs": val_docs,
        "tokenizer_docs": tokenizer_docs,
        "max_sentence_length": max_sentence_length,
        "text_key": text_key,
        "shard_tokens": shard_tokens,
        "bos_id": int(sp.bos_id()),
        "append_eos": False,
        "caseops": caseops,
        "byte_sidecar": "fineweb_val_bytes_NNNNNN.bin beside each val shard: each token's bytes of the original text"
        if caseops else None,
        "seconds": round(time.perf_counter() - start, 2),
        "splits": {split: asdict(s) for split, s in stats.items()},
    }
    tmp = output / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, output / META_FILE)
    return meta


def summary_table(meta: dict) -> str:
    """A plain-text table of split, shards, documents and tokens."""
    rows = [("split", "shards", "documents", "tokens")]
    for split, s in meta["splits"].items():
        rows.append((split, str(len(s["shards"])), f"{s['documents']:,}", f"{s['tokens']:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Tokenize JSONL or plain-text corpora into challenge shards (fineweb_{val,train}_NNNNNN.bin).",
        epilog="Inputs may be .jsonl/.json/.ndjson or .txt/.text, each optionally compressed as .gz or .xz.",
    )
    src = parser.add_argument_group("inputs (give --train and/or --val, or --input with --val-docs)")
    src.add_argument(
        "--train", nargs="+", default=[], metavar="FILE", help="files whose documents form the train split, in order"
    )
    src.add_argument(
        "--val", nargs="+", default=[], metavar="FILE", help="files whose documents form the val split, in order"
    )
    src.add_argument(
        "--input",
        nargs="+",
        default=[],
        metavar="FILE",
        help="files split by --val-docs into val (first documents) and train (the rest)",
    )
    src.add_argument(
        "--val-docs",
        type=int,
        metavar="N",
        help="with --input: the first N documents become val (the challenge uses 50000)",
    )
    src.add_argument("--text-key", default="text", help="JSONL key holding each document's text (default: %(default)s)")
    src.add_argument(
        "--txt-split-blank-lines",
        action="store_true",
        help="in .txt inputs, each blank-line-separated block is a document (default: one document per file)",
    )

    tok = parser.add_argument_group("tokenizer (give --tokenizer, or --train-tokenizer with --vocab-size)")
    tok.add_argument(
        "--tokenizer",
        metavar="MODEL",
        help="existing SentencePiece .model to encode with; copied to OUTPUT/tokenizer.model",
    )
    tok.add_argument(
        "--train-tokenizer",
        action="store_true",
        help="train a BPE tokenizer with the challenge spec on the training documents; "
        "written to OUTPUT/tokenizer.model",
    )
    tok.add_argument("--vocab-size", type=int, metavar="N", help="vocabulary size of the trained tokenizer (1024, 4096, 8192...)")
    tok.add_argument(
        "--caseops",
        action="store_true",
        help="apply the records' CaseOps case transform before tokenizing (the tokenizer must hold its operators, "
        "as fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model does; a trained one reserves them) and write "
        "each val shard's byte sidecar, so val_bpb counts the original text's bytes",
    )
    tok.add_argument(
        "--tokenizer-docs",
        type=int,
        metavar="M",
        help="train the tokenizer on the first M training documents only (default: all)",
    )
    tok.add_argument(
        "--max-sentence-length",
        type=int,
        metavar="BYTES",
        help="SentencePiece skips tokenizer training documents longer than this "
        f"(default: {SPM_MAX_SENTENCE_LENGTH}, as in the challenge)",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="dataset directory to write shards, tokenizer.model and prepare_meta.json to",
    )
    out.add_argument(
        "--shard-tokens",
        type=int,
        default=DEFAULT_SHARD_TOKENS,
        metavar="N",
        help="tokens per shard; the last shard of a split holds the rest (default: %(default)s)",
    )
    out.add_argument("--overwrite", action="store_true", help="delete shards already in DIR instead of refusing to run")
    out.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count(),
        metavar="N",
        help="encoding processes (default: %(default)s, the CPU count); the output is the same for any N",
    )
    out.add_argument(
        "--batch-docs",
        type=int,
        default=DEFAULT_BATCH_DOCS,
        metavar="N",
        help="documents per encoding task (default: %(default)s)",
    )
    out.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.input and (args.train or args.val):
        parser.error("--input cannot be combined with --train/--val")
    if args.input and args.val_docs is None:
        parser.error("--input needs --val-docs N")
    if args.val_docs is not None and not args.input:
        parser.error("--val-docs only applies to --input")
    if args.val_docs is not None and args.val_docs < 0:
        parser.error("--val-docs must be >= 0")
    if not (args.input or args.train or args.val):
        parser.error("no inputs: give --train and/or --val, or --input with --val-docs")
    if bool(args.tokenizer) == bool(args.train_tokenizer):
        parser.error("give exactly one of --tokenizer MODEL or --train-tokenizer")
    if args.train_tokenizer and not args.vocab_size:
        parser.error("--train-tokenizer needs --vocab-size N")
    if args.tokenizer and (args.vocab_size or args.tokenizer_docs is not None or args.max_sentence_length):
        parser.error("--vocab-size/--tokenizer-docs/--max-sentence-length only apply to --train-tokenizer")
    if args.shard_tokens <= 0 or args.batch_docs <= 0:
        parser.error("--shard-tokens and --batch-docs must be positive")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        meta = prepare(
            args.output,
            train=args.train,
            val=args.val,
            inputs=args.input,
            val_docs=args.val_docs,
            tokenizer=args.tokenizer,
            vocab_size=args.vocab_size if args.train_tokenizer else None,
            tokenizer_docs=args.tokenizer_docs,
            max_sentence_length=args.max_sentence_length,
            text_key=args.text_key,
            split_blank_lines=args.txt_split_blank_lines,
            shard_tokens=args.shard_tokens,
            workers=args.workers,
            batch_docs=args.batch_docs,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            caseops=args.caseops,
        )
    except (CorpusError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"prepare_data: error: {exc}", file=sys.stderr)
        return 1
    print(summary_table(meta))
    print(f"wrote {Path(args.output) / META_FILE} ({meta['seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
