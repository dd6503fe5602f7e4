"""golf.data.smoke: the embedded stdlib corpus behind experiment=smoke."""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePosixPath

import pytest

from golf.data import smoke
from golf.data.shards import read_header, read_shard
from golf.data.tokenizer import BOS_ID, load_sentencepiece

VOCAB = 384


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    return smoke.build_smoke_dataset(tmp_path_factory.mktemp("cache"), vocab_size=VOCAB)


def test_build_layout_and_shards(smoke_dir):
    py = f"py{sys.version_info.major}.{sys.version_info.minor}"
    assert smoke_dir.name == f"smoke-{smoke.SMOKE_VERSION}-{py}-v{VOCAB}"
    assert not [p for p in smoke_dir.parent.iterdir() if p != smoke_dir], "temporary build dirs left behind"
    meta = json.loads((smoke_dir / "meta.json").read_text())
    for split in ("train", "val"):
        n = read_header(smoke_dir / f"fineweb_{split}_000000.bin")
        assert n > 10_000 and n == meta[f"tokens_{split}"]
    assert meta["docs_train"] > 8 * meta["docs_val"] > 0
    assert meta["text_bytes"] <= smoke.MAX_TEXT_BYTES


def test_tokenizer_vocab_and_round_trip(smoke_dir):
    sp = load_sentencepiece(smoke_dir / "tokenizer.model")
    assert sp.vocab_size() == VOCAB
    tokens = read_shard(smoke_dir / "fineweb_val_000000.bin")
    assert tokens[0] == BOS_ID and int(tokens.max()) < VOCAB
    first_doc = tokens[1 : list(tokens[1:]).index(BOS_ID) + 1]
    # Document 0 is the first help topic (by sorted key), which goes to val.
    from pydoc_data.topics import topics

    first_topic = topics[sorted(topics)[0]].strip()
    assert sp.decode(first_doc.tolist()).split()[:5] == first_topic.split()[:5]


def test_second_call_uses_the_cache(smoke_dir, monkeypatch):
    before = {p.name: p.stat().st_mtime_ns for p in smoke_dir.iterdir()}

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a cached smoke dataset")

    monkeypatch.setattr(smoke, "_build_into", no_rebuild)
    assert smoke.build_smoke_dataset(smoke_dir.parent, vocab_size=VOCAB) == smoke_dir
    assert {p.name: p.stat().st_mtime_ns for p in smoke_dir.iterdir()} == before


def test_sources_are_only_pydoc_topics_and_stdlib():
    root = smoke.stdlib_root()
    sources = [source for source, _ in smoke.iter_smoke_documents()]
    assert sources[0].startswith(smoke.PYDOC_SOURCE + ":")
    files = [s for s in sources if not s.startswith(smoke.PYDOC_SOURCE + ":")]
    assert files == sorted(files) and len(files) > 100
    for rel in files:
        parts = PurePosixPath(rel).parts
        assert not set(parts) & smoke.SKIPPED_DIRS, rel
        assert (root / rel).is_file() and rel.endswith(".py")
    site = {Path(p).resolve() for p in sys.path if "site-packages" in p}
    assert not any(Path(root / rel).resolve().is_relative_to(s) for rel in files for s in site)


def test_module_docstrings_skip_unparsable_files(tmp_path):
    good = tmp_path / "good.py"
    good.write_text('"""Module doc."""\nclass A:\n    """Class doc."""\n    def f(self):\n        """Method doc."""\n')
    assert smoke.module_docstrings(good) == "Module doc.\n\nClass doc.\n\nMethod doc."
    bad = tmp_path / "bad.py"
    bad.write_text("def (:\n")
    assert smoke.module_docstrings(bad) is None


def test_cache_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(tmp_path / "g"))
    assert smoke.default_cache_root() == tmp_path / "g"
    monkeypatch.delenv("GOLF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert smoke.default_cache_root() == tmp_path / "x" / "golf"


def test_publish_keeps_a_dataset_another_process_finished_first(tmp_path):
    target, ours = tmp_path / "smoke-v1", tmp_path / ".tmp-ours"
    for d in (target, ours):
        d.mkdir()
        for name in ("tokenizer.model", "fineweb_train_000000.bin", "fineweb_val_000000.bin"):
            (d / name).write_text(d.name)
    assert smoke._publish(ours, target, force=False) == target
    assert not ours.exists() and (target / "tokenizer.model").read_text() == "smoke-v1"
    ours.mkdir()
    (ours / "tokenizer.model").write_text("new")
    assert smoke._publish(ours, target, force=True) == target
    assert (target / "tokenizer.model").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke-v1"]
