"""Byte accounting and val_bpb (techniques.md §1.3, §1.4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from golf.data.tokenizer import BOS_ID, ByteLUT, byte_lut, encode_documents, load_sentencepiece
from golf.eval.bpb import Evaluator, LutOnDevice, TargetBytes, bits_per_byte, truncate_validation

# A hand-built vocabulary:
#   0 "<s>"     control (boundary)                      0 bytes
#   1 "<0xC3>"  byte-fallback piece                     1 byte
#   2 "▁the"    leading space + "the"                   3 bytes, +1 unless after a boundary
#   3 "hé"      plain piece, "h" + 2-byte "é"           3 bytes
#   4 "▁"       a bare space piece                      0 bytes, +1 unless after a boundary
#   5 "▁é"      leading space + 2-byte char             2 bytes, +1 unless after a boundary
PIECES = ["<s>", "<0xC3>", "\u2581the", "h\u00e9", "\u2581", "\u2581\u00e9"]
LUT = ByteLUT(
    base_bytes=np.array([0, 1, 3, 3, 0, 2], dtype=np.int16),
    has_leading_space=np.array([False, False, True, False, True, True]),
    is_boundary=np.array([True, False, False, False, False, False]),
)
SEQ = [0, 2, 3, 2, 0, 5, 1, 4, 4, 3]
# (prev -> target): 0->2: 3 (after BOS, no space)  2->3: 3  3->2: 3+1  2->0: 0  0->5: 2  5->1: 1
#                   1->4: 0+1  4->4: 0+1  4->3: 3
SEQ_BYTES = 3 + 3 + 4 + 0 + 2 + 1 + 1 + 1 + 3


def test_count_bytes_hand_example():
    s = np.array(SEQ)
    assert LUT.count_bytes(s[:-1], s[1:]) == SEQ_BYTES == 18
    # Pair by pair, the same rule.
    per_pair = [LUT.count_bytes(s[i : i + 1], s[i + 1 : i + 2]) for i in range(len(s) - 1)]
    assert per_pair == [3, 3, 4, 0, 2, 1, 1, 1, 3]
    dev = LutOnDevice(LUT, torch.device("cpu"))
    t = torch.tensor(SEQ)
    got = dev.count(t[:-1], t[1:])
    assert got.dtype == torch.float64 and got.item() == 18
    # 2-D batches count the same.
    assert dev.count(t[:-1].view(3, 3), t[1:].view(3, 3)).item() == 18


class ConstantNLL(nn.Module):
    """Returns a fixed mean NLL; records the input rows it was asked to score."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.seen: list[torch.Tensor] = []

    def forward(self, x, y):
        self.seen.append(x.clone())
        return torch.tensor(self.value, dtype=torch.float32)


class TargetNLL(nn.Module):
    """Mean NLL that depends on the targets: nll(y) = 0.25 * (y + 1); in float64 so sums are exact."""

    def forward(self, x, y):
        return (0.25 * (y.double() + 1)).mean()


def _val_tokens(n_seqs: int, seq_len: int, extra: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(PIECES), (n_seqs * seq_len + 1 + extra,), generator=g)


def test_evaluate_constant_nll_closed_form():
    T, n_seqs = 8, 7
    val = _val_tokens(n_seqs, T, extra=5)  # a tail shorter than a sequence is not scored
    model = ConstantNLL(2.5)
    model.train()
    res = Evaluator(batch_tokens=3 * T, seq_len=T).evaluate(model, val, TargetBytes.of_lut(LutOnDevice(LUT, torch.device("cpu")), val))
    used = val[: n_seqs * T + 1].numpy()
    n_bytes = LUT.count_bytes(used[:-1], used[1:])
    assert res.tokens == n_seqs * T and res.bytes == n_bytes
    assert res.val_loss == pytest.approx(2.5, rel=1e-12)
    assert res.val_bpb == pytest.approx(2.5 * n_seqs * T / (math.log(2) * n_bytes), rel=1e-12)
    assert model.training, "evaluate must restore the model's training mode"
    # Batches of 3 sequences: 3 + 3 + 1, in order, covering every sequence once.
    assert [s.shape[0] for s in model.seen] == [3, 3, 1]
    np.testing.assert_array_equal(torch.cat(model.seen).reshape(-1).numpy(), used[:-1])


def test_evaluate_target_dependent_nll():
    T, n_seqs = 16, 9
    val = _val_tokens(n_seqs, T, extra=0, seed=1)
    res = Evaluator(batch_tokens=4 * T, seq_len=T).evaluate(
        TargetNLL(), val, TargetBytes.of_lut(LutOnDevice(LUT, torch.device("cpu")), val))
    targets = val[1 : n_seqs * T + 1].double()
    nll_sum = float((0.25 * (targets + 1)).sum())
    used = val.numpy()
    n_bytes = LUT.count_bytes(used[:-1], used[1:])
    assert res.val_loss == pytest.approx(nll_sum / (n_seqs * T), rel=1e-12)
    assert res.val_bpb == pytest.approx(nll_sum / (math.log(2) * n_bytes), rel=1e-12)
    assert bits_per_byte(nll_sum, n_bytes) == pytest.approx(res.val_bpb, rel=1e-12)


@pytest.mark.parametrize("world", [2, 3])
def test_evaluate_rank_split_sums_to_single_rank(world):
    T, n_seqs = 8, 11
    val = _val_tokens(n_seqs, T, extra=3, seed=2)
    lut = TargetBytes.of_lut(LutOnDevice(LUT, torch.device("cpu")), val)
    ev = Evaluator(batch_tokens=4 * T, seq_len=T)
    single = ev.evaluate(TargetNLL(), val, lut)
    nll = toks = nbytes = 0.0
    seen = []
    for rank in range(world):
        model = ConstantNLL(0.0)
        ev.evaluate(model, val, lut, rank=rank, world_size=world)  # no process group: local sums only
        seen += model.seen
        r = ev.evaluate(TargetNLL(), val, lut, rank=rank, world_size=world)
        nll += r.val_loss * r.tokens
        toks += r.tokens
        nbytes += r.bytes
    assert toks == single.tokens == n_seqs * T and nbytes == single.bytes
    assert nll / toks == pytest.approx(single.val_loss, rel=1e-12)
    assert bits_per_byte(nll, nbytes) == pytest.approx(single.val_bpb, rel=1e-12)
    # The ranks' windows partition the sequences, in order.
    rows = torch.cat(seen)
    assert rows.shape == (n_seqs, T)
    np.testing.assert_array_equal(rows.reshape(-1).numpy(), val[: n_seqs * T].numpy())


def test_truncate_validation():
    t = np.arange(10)
    np.testing.assert_array_equal(truncate_validation(t, 3), np.arange(10))  # 9 targets + 1
    np.testing.assert_array_equal(truncate_validation(t, 4), np.arange(9))  # 8 targets + 1
    np.testing.assert_array_equal(truncate_validation(np.arange(4), 3), np.arange(4))
    with pytest.raises(ValueError, match="shorter than one sequence of 3"):
        truncate_validation(np.arange(3), 3)


def test_evaluator_rejects_batch_below_one_sequence():
    with pytest.raises(ValueError, match="at least one sequence"):
        Evaluator(batch_tokens=100, seq_len=128)


# ------------------------------------------------------------------------------ the official tokenizer


@pytest.fixture(scope="module")
def official(shared_data):
    model = shared_data / "tokenizers" / "fineweb_1024_bpe.model"
    docs_path = shared_data / "fineweb_sample" / "docs.jsonl"
    for p in (model, docs_path):
        if not p.is_file():
            pytest.skip(f"reference file not found: {p}")
    sp = load_sentencepiece(model)
    docs = [json.loads(line)["text"] for line in docs_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sp, docs


def test_official_lut_tables(official):
    sp, _ = official
    lut = byte_lut(sp)
    assert lut.size == sp.vocab_size() == 1024
    assert lut.is_boundary[[0, 1, 2, 3]].all() and (lut.base_bytes[[0, 1, 2, 3]] == 0).all()
    for i in range(4, lut.size):
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):
            assert lut.base_bytes[i] == 1 and not lut.has_leading_space[i], piece
        else:
            assert not lut.is_boundary[i]
            assert lut.has_leading_space[i] == piece.startswith("\u2581")
            assert lut.base_bytes[i] == len(piece.removeprefix("\u2581").encode("utf-8")), piece
    padded = byte_lut(sp, vocab_size=1100)
    assert padded.size == 1100 and padded.is_boundary[1024:].all() and (padded.base_bytes[1024:] == 0).all()


def test_lut_counts_the_utf8_bytes_of_real_text(official):
    """Per document of real FineWeb text, the byte LUT's count over the targets after BOS equals the UTF-8 length
    of the text the tokens decode to (sentencepiece's normalized form): every byte counted once, the dummy-prefix
    space of a document's first piece not at all."""
    sp, docs = official
    lut = byte_lut(sp)
    for doc in docs:
        ids = np.array([BOS_ID, *sp.encode(doc)], dtype=np.int64)
        assert lut.count_bytes(ids[:-1], ids[1:]) == len(sp.decode(ids[1:].tolist()).encode("utf-8")), doc[:60]


def test_official_fineweb_sample_check_value(official):
    """shared/data/README.md: 392,385 tokens, 960,879 bytes over the 392,384 (input, target) pairs."""
    sp, docs = official
    assert len(docs) == 300
    ids = []
    for doc in docs:
        ids.append(BOS_ID)
        ids.extend(sp.encode(doc))
    tokens = np.array(ids, dtype=np.int64)
    assert tokens.size == 392_385
    lut = byte_lut(sp)
    assert lut.count_bytes(tokens[:-1], tokens[1:]) == 960_879
    t = torch.from_numpy(tokens)
    assert LutOnDevice(lut, torch.device("cpu")).count(t[:-1], t[1:]).item() == 960_879
    # golf's own document encoder gives the same stream, in any batch size.
    for batch_size in (256, 7):
        np.testing.assert_array_equal(np.concatenate(list(encode_documents(sp, docs, batch_size))), tokens)
