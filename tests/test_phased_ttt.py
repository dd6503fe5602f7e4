"""Phased per-document LoRA TTT (golf.eval.phased_ttt, golf.models.lora): adapters against closed forms and a naive
loop, the evaluator against a per-document loop written here, the phases' documents, and legality: changing every
token scored after a point moves no score before it, bit for bit, at one rank and at two."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

from golf.eval.bpb import TargetBytes
from golf.eval.phased_ttt import PhasedTTTEvaluator, adapter_generator, batches_longest_first, chunk_window, find_docs, phase_documents
from golf.models.gpt import GPT
from golf.models.lora import BatchedLoRA, DocLoRA
from tests.helpers import free_port

BOS = 1


def _model(seed: int = 0) -> GPT:
    """A small frontier model: loop, two lanes, sparse gate, input SmearGate, XSA, documents masked."""
    torch.manual_seed(seed)
    m = GPT(vocab_size=64, num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2.0, rope_dims=4,
            xsa_last_n=4, ln_scale=True, loop_layers=[1, 2], loop_repeats=1, parallel_from=3, attn_out_gate="sparse",
            gate_window=4, smear_gate="input", doc_mask=True, bos_id=BOS, skips="gated")
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim >= 2:
                p.normal_(0, 0.2)
    return m.eval()


def _stream(lengths: list[int], seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    parts = [torch.cat((torch.tensor([BOS]), torch.randint(2, 64, (n - 1,), generator=g))) for n in lengths]
    return torch.cat(parts).to(torch.int32)


def _bytes(val: torch.Tensor) -> TargetBytes:
    per = (val.long() % 5 + 1).to(torch.int32)
    per[0] = 0
    return TargetBytes(per)


LENGTHS = [70, 23, 131, 9, 55, 97, 40, 12, 64]


def _ev(**kw) -> PhasedTTTEvaluator:
    base = dict(chunk=8, window=32, batch_docs=3, rank=4, alpha=6.0, lr=0.02, betas=(0.0, 0.99), weight_decay=0.5,
                prefix_docs=0, phases=1, global_lr=0.01, global_chunk_tokens=64, global_batch_seqs=2, seed=5,
                compile=False)
    return PhasedTTTEvaluator(**{**base, **kw})


def _scores(ev, model, val, **kw) -> tuple[object, dict[int, tuple[int, int, float]]]:
    """The result and each target position's (batch, chunk, NLL)."""
    seen: dict[int, tuple[int, int, float]] = {}

    def rec(batch, chunk, pos, nll):
        for p, v in zip(pos.tolist(), nll.tolist()):
            assert p not in seen, f"position {p} scored twice"
            seen[p] = (batch, chunk, v)

    return ev.evaluate(model, val, _bytes(val), recorder=rec, **kw), seen


def test_batched_lora_is_a_low_rank_term_per_row():
    lora = BatchedLoRA(3, 8, 5, 2, alpha=4.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lora.B.normal_()
    x = torch.randn(3, 7, 8)
    want = torch.stack([x[b] @ lora.A[b].T @ lora.B[b].T * 2.0 for b in range(3)])
    torch.testing.assert_close(lora(x), want)
    lora.reset(None)
    assert torch.count_nonzero(lora.B) == 0 and torch.count_nonzero(lora(x)) == 0


def test_fresh_adapters_leave_every_score_unchanged():
    model, val = _model(), _stream([40, 40])[:64].long()
    x, y = val[None, :-1].repeat(2, 1), val[None, 1:].repeat(2, 1)
    lora = DocLoRA.for_model(model, 2, rank=4, alpha=8.0, targets=("q", "k", "v", "o", "mlp", "head"),
                             generator=torch.Generator().manual_seed(1))
    assert len(lora.layers) == len(model.layer_order()) == 6  # a slot per virtual layer (the loop's too)
    torch.testing.assert_close(model(x, y, reduction="none", lora=lora), model(x, y, reduction="none"), rtol=0, atol=1e-6)
    with torch.no_grad():
        lora.layers[4]["o"].B.normal_()
    moved = model(x, y, reduction="none", lora=lora) - model(x, y, reduction="none")
    assert moved.abs().max() > 1e-4


def test_documents_batches_and_windows_follow_the_records_rules():
    val = _stream([5, 3, 7])
    assert find_docs(val, BOS) == [(0, 6), (5, 4), (8, 7)]  # each keeps the next BOS as its last target
    docs = [(0, 10), (0, 30), (0, 20), (0, 5), (0, 40)]
    assert batches_longest_first(docs, 2) == [(2, [4]), (1, [2, 1]), (0, [3, 0])]
    assert phase_documents([(2, [4]), (1, [2, 1])], 2) == [2, 1]  # the scored batches in length order, as #1626
    # 100 targets in chunks of 8, window 32: chunk 5 ends at 48, its window starts at 16, its 8 targets at offset 24
    assert chunk_window(5, 100, 13, 8, 32) == (16, 32, 24, 8)
    assert chunk_window(12, 100, 13, 8, 32) == (68, 32, 28, 4)  # the last chunk ends at the last target
    with pytest.raises(ValueError, match="must start with a document"):
        find_docs(torch.tensor([5, 1, 3]), BOS)


def test_without_updates_the_score_is_each_documents_own_windows():
    """lr 0 and no phase: every target scored once, from its chunk's window inside its document (a loop here)."""
    model, val = _model(), _stream(LENGTHS)
    res, seen = _scores(_ev(lr=0.0, weight_decay=0.0), model, val)
    assert sorted(seen) == list(range(1, val.numel())) and res.tokens == val.numel() - 1
    assert res.bytes == int(_bytes(val).per_position.sum())
    want = {}
    for s, n in find_docs(val, BOS):
        t = n - 1
        nc = -(-t // 8)
        for ci in range(nc):
            ws, wl, off, cl = chunk_window(ci, t, nc, 8, 32)
            x, y = val[s + ws : s + ws + wl].long(), val[s + ws + 1 : s + ws + wl + 1].long()
            with torch.no_grad():
                nll = model(x[None], y[None], reduction="none")[0]
            for j in range(off, off + cl):
                want[s + ws + 1 + j] = float(nll[j])
    for p, v in want.items():
        assert seen[p][2] == pytest.approx(v, abs=2e-5), p


def _naive(model, val, ev: PhasedTTTEvaluator) -> dict[int, float]:
    """The evaluator's adapter training, one document at a time: each row's adapters are its own, A carried from
    the previous full batch's row (warm start), B zeroed, Adam fresh, a step after every chunk but the last."""
    docs = find_docs(val, BOS)
    out, carried = {}, None
    for _, batch in batches_longest_first(docs, ev.batch_docs):
        rows = len(batch)
        init = DocLoRA.for_model(model, rows, generator=adapter_generator(ev.seed, 0, rows), **ev.lora_kw)
        a_now = carried if rows == ev.batch_docs and carried is not None else [
            {n: p[b : b + 1].clone() for n, p in init.named_parameters() if n.endswith(".A")} for b in range(rows)]
        next_a = []
        for b, d in enumerate(batch):
            s, n = docs[d]
            one = DocLoRA.for_model(model, 1, generator=torch.Generator(), **ev.lora_kw)
            with torch.no_grad():
                for name, p in one.named_parameters():
                    p.copy_(a_now[b][name] if name.endswith(".A") else torch.zeros_like(p))
            opt = torch.optim.AdamW(one.parameters(), **ev.adam_kw)
            t = n - 1
            nc = -(-t // ev.chunk)
            for ci in range(nc):
                ws, wl, off, cl = chunk_window(ci, t, nc, ev.chunk, ev.window)
                x, y = val[s + ws : s + ws + wl].long(), val[s + ws + 1 : s + ws + wl + 1].long()
                nll = model(x[None], y[None], reduction="none", lora=one)[0]
                for j in range(off, off + cl):
                    out[s + ws + 1 + j] = float(nll[j].detach())
                if ci < nc - 1:
                    opt.zero_grad()
                    nll[off : off + ev.chunk].mean().backward()
                    opt.step()
            next_a.append({name: p.detach().clone() for name, p in one.named_parameters() if name.endswith(".A")})
        if rows == ev.batch_docs:
            carried = next_a
    return out


def test_adapter_training_equals_a_per_document_loop():
    """Per-row adapters in one batch, inactive rows, warm-started A across batches: against the naive loop. (Rows
    whose document ended keep decaying in the batch's AdamW; the loop stops them: batches of equal lengths here.)"""
    model, val = _model(), _stream([30, 30, 30, 17, 17, 17, 9])
    for p in model.parameters():
        p.requires_grad_(False)
    ev = _ev(weight_decay=0.0)
    _, seen = _scores(ev, model, val)
    want = _naive(model, val, ev)
    assert set(want) == set(seen)
    worst = max(abs(seen[p][2] - v) for p, v in want.items())
    assert worst < 1e-4
    _, untrained = _scores(_ev(lr=0.0, weight_decay=0.0), model, val)
    assert max(abs(seen[p][2] - untrained[p][2]) for p in want) > 1e-3  # the adapters did learn


def test_phases_train_on_the_first_documents_in_batch_order(monkeypatch):
    import golf.eval.phased_ttt as pt

    calls = []
    monkeypatch.setattr(pt, "global_sgd", lambda model, stream, *a, **k: calls.append(stream.clone()))
    model, val = _model(), _stream(LENGTHS)
    res = _ev(prefix_docs=5, phases=2).evaluate(model, val, _bytes(val))
    docs = find_docs(val, BOS)
    batches = batches_longest_first(docs, 3)
    assert res.phases_done == 2 and len(calls) == 2
    for stream, k, done in zip(calls, (2, 5), (1, 2)):  # boundaries 5 * 1 / 2 and 5 * 2 / 2, after batches 0 and 1
        order = [docs[i] for _, b in sorted(batches[:done]) for i in b]
        want = torch.cat([val[s : s + n] for s, n in order[:k]]).long()
        assert torch.equal(stream.cpu(), want)


def _legality(ev, model_seed, val, cut, world_size=1, rank=0):
    """Scores before and after changing every target scored after ``cut`` = (batch, chunk) (BOS kept)."""
    _, before = _scores(ev, _model(model_seed), val, rank=rank, world_size=world_size)
    later = [p for p, (b, c, _) in before.items() if (b, c) > cut and int(val[p]) != BOS]
    changed = val.clone()
    g = torch.Generator().manual_seed(9)
    changed[later] = ((changed[later].long() - 2 + torch.randint(1, 61, (len(later),), generator=g)) % 62 + 2).to(val.dtype)
    assert all(int(changed[p]) != int(val[p]) for p in later)
    _, after = _scores(ev, _model(model_seed), changed.to(val.dtype), rank=rank, world_size=world_size)
    return before, after


LEGAL_EV = dict(prefix_docs=6, phases=2, lr=0.05, global_lr=0.05)


def _check_legal(before, after, cut):
    early = [p for p, (b, c, _) in before.items() if (b, c) <= cut]
    assert early and all(after[p][2] == before[p][2] for p in early)  # bit for bit
    assert any(after[p][2] != before[p][2] for p in before if before[p][:2] > cut)


@pytest.mark.parametrize("cut", [(0, 3), (1, 2), (2, 0)])
def test_no_score_moves_when_later_tokens_change(cut):
    """Three batches of three documents; a phase runs after batch 0 (on its 3 documents) and after batch 1 (on
    6), so the cuts fall before, between and after the phases."""
    before, after = _legality(_ev(**LEGAL_EV), 0, _stream(LENGTHS), cut)
    _check_legal(before, after, cut)


def _legal_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    before, after = _legality(_ev(**LEGAL_EV), 0, _stream(LENGTHS), (2, 0), world_size=world, rank=rank)
    torch.save({"before": before, "after": after}, f"{out}.{rank}")
    dist.destroy_process_group()
    os._exit(0)


def test_no_score_moves_when_later_tokens_change_on_two_ranks(tmp_path):
    out = str(tmp_path / "r")
    mp.spawn(_legal_worker, args=(2, free_port(), out), nprocs=2, join=True)
    parts = [torch.load(f"{out}.{r}") for r in range(2)]
    before = {**parts[0]["before"], **parts[1]["before"]}
    after = {**parts[0]["after"], **parts[1]["after"]}
    assert len(before) == _stream(LENGTHS).numel() - 1  # the two ranks scored every target once between them
    _check_legal(before, after, (2, 0))


def test_time_guard_scores_what_it_reached():
    model, val = _model(), _stream(LENGTHS)
    res = _ev().evaluate(model, val, _bytes(val), time_budget=1e-9)
    assert 0 < res.docs_scored < res.docs and res.status.startswith("stopped by the time guard")
    assert res.tokens < val.numel() - 1


def test_bad_options_name_the_key():
    with pytest.raises(ValueError, match="eval.ttt.targets"):
        _ev(targets=("q", "x"))
    with pytest.raises(ValueError, match="eval.ttt: need chunk"):
        _ev(window=4)


def test_a_phase_of_no_documents_trains_nothing():
    """prefix_docs < phases puts the first boundary at 0 documents: that phase is empty (as the record's is)."""
    model, val = _model(), _stream(LENGTHS)
    ev = _ev(prefix_docs=2, phases=3)
    assert ev.boundaries(9) == [0, 1, 2]
    res = ev.evaluate(model, val, _bytes(val))
    assert res.status == "complete" and res.phases_done == 2 and res.tokens == val.numel() - 1

