"""CaseOps (golf.data.caseops): a bijection on all of Unicode, the records' token stream and byte sidecar for the
same text, and sidecar totals equal to the original text's UTF-8 length on real documents."""

from __future__ import annotations

import json
import lzma

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golf.data.caseops import ALLCAPS, CAPNEXT, ESC, OPERATORS, TITLE, CaseOpsError, check_caseops_tokenizer, decode, encode, token_bytes
from tests.conftest import REPO

T, A, C, E = TITLE, ALLCAPS, CAPNEXT, ESC
VECTORS = REPO / "tests" / "vectors" / "caseops_records.npz"  # made with the records' own lossless_caps.py
CASEOPS_MODEL = "tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"

# Letters of every case and script, combining marks, the operators themselves, digits and whitespace.
TEXT = st.text(alphabet=st.one_of(
    st.sampled_from("AaBbZzIiOo" + "".join(OPERATORS) + "ßİıǅǈΣσςÀàЖж\u0301\u0308 \n\t0123456789'-ﬁＡ😀"),
    st.characters(codec="utf-8")), max_size=60)


@settings(max_examples=3000, deadline=None)
@given(TEXT)
def test_caseops_round_trips_any_string(s):
    out = encode(s)
    assert decode(out) == s
    assert not any("A" <= ch <= "Z" for ch in out)  # every ASCII capital becomes an operator and its lower case


@pytest.mark.parametrize(("text", "want"), [
    ("iPhone OpenAI", f"i{C}phone {T}open{C}a{C}i"),
    ("HTTPServer", f"{T}h{C}t{C}t{C}p{C}server"),
    ("NASA and Paris", f"{A}nasa and {T}paris"),
    ("ABc x1Y2 A1B", f"{T}a{C}bc x1{T}y2 {T}a1{T}b"),
    ("I A", f"{T}i {T}a"),
    ("ÀB Straße", f"À{T}b {T}straße"),            # only ASCII letters change; a non-ASCII letter ends a run
    (f"a{T}b{E}", f"a{E}{T}b{E}{E}"),             # operators already in the text are escaped
])
def test_caseops_writes_the_records_forms(text, want):
    assert encode(text) == want and decode(want) == text


@pytest.mark.parametrize("bad", [T, f"{T} x", f"a{T}b", f"{C}a", f"ab{C}", f"{A}", E, f"{A}{T}a"])
def test_decode_refuses_what_encode_never_writes(bad):
    with pytest.raises(CaseOpsError):
        decode(bad)


@pytest.fixture(scope="module")
def caseops_sp(shared_data):
    import sentencepiece as spm

    path = shared_data / CASEOPS_MODEL
    if not path.is_file():
        pytest.skip(f"reference tokenizer not found: {path}")
    return spm.SentencePieceProcessor(model_file=str(path))


def enwiki_val(shared_data, n: int | None = None) -> list[str]:
    path = shared_data / "enwiki" / "val.jsonl.xz"
    if not path.is_file():
        pytest.skip(f"reference data not found: {path}")
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(n) if n else iter(int, 1), f)]


def tokens_and_bytes(sp, text: str) -> tuple[list[int], list[int]]:
    t = encode(text)
    pieces = sp.encode(t, out_type="proto").pieces
    return [p.id for p in pieces], token_bytes(t, [(p.begin, p.end) for p in pieces])


def test_token_stream_and_sidecar_equal_the_records(caseops_sp, shared_data):
    """Vectors made with the records' own preparation (#1855's lossless_caps.py and its sidecar function) from the
    first 20 enwiki val documents and some hard strings: golf's tokens and byte counts are theirs, token for token."""
    z = np.load(VECTORS)
    texts = enwiki_val(shared_data, len(z["enwiki_docs"])) + [str(s) for s in z["synthetic"]]
    for k, text in enumerate(texts):
        ids, side = tokens_and_bytes(caseops_sp, text)
        lo, hi = z["offsets"][k], z["offsets"][k + 1]
        assert ids == z["ids"][lo:hi].tolist(), text[:60]
        assert side == z["sidecar"][lo:hi].tolist(), text[:60]


@pytest.mark.parametrize("docs", [pytest.param(100, id="100 docs"), pytest.param(None, id="all", marks=pytest.mark.slow)])
def test_sidecar_totals_are_the_original_utf8_lengths(caseops_sp, shared_data, docs):
    total = raw = 0
    for text in enwiki_val(shared_data, docs):
        ids, side = tokens_and_bytes(caseops_sp, text)
        assert len(side) == len(ids) and sum(side) == len(text.encode("utf-8"))
        total, raw = total + sum(side), raw + len(text.encode("utf-8"))
    assert total == raw
    if docs is None:
        assert raw == 12_661_097  # the 826 documents of enwiki val.jsonl.xz


def test_whitespace_the_tokenizer_drops_still_counts(caseops_sp):
    """Leading and trailing whitespace (which SentencePiece strips) goes to the first and last token: the records'
    sidecar leaves it out, golf's counts every byte of the original text."""
    text = "  Lead and trail \n"
    ids, side = tokens_and_bytes(caseops_sp, text)
    assert sum(side) == len(text.encode("utf-8")) and side[0] >= 2


def test_a_tokenizer_without_the_operators_is_refused(caseops_sp, shared_data):
    import sentencepiece as spm

    check_caseops_tokenizer(caseops_sp, "caseops.model")
    plain = spm.SentencePieceProcessor(model_file=str(shared_data / "tokenizers" / "fineweb_8192_bpe.model"))
    with pytest.raises(CaseOpsError, match="plain.model: tokenizer lacks the CaseOps operators U\\+E001"):
        check_caseops_tokenizer(plain, "plain.model")


@pytest.fixture(scope="module")
def caseops_data(shared_data, tmp_path_factory):
    """The 300 FineWeb sample documents after CaseOps, tokenized with the records' tokenizer: 60 val documents
    (with their sidecars), the rest train."""
    from tests.test_prepare_data import prepare_data

    out = tmp_path_factory.mktemp("caseops_data")
    prepare_data.prepare(out, inputs=[shared_data / "fineweb_sample" / "docs.jsonl"], val_docs=60, caseops=True,
                         tokenizer=shared_data / CASEOPS_MODEL, workers=2, progress=False)
    return out


def test_a_run_on_caseops_data_scores_the_original_bytes(caseops_data, smoke_dir, tmp_path, monkeypatch):
    from golf.data.shards import read_shard, read_sidecars, shard_files, sidecar_path
    from tests.test_pipeline import FAST, run_in_process

    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    common = [*FAST, "logger=none", "train.iterations=2", "data=enwiki_sp8192_caseops", f"data.path={caseops_data}"]
    r = run_in_process(common, tmp_path / "a")
    val = shard_files(str(caseops_data / "fineweb_val_*.bin"))
    n = (sum(read_shard(v).size for v in val) - 1) // 128 * 128  # the scored targets: whole sequences of seq_len
    want = int(read_sidecars(val)[1 : n + 1].sum())
    assert r["status"] == "ok" and r["val"]["prequant"]["bytes"] == r["val"]["roundtrip"]["bytes"] == want
    assert r["val"]["prequant"]["tokens"] == n and r["model_params"] > 8192 * 64  # the vocabulary follows the data
    sidecar_path(val[0]).unlink()
    with pytest.raises(Exception, match="the byte sidecar of fineweb_val_000000.bin is missing"):
        run_in_process(common, tmp_path / "b")
