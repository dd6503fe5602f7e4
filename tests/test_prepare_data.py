"""scripts/prepare_data.py (corpora -> challenge shards) and scripts/download_data.py (the official
export from the Hugging Face Hub, tested without network)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import lzma
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from golf.data.shards import read_header, read_shard, shard_files
from golf.data.tokenizer import BOS_ID, load_sentencepiece

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _load_script(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # worker processes unpickle functions by module name
    spec.loader.exec_module(module)
    return module


prepare_data = _load_script("prepare_data")
download_data = _load_script("download_data")

WORDS = (
    "the of and golf parameter token shard model train byte piece count value loss ümlaut café naïve 1234 x=y;".split()
)


def synthetic_docs(n: int = 120, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 60))) + ("\n" if i % 7 == 0 else "") for i in range(n)
    ]


def write_jsonl(path: Path, docs: list[str]) -> Path:
    lines = "".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs))
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(lines)
    return path


def expected_stream(sp, docs: list[str]) -> np.ndarray:
    return np.array([t for d in docs for t in [BOS_ID, *sp.encode(d, out_type=int)]], dtype=np.uint16)


def split_stream(out: Path, split: str) -> np.ndarray:
    files = shard_files(str(out / f"fineweb_{split}_*.bin"))
    for f in files:
        read_header(f)
    return np.concatenate([read_shard(f) for f in files])


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("fineweb_*.bin"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """A dataset made with a freshly trained 300-piece tokenizer: (output dir, train docs, val docs)."""
    tmp = tmp_path_factory.mktemp("trained")
    train, val = synthetic_docs(120, seed=1), synthetic_docs(30, seed=2)
    out = tmp / "out"
    prepare_data.prepare(
        out,
        train=[write_jsonl(tmp / "train.jsonl", train)],
        val=[write_jsonl(tmp / "val.jsonl", val)],
        vocab_size=300,
        shard_tokens=1000,
        workers=1,
        progress=False,
    )
    return out, train, val


def test_trained_tokenizer_shards_match_reference_encoding(trained):
    out, train, val = trained
    sp = load_sentencepiece(out / "tokenizer.model")
    assert sp.vocab_size() == 300
    assert (out / "fineweb_train_000000.bin").is_file() and (out / "fineweb_val_000000.bin").is_file()
    train_files = shard_files(str(out / "fineweb_train_*.bin"))
    assert len(train_files) > 1 and all(read_header(f) == 1000 for f in train_files[:-1])
    np.testing.assert_array_equal(split_stream(out, "train"), expected_stream(sp, train))
    np.testing.assert_array_equal(split_stream(out, "val"), expected_stream(sp, val))
    meta = json.loads((out / "prepare_meta.json").read_text())
    assert meta["splits"]["train"]["documents"] == len(train)
    assert meta["splits"]["val"]["tokens"] == split_stream(out, "val").size
    assert meta["splits"]["val"]["shards"] == [f.name for f in shard_files(str(out / "fineweb_val_*.bin"))]


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.xz"])
def test_compressed_inputs_give_the_same_shards(trained, tmp_path, suffix):
    out, train, val = trained
    compressed = prepare_data.prepare(
        tmp_path / "out",
        train=[write_jsonl(tmp_path / f"train{suffix}", train)],
        val=[write_jsonl(tmp_path / f"val{suffix}", val)],
        tokenizer=out / "tokenizer.model",
        shard_tokens=1000,
        workers=1,
        progress=False,
    )
    assert compressed["splits"]["train"]["documents"] == len(train)
    assert shard_bytes(tmp_path / "out") == shard_bytes(out)


def test_output_is_identical_for_one_and_two_workers(trained, tmp_path):
    out, train, val = trained
    docs = write_jsonl(tmp_path / "docs.jsonl", train + val)
    results = {}
    for workers in (1, 2):
        dest = tmp_path / f"w{workers}"
        argv = ["--input", str(docs), "--val-docs", "5", "--tokenizer", str(out / "tokenizer.model")]
        argv += [
            "--output",
            str(dest),
            "--workers",
            str(workers),
            "--batch-docs",
            "3",
            "--shard-tokens",
            "700",
            "--no-progress",
        ]
        assert prepare_data.main(argv) == 0
        results[workers] = shard_bytes(dest)
    assert len(results[1]) > 2 and results[1] == results[2]


def test_val_docs_split_takes_the_first_documents(trained, tmp_path):
    out, train, _ = trained
    docs = write_jsonl(tmp_path / "docs.jsonl", train)
    prepare_data.prepare(
        tmp_path / "out", inputs=[docs], val_docs=7, tokenizer=out / "tokenizer.model", workers=1, progress=False
    )
    sp = load_sentencepiece(out / "tokenizer.model")
    np.testing.assert_array_equal(split_stream(tmp_path / "out", "val"), expected_stream(sp, train[:7]))
    np.testing.assert_array_equal(split_stream(tmp_path / "out", "train"), expected_stream(sp, train[7:]))
    assert (tmp_path / "out" / "tokenizer.model").read_bytes() == (out / "tokenizer.model").read_bytes()


def test_bad_json_line_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(prepare_data.CorpusError, match=r"bad\.jsonl:4: not valid JSON"):
        list(prepare_data.iter_documents(bad))
    argv = [
        "--train",
        str(bad),
        "--train-tokenizer",
        "--vocab-size",
        "300",
        "--output",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    assert prepare_data.main(argv) == 1
    assert f"{bad}:4: not valid JSON" in capsys.readouterr().err


def test_missing_key_and_missing_file_are_named(tmp_path):
    nokey = tmp_path / "nokey.jsonl"
    nokey.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(prepare_data.CorpusError, match=r"nokey\.jsonl:1: .*'text'"):
        list(prepare_data.iter_documents(nokey))
    assert list(prepare_data.iter_documents(nokey, text_key="body")) == ["x"]
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(prepare_data.CorpusError, match=r"nowhere\.jsonl: input file does not exist"):
        prepare_data.prepare(tmp_path / "o", val=[missing], tokenizer="unused.model", progress=False)


def test_txt_is_one_document_per_file_unless_split_on_blank_lines(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("first para\nline two\n\n\nsecond para\n", encoding="utf-8")
    assert list(prepare_data.iter_documents(txt)) == ["first para\nline two\n\n\nsecond para\n"]
    assert list(prepare_data.iter_documents(txt, split_blank_lines=True)) == ["first para\nline two", "second para"]
    with pytest.raises(prepare_data.CorpusError, match="unknown input kind"):
        prepare_data.corpus_kind(tmp_path / "a.csv")


def test_refuses_to_mix_with_existing_shards(trained, tmp_path):
    out, train, _ = trained
    docs = write_jsonl(tmp_path / "d.jsonl", train[:10])
    kwargs = dict(val=[docs], tokenizer=out / "tokenizer.model", workers=1, progress=False)
    prepare_data.prepare(tmp_path / "o", **kwargs)
    with pytest.raises(FileExistsError):
        prepare_data.prepare(tmp_path / "o", **kwargs)
    prepare_data.prepare(tmp_path / "o", overwrite=True, **kwargs)


def test_fineweb_sample_check_value(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA}: the fineweb_sample check value needs it")
    meta = prepare_data.prepare(
        tmp_path / "out",
        val=[SHARED_DATA / "fineweb_sample" / "docs.jsonl"],
        tokenizer=SHARED_DATA / "tokenizers" / "fineweb_1024_bpe.model",
        workers=2,
        progress=False,
    )
    assert meta["splits"]["val"]["documents"] == 300
    assert meta["splits"]["val"]["tokens"] == 392_385
    tokens = read_shard(tmp_path / "out" / "fineweb_val_000000.bin")
    assert tokens.size == 392_385 and int((tokens == BOS_ID).sum()) >= 300 and tokens[0] == BOS_ID


# --- download_data ---------------------------------------------------------------------------

MANIFEST = {
    "datasets": [
        {"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024", "stats": {"files_train": 3, "files_val": 1}}
    ],
    "tokenizers": [
        {
            "name": "sp_bpe_1024",
            "model_path": "tokenizers/fineweb_1024_bpe.model",
            "vocab_path": "tokenizers/fineweb_1024_bpe.vocab",
        }
    ],
}


def test_local_paths_follow_the_upstream_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", raising=False)
    f = download_data.local_path_for_remote
    assert f("datasets/manifest.json", tmp_path) == tmp_path / "manifest.json"
    assert f("datasets/datasets/fineweb10B_sp1024/fineweb_val_000000.bin", tmp_path) == (
        tmp_path / "datasets" / "fineweb10B_sp1024" / "fineweb_val_000000.bin"
    )
    assert (
        f("datasets/tokenizers/fineweb_1024_bpe.model", tmp_path) == tmp_path / "tokenizers" / "fineweb_1024_bpe.model"
    )
    assert f("other/x.json", tmp_path, root="other") == tmp_path / "x.json"
    assert download_data.dataset_dir_for_variant("byte260") == "fineweb10B_byte260"
    with pytest.raises(download_data.DownloadError):
        download_data.dataset_dir_for_variant("gpt2")


def test_plan_lists_val_then_train_then_tokenizer(monkeypatch):
    monkeypatch.delenv("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", raising=False)
    paths = download_data.plan(MANIFEST, "sp1024", 2)
    assert paths == [
        "datasets/datasets/fineweb10B_sp1024/fineweb_val_000000.bin",
        "datasets/datasets/fineweb10B_sp1024/fineweb_train_000000.bin",
        "datasets/datasets/fineweb10B_sp1024/fineweb_train_000001.bin",
        "datasets/tokenizers/fineweb_1024_bpe.model",
        "datasets/tokenizers/fineweb_1024_bpe.vocab",
    ]
    with pytest.raises(download_data.DownloadError, match="has 3 training shards"):
        download_data.plan(MANIFEST, "sp1024", 4)


def _raise_network_error(kind):
    def fake(**kwargs):
        if kind == "local":
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        raise ConnectionError("[Errno -2] Name or service not known")

    return fake


@pytest.mark.parametrize("kind", ["connection", "local"])
def test_offline_exits_2_naming_the_repo(tmp_path, monkeypatch, capsys, kind):
    monkeypatch.setenv("MATCHED_FINEWEB_REPO_ID", "someone/golf-data")
    monkeypatch.setattr(download_data, "hf_hub_download", _raise_network_error(kind))
    assert download_data.main(["--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "someone/golf-data" in err and "network" in err and "Traceback" not in err


def test_download_with_a_fake_hub(tmp_path, monkeypatch):
    from golf.data.shards import write_shard

    monkeypatch.delenv("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", raising=False)
    hub = tmp_path / "hub"
    (hub / "datasets").mkdir(parents=True)
    (hub / "datasets" / "manifest.json").write_text(json.dumps(MANIFEST))
    for name in ("fineweb_val_000000.bin", "fineweb_train_000000.bin"):
        write_shard(hub / "datasets" / "datasets" / "fineweb10B_sp1024" / name, np.arange(10))
    for name in ("fineweb_1024_bpe.model", "fineweb_1024_bpe.vocab"):
        (hub / "datasets" / "tokenizers").mkdir(exist_ok=True)
        (hub / "datasets" / "tokenizers" / name).write_text(name)
    calls = []

    def fake(repo_id, filename, subfolder, repo_type):
        calls.append((repo_id, subfolder, filename, repo_type))
        return str(hub / subfolder / filename)

    monkeypatch.setattr(download_data, "hf_hub_download", fake)
    out = tmp_path / "data"
    assert download_data.main(["--output", str(out), "--train-shards", "1"]) == 0
    assert (out / "manifest.json").is_file()
    assert read_header(out / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000000.bin") == 10
    assert (out / "tokenizers" / "fineweb_1024_bpe.model").read_text() == "fineweb_1024_bpe.model"
    assert calls[0] == ("willdepueoai/parameter-golf", "datasets", "manifest.json", "dataset")
    n_calls = len(calls)
    assert download_data.main(["--output", str(out), "--train-shards", "1"]) == 0
    assert len(calls) == n_calls  # everything was already there


def test_the_april_variants_come_from_the_records_repositories(monkeypatch):
    """sp4096/sp8192 from the repository the April records name, sp8192_caseops from romeerp's with a byte
    sidecar per val shard; MATCHED_FINEWEB_REPO_ID still wins."""
    monkeypatch.delenv("MATCHED_FINEWEB_REPO_ID", raising=False)
    monkeypatch.delenv("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", raising=False)
    name = "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    manifest = {"datasets": [{"name": name, "tokenizer_name": "t", "stats": {"files_train": 2, "files_val": 2}}],
                "tokenizers": [{"name": "t", "model_path": "tokenizers/t.model"}]}
    monkeypatch.setitem(download_data._variant, "name", "sp8192_caseops")
    assert download_data.repo_id() == "romeerp/parameter-golf-caseops-v1"
    paths = download_data.plan(manifest, "sp8192_caseops", 1)
    assert paths == [f"datasets/datasets/{name}/fineweb_val_00000{i}.bin" for i in (0, 1)] + [
        f"datasets/datasets/{name}/fineweb_val_bytes_00000{i}.bin" for i in (0, 1)] + [
        f"datasets/datasets/{name}/fineweb_train_000000.bin", "datasets/tokenizers/t.model"]
    monkeypatch.setitem(download_data._variant, "name", "sp8192")
    assert download_data.repo_id() == "kevclark/parameter-golf"
    assert download_data.dataset_dir_for_variant("sp4096") == "fineweb10B_sp4096"
    monkeypatch.setenv("MATCHED_FINEWEB_REPO_ID", "me/mine")
    assert download_data.repo_id() == "me/mine"


def test_caseops_shards_carry_a_byte_sidecar_of_the_original_text(tmp_path, shared_data):
    """--caseops with the records' tokenizer: val shards get sidecars whose total is the documents' UTF-8 length,
    cut at the same places as their shards; train shards get none; the tokens decode to the original text."""
    from golf.data.caseops import decode
    from golf.data.shards import SIDECAR_KIND, read_header, read_shard, read_sidecars, sidecar_path

    model = shared_data / "tokenizers" / "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
    docs = ["The NASA Launch was OK.", "iPhone \ue001 McDonald's ÀB", "  lead and trail  ", "中文 ТЕКСТ"] * 5
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = tmp_path / "out"
    meta = prepare_data.prepare(out, inputs=[corpus], val_docs=12, tokenizer=model, caseops=True, shard_tokens=40,
                                workers=2, progress=False)
    assert meta["caseops"] and meta["splits"]["val"]["original_bytes"] == sum(len(d.encode()) for d in docs[:12])
    val = sorted(out.glob("fineweb_val_0*.bin"))
    assert len(val) > 1 and all(sidecar_path(v).is_file() for v in val)
    assert not list(out.glob("fineweb_train_bytes_*.bin"))
    assert all(read_header(sidecar_path(v), SIDECAR_KIND) == read_header(v) for v in val)
    assert int(read_sidecars(val).sum()) == meta["splits"]["val"]["original_bytes"]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    tokens = np.concatenate([read_shard(v) for v in val]).tolist()
    texts = sp.decode([[t for t in doc if t] for doc in _split_at(tokens, 1)])
    assert [decode(t) for t in texts] == [d.strip() for d in docs[:12]]  # SentencePiece drops outer whitespace
    with pytest.raises(ValueError, match="tokenizer lacks the CaseOps operators"):
        prepare_data.prepare(tmp_path / "plain", inputs=[corpus], val_docs=2, caseops=True, progress=False,
                             tokenizer=shared_data / "tokenizers" / "fineweb_8192_bpe.model")


def _split_at(tokens: list[int], bos: int) -> list[list[int]]:
    docs: list[list[int]] = []
    for t in tokens:
        if t == bos:
            docs.append([])
        else:
            docs[-1].append(t)
    return docs
