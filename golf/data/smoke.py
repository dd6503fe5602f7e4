"""The embedded corpus behind ``experiment=smoke``: a tiny dataset built from text every Python
installation carries, so the whole pipeline (tokenizer, shards, loader, training, val_bpb) can run
on a laptop or in CI with no download and no network.

The text is the interpreter's help topics (``pydoc_data.topics``) plus the module, class and
function docstrings of the standard library's ``.py`` sources, read with ``ast`` (nothing is
imported). Each help topic and each module's docstrings form one document; every 10th document goes
to validation. A BPE tokenizer is trained on it with the challenge's SentencePiece spec and both
splits are written as challenge shards.

Stdlib docstrings change between Python releases, so the cached directory is keyed by a format
version, the Python major.minor and the vocabulary size (e.g. ``smoke-v1-py3.11-v512``); it is
built in a temporary sibling directory and renamed into place, so concurrent builders never see a
half-written dataset.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from golf.data.shards import write_shard
from golf.data.tokenizer import encode_documents, load_sentencepiece, train_sentencepiece

log = logging.getLogger("golf.data.smoke")

SMOKE_VERSION = "v1"
MAX_TEXT_BYTES = 4_000_000
TOKENIZER_TEXT_BYTES = 1_500_000
VAL_EVERY = 10
SHARD_TOKENS = 100_000_000
TOKENIZER_FILE = "tokenizer.model"
TRAIN_PATTERN = "fineweb_train_{:06d}.bin"
VAL_PATTERN = "fineweb_val_{:06d}.bin"
SKIPPED_DIRS = frozenset({"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "__pycache__"})
PYDOC_SOURCE = "pydoc_data.topics"


def default_cache_root() -> Path:
    """``$GOLF_CACHE_DIR``, else ``$XDG_CACHE_HOME/golf``, else ``~/.cache/golf``."""
    if os.environ.get("GOLF_CACHE_DIR"):
        return Path(os.environ["GOLF_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "golf"


def dataset_name(vocab_size: int) -> str:
    """Directory name of a smoke dataset: format version, Python major.minor, vocab size."""
    return f"smoke-{SMOKE_VERSION}-py{sys.version_info.major}.{sys.version_info.minor}-v{vocab_size}"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_sources(root: Path | None = None) -> list[Path]:
    """The stdlib's ``.py`` files in sorted order, without tests, IDLE, lib2to3 and site-packages."""
    root = root or stdlib_root()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        found.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def module_docstrings(path: Path) -> str | None:
    """The module, class and function docstrings of one source file in source order, joined by
    blank lines; None if the file cannot be parsed or has no docstring."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, OSError):
        return None
    docs = [doc for node in _docstring_owners(tree) if (doc := ast.get_docstring(node, clean=True))]
    return "\n\n".join(docs) or None


def _docstring_owners(node: ast.AST) -> Iterator[ast.AST]:
    """Depth-first, in source order: the nodes that can carry a docstring."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _docstring_owners(child)


def iter_smoke_documents(max_bytes: int = MAX_TEXT_BYTES) -> Iterator[tuple[str, str]]:
    """Yield ``(source, text)``: help topics by sorted key, then stdlib modules by sorted path,
    stopping before the total UTF-8 size would exceed ``max_bytes``. ``source`` is
    ``"pydoc_data.topics:<key>"`` or the file's path relative to the stdlib root."""
    total = 0
    for source, text in _all_documents():
        size = len(text.encode("utf-8"))
        if total + size > max_bytes:
            return
        total += size
        yield source, text


def _all_documents() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        text = topics[key].strip()
        if text:
            yield f"{PYDOC_SOURCE}:{key}", text
    root = stdlib_root()
    for path in stdlib_sources(root):
        text = module_docstrings(path)
        if text:
            yield path.relative_to(root).as_posix(), text


def split_documents(docs: Iterable[str]) -> tuple[list[str], list[str]]:
    """Deterministic split: documents 0, 10, 20, ... go to val, the rest to train."""
    train: list[str] = []
    val: list[str] = []
    for i, doc in enumerate(docs):
        (val if i % VAL_EVERY == 0 else train).append(doc)
    return train, val


def _tokenizer_lines(docs: Iterable[str], max_bytes: int) -> Iterator[str]:
    # SentencePiece drops training sentences longer than max_sentence_length (4192 bytes), and a
    # module's docstrings are often longer, so the trainer sees non-empty lines instead.
    total = 0
    for doc in docs:
        for line in doc.splitlines():
            line = line.strip()
            if not line:
                continue
            total += len(line.encode("utf-8")) + 1
            if total > max_bytes:
                return
            yield line


def _write_split(directory: Path, pattern: str, tokens: np.ndarray) -> int:
    """Write ``tokens`` as shards of at most SHARD_TOKENS; returns the number of shards."""
    starts = range(0, max(len(tokens), 1), SHARD_TOKENS)
    for index, start in enumerate(starts):
        write_shard(directory / pattern.format(index), tokens[start : start + SHARD_TOKENS])
    return len(starts)


def _encode(sp, docs: list[str]) -> np.ndarray:
    parts = list(encode_documents(sp, docs))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


def _is_complete(directory: Path) -> bool:
    required = (TOKENIZER_FILE, TRAIN_PATTERN.format(0), VAL_PATTERN.format(0))
    return all((directory / name).is_file() for name in required)


def _build_into(directory: Path, vocab_size: int) -> dict:
    """Build the whole dataset inside ``directory`` (which exists and is empty); return its meta."""
    start = time.perf_counter()
    docs = [text for _, text in iter_smoke_documents()]
    train, val = split_documents(docs)
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    log.info(
        "smoke corpus: %d documents (%d train, %d val), %.2f MB of text, read in %.1fs",
        len(docs),
        len(train),
        len(val),
        text_bytes / 1e6,
        time.perf_counter() - start,
    )

    tok_start = time.perf_counter()
    model = train_sentencepiece(_tokenizer_lines(train, TOKENIZER_TEXT_BYTES), directory / "tokenizer", vocab_size)
    model.with_suffix(".vocab").unlink(missing_ok=True)
    sp = load_sentencepiece(model)
    log.info("trained a %d-piece tokenizer in %.1fs", sp.vocab_size(), time.perf_counter() - tok_start)

    train_tokens, val_tokens = _encode(sp, train), _encode(sp, val)
    meta = {
        "version": SMOKE_VERSION,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
        "vocab_size": int(sp.vocab_size()),
        "text_bytes": text_bytes,
        "docs_train": len(train),
        "docs_val": len(val),
        "tokens_train": int(train_tokens.size),
        "tokens_val": int(val_tokens.size),
        "shards_train": _write_split(directory, TRAIN_PATTERN, train_tokens),
        "shards_val": _write_split(directory, VAL_PATTERN, val_tokens),
        "sources": [PYDOC_SOURCE, "stdlib docstrings"],
    }
    meta["build_seconds"] = round(time.perf_counter() - start, 2)
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info(
        "smoke dataset: %d train / %d val tokens, built in %.1fs",
        meta["tokens_train"],
        meta["tokens_val"],
        meta["build_seconds"],
    )
    return meta


def _publish(tmp: Path, target: Path, force: bool) -> Path:
    """Rename the finished ``tmp`` to ``target``. If another process published a complete dataset
    first (and ``force`` is off), keep theirs and discard ours."""
    try:
        os.rename(tmp, target)
        return target
    except OSError:
        if _is_complete(target) and not force:
            log.info("another process finished %s first; using it", target)
            shutil.rmtree(tmp, ignore_errors=True)
            return target
    # An incomplete leftover, or a forced rebuild: move the old directory aside, then retry.
    stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, stale / target.name)
    os.rename(tmp, target)
    shutil.rmtree(stale, ignore_errors=True)
    return target


def build_smoke_dataset(
    cache_root: str | os.PathLike | None = None, vocab_size: int = 512, force: bool = False
) -> Path:
    """Return the directory of the smoke dataset for this Python and ``vocab_size``, building it
    (a few seconds) if it is not cached yet. It holds ``tokenizer.model``,
    ``fineweb_train_000000.bin``, ``fineweb_val_000000.bin`` and ``meta.json``."""
    root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    target = root / dataset_name(vocab_size)
    if not force and _is_complete(target):
        log.debug("using cached smoke dataset %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    log.info("building smoke dataset %s", target)
    try:
        _build_into(tmp, vocab_size)
        return _publish(tmp, target, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
