"""Document masking (golf.models.documents, ``model.doc_mask``) and the packing loader (golf.data.packing): segments
against a naive loop, no logit of a document moved by another document's tokens (attention, SmearGate, hashes,
value embeddings, XSA, the sliding eval's last block), a masked document scored as if alone, and the loader's
spans against the records' rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf.data.packing import PackedLoader
from golf.data.shards import write_shard
from golf.models.documents import segment_ids

BOS = 1


def _naive_segments(row: list[int], max_len: int) -> list[int]:
    out, seg, doc_start = [], 0, 0
    for t, tok in enumerate(row):
        if t == 0 or tok == BOS:
            seg, doc_start = seg + 1, t
        elif max_len and (t - doc_start) % max_len == 0:
            seg += 1
        out.append(seg)
    return out


@pytest.mark.parametrize("max_len", [0, 3, 5])
def test_segments_match_a_naive_loop(max_len):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (4, 37), generator=g)
    got = segment_ids(ids, BOS, max_len)
    want = torch.tensor([_naive_segments(r, max_len) for r in ids.tolist()], dtype=torch.int32)
    assert torch.equal(got, want)


def _docs_row(lengths: list[int], vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    parts = [torch.cat((torch.tensor([BOS]), torch.randint(2, vocab, (n - 1,), generator=g))) for n in lengths]
    return torch.cat(parts)[None]


FEATURES = [dict(), dict(smear_gate=True, bigram_buckets=64, bigram_dim=16, trigram=True),
            dict(engram_buckets=32, engram_dim_per_head=8, smear_gate=True),
            dict(xsa_last_n="all", ve_dim=16, value_residual=True, gated_attention=True),
            dict(smear_gate="input", gate_window=8, attn_out_gate="sparse", parallel_from=-1, loop_layers=[0, 1],
                 loop_repeats=1)]


@pytest.mark.parametrize("features", FEATURES, ids=["plain", "smear+bigram+trigram", "engram+smear", "xsa+ve+vr+gate",
                                                    "input_smear+sparse_gate+lanes+loop"])
def test_no_logit_of_a_document_moves_when_another_documents_token_changes(tiny_gpt, features):
    torch.manual_seed(0)
    model = tiny_gpt(doc_mask=True, doc_max_len=0, **features).eval()
    for p in model.parameters():  # zero-initialised tables and gates would hide a leak
        torch.nn.init.normal_(p, std=0.2)
    lengths = [9, 12, 7]
    ids = _docs_row(lengths, 96, seed=1)
    changed = ids.clone()
    changed[0, 5] = (changed[0, 5] + 7) % 94 + 2   # a token of document 0
    changed[0, 8] = (changed[0, 8] + 3) % 94 + 2   # document 0's last token (what smear and hashes would see)
    with torch.no_grad():
        a, b = model.logits(ids), model.logits(changed)
    assert not torch.equal(a[0, :9], b[0, :9])         # document 0 itself does change
    assert torch.equal(a[0, 9:], b[0, 9:])             # documents 1 and 2: not a bit
    # and the sliding eval's last block (queries of the last positions only) keeps documents apart too
    with torch.no_grad():
        tail = model._project(model.hidden(changed, last=10), None)
    torch.testing.assert_close(tail, b[:, -10:], rtol=1e-5, atol=1e-5)


def test_a_masked_document_scores_as_if_it_were_alone(tiny_gpt):
    torch.manual_seed(0)
    model = tiny_gpt(doc_mask=True, doc_max_len=0, smear_gate=True, bigram_buckets=64, bigram_dim=16).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ids = _docs_row([10, 14], 96, seed=2)
    with torch.no_grad():
        packed = model.logits(ids)[0, 10:]
        alone = model.logits(ids[:, 10:])[0]
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-4)  # RoPE at other positions: rounding only


def test_doc_max_len_cuts_a_long_document_as_the_records_do(tiny_gpt):
    torch.manual_seed(0)
    model = tiny_gpt(doc_mask=True, doc_max_len=8).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ids = _docs_row([20], 96, seed=3)
    changed = ids.clone()
    changed[0, 3] = (changed[0, 3] + 5) % 94 + 2
    with torch.no_grad():
        a, b = model.logits(ids), model.logits(changed)
    assert torch.equal(a[0, 8:], b[0, 8:]) and not torch.equal(a[0, :8], b[0, :8])


def test_without_doc_mask_documents_see_each_other(tiny_gpt):
    torch.manual_seed(0)
    model = tiny_gpt().eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ids = _docs_row([9, 12], 96, seed=1)
    changed = ids.clone()
    changed[0, 5] += 1
    with torch.no_grad():
        assert not torch.equal(model.logits(ids)[0, 9:], model.logits(changed)[0, 9:])


# ------------------------------------------------------------------------------------------------ packing loader

def _write_docs(path, lengths: list[int], start: int) -> np.ndarray:
    """A shard of documents BOS, start, start+1, ... (so each token names its place), beginning mid-document."""
    toks = [np.arange(start, start + 3)]  # a tail of a document from the previous shard
    for n in lengths:
        toks += [np.array([BOS]), np.arange(start + 10, start + 10 + n - 1)]
        start += 1000
    arr = np.concatenate(toks)
    write_shard(path, arr)
    return arr


def test_packed_loader_takes_spans_from_each_shards_first_bos(tmp_path):
    a = _write_docs(tmp_path / "fineweb_train_000000.bin", [40, 30, 25], 2)
    b = _write_docs(tmp_path / "fineweb_train_000001.bin", [50, 60], 5000)
    pattern = str(tmp_path / "fineweb_train_*.bin")
    seq, local, world = 8, 16, 2
    ranks = [PackedLoader(pattern, rank=r, world_size=world) for r in range(world)]
    span = (local + 1) * world
    got = [[loader.next_batch(local * world, seq, 1) for _ in range(4)] for loader in ranks]
    for r in range(world):
        x, y = got[r][0]
        assert x.shape == (1, local) and torch.equal(x[0, 1:], y[0, :-1])
        want = a[3 + r * (local + 1): 3 + (r + 1) * (local + 1)]          # shard 0 from its first BOS (index 3)
        assert x[0].tolist() == want[:-1].tolist() and y[0, -1].item() == want[-1]
    # 95 tokens after shard 0's first BOS hold two spans of 34; the third comes from shard 1's first BOS
    x, _ = got[0][2]
    assert x[0].tolist() == b[3: 3 + local].tolist()
    assert span * 2 <= a.size - 3 < span * 3


def test_packed_loader_prefetch_and_state_keep_the_stream(tmp_path):
    _write_docs(tmp_path / "fineweb_train_000000.bin", [40, 30, 25], 2)
    pattern = str(tmp_path / "fineweb_train_*.bin")
    plain, ahead = PackedLoader(pattern), PackedLoader(pattern)
    want = [plain.next_batch(16, 8, 1)[0] for _ in range(3)]
    got = []
    for _ in range(3):
        got.append(ahead.next_batch(16, 8, 1)[0])
        state = ahead.state_dict()
        ahead.prefetch(16, 8, 1)
        assert ahead.state_dict() == state
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_packed_loader_refuses_shards_without_bos(tmp_path):
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(2, 200))
    with pytest.raises(ValueError, match="no BOS token.*loader.bos_id"):
        PackedLoader(str(tmp_path / "fineweb_train_*.bin"))


@pytest.mark.parametrize("T,M", [(40, 8), (43, 8), (17, 4)])
def test_banded_attention_equals_the_whole_rows_mask(T, M):
    from golf.models.documents import Documents, allowed, sdpa

    g = torch.Generator().manual_seed(T)
    ids = torch.randint(0, 8, (2, T), generator=g)
    q = torch.randn(2, T, 4, 8, generator=g)
    k, v = torch.randn(2, T, 2, 8, generator=g), torch.randn(2, T, 2, 8, generator=g)
    docs = Documents.build(ids, BOS, M)
    assert docs.banded()
    mask = allowed(docs.seg, T)[:, None]
    want = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(sdpa(q, k, v, docs), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T,max_len", [(1024, 0), (2048, 300), (1000, 0), (640, 100)])
def test_block_mask_from_segments_equals_flex_attentions_own_and_attends_exactly(T, max_len):
    """The block-granular mask (no T x T evaluation) against create_block_mask's, block for block where T is a
    multiple of the block; flex attention under it against SDPA under the dense mask at any T."""
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from golf.models.documents import allowed, block_mask

    g = torch.Generator().manual_seed(T)
    ids = torch.randint(2, 50, (2, T), generator=g)
    ids[torch.rand(2, T, generator=g) < 0.004] = BOS
    seg = segment_ids(ids, BOS, max_len)
    ours = block_mask(seg)
    if T % 128 == 0:
        theirs = create_block_mask(lambda b, h, q, kv: (kv <= q) & (seg[b, q] == seg[b, kv]), 2, None, T, T,
                                   device="cpu")
        for a in ("kv_num_blocks", "full_kv_num_blocks"):
            assert torch.equal(getattr(ours, a), getattr(theirs, a)), a
        assert torch.equal(ours.to_dense(), theirs.to_dense())
    q, k, v = (torch.randn(2, 4, T, 16, generator=g) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed(seg, T)[:, None])
    torch.testing.assert_close(flex_attention(q, k, v, block_mask=ours), want, atol=2e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compiled", [False, True])
def test_flex_attention_on_cuda_equals_the_masked_sdpa(tiny_gpt, compiled):
    """The GPU path (flex attention under the documents' block mask, in a compiled model as in training) against
    the CPU path's masked SDPA, in loss and gradients, on a packed flat row cut every 128 tokens."""
    torch.manual_seed(0)
    model = tiny_gpt(vocab_size=512, model_dim=128, num_heads=4, num_kv_heads=2, doc_mask=True, doc_max_len=128,
                     smear_gate=True).cuda()
    ids = _docs_row([300, 129, 700, 5, 400], 512, seed=4).cuda()
    x, y = ids[:, :-1], ids[:, 1:]
    run = torch.compile(model, fullgraph=True, dynamic=False) if compiled else model
    loss = run(x, y)
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    from golf.models import attention
    flex = attention.flex
    attention.flex = lambda q, k, v, docs: attention.sdpa(q, k, v, docs)
    try:
        want_loss = model(x, y)
        want_loss.backward()
    finally:
        attention.flex = flex
    torch.testing.assert_close(loss, want_loss, rtol=1e-4, atol=1e-4)
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=2e-3, atol=2e-5)
