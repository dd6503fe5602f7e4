"""Sliding-window evaluation and score-first TTT against naive references, legality, the time guard, ranks."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from golf.eval.bpb import Evaluator, LutOnDevice, TargetBytes
from golf.eval.sliding import SlidingEvaluator, golf_windows, record_windows
from golf.eval.ttt import TTTEvaluator
from golf.models.gpt import GPT
from tests.helpers import free_port


class _Lut:
    """Byte tables for a 64-token vocabulary: token t has t % 5 bytes, +1 leading space if t % 3 == 0 unless
    the previous token is a boundary (t < 2)."""

    base_bytes = np.array([t % 5 for t in range(64)], dtype=np.int16)
    has_leading_space = np.array([t % 3 == 0 for t in range(64)])
    is_boundary = np.array([t < 2 for t in range(64)])


def _lut() -> LutOnDevice:
    return LutOnDevice(_Lut, torch.device("cpu"))


def _target_bytes(val: torch.Tensor) -> TargetBytes:
    return TargetBytes.of_lut(_lut(), val)


def _model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    m = GPT(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, init="banked", rope_dims=4,
            rope_ntk_seq_len=16, xsa_last_n=2, smear_gate=True, bigram_buckets=32, bigram_dim=16)
    with torch.no_grad():
        for lin in m.quantized_linears():
            lin.weight.normal_(0, 0.2)
    return m.eval()


def _tokens(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (n + 1,), generator=torch.Generator().manual_seed(seed), dtype=torch.int32)


def _bytes(prev: int, tgt: int) -> int:
    return int(tgt % 5 + (tgt % 3 == 0 and prev >= 2))


def _naive_sliding(model, val, W: int, s: int) -> tuple[float, int, int]:
    """One target at a time: target p is scored in the window [end - W, end) with end = W if p < W, else
    W + k s (k the smallest with p < W + k s, capped at N): the definition, not the evaluator's code."""
    n = val.numel() - 1
    nll, count, nbytes = 0.0, 0, 0
    with torch.no_grad():
        for p in range(n):
            end = W if p < W else min(W + math.ceil((p + 1 - W) / s) * s, n)
            start = max(end - W, 0)
            x = val[start:end].long()[None]
            logits = model.logits(x)[0, p - start].double()
            nll -= float(F.log_softmax(logits, -1)[int(val[p + 1])])
            count += 1
            nbytes += _bytes(int(val[p]), int(val[p + 1]))
    return nll, count, nbytes


@pytest.mark.parametrize(("n", "W", "s", "batch"), [(300, 64, 16, 5), (257, 64, 64, 3), (50, 64, 16, 4), (200, 48, 20, 7)])
def test_sliding_equals_the_naive_reference_and_scores_every_target_once(n, W, s, batch):
    model, val = _model(), _tokens(n)
    r = SlidingEvaluator(window=W, stride=s, batch_windows=batch, compile=False).evaluate(model, val, _target_bytes(val))
    nll, count, nbytes = _naive_sliding(model, val, W, s)
    assert r.tokens == count == n and r.bytes == nbytes
    assert r.val_loss == pytest.approx(nll / count, rel=1e-6)
    assert r.val_bpb == pytest.approx(nll / (math.log(2) * nbytes), rel=1e-6)
    starts, first, end = golf_windows(n, W, s)
    covered = torch.cat([torch.arange(int(a + f), int(a + e)) for a, f, e in zip(starts, first, end)])
    assert torch.equal(covered.sort().values, torch.arange(n))  # a partition of the targets
    assert int((end - first).max()) <= max(s, min(W, n)) and int(starts.min()) >= 0


def test_sliding_time_guard_scores_what_it_reached_and_says_so():
    """With a time budget the windows go in parts: a budget that is plenty changes nothing but float64 summation
    order; one already spent stops after the first part, and the score is exactly that part's."""
    from golf.eval.sliding import GUARD_PARTS

    model, val = _model(), _tokens(900)
    ev = SlidingEvaluator(window=64, stride=16, batch_windows=2, compile=False)
    full = ev.evaluate(model, val, _target_bytes(val))
    roomy = ev.evaluate(model, val, _target_bytes(val), time_budget=1e6)
    assert roomy.status == full.status == "complete" and roomy.tokens == full.tokens == 900
    assert roomy.val_bpb == pytest.approx(full.val_bpb, rel=1e-12)
    cut = ev.evaluate(model, val, _target_bytes(val), time_budget=0.0)
    assert cut.status.startswith(f"stopped by the time guard before part 1 of {GUARD_PARTS}")
    starts, first, end = ev.windows(900)
    k = starts.numel() // GUARD_PARTS
    want = ev.score(model, val, _target_bytes(val), (starts[:k], first[:k], end[:k]))
    assert cut.tokens == int(want[1]) < 900 and cut.val_loss == pytest.approx(float(want[0] / want[1]), rel=1e-12)


def test_only_a_shape_that_recurs_is_compiled(monkeypatch):
    """Window 0's batch (all 64 targets scored) runs eagerly; the tail shape, used by every later batch, is the
    one compiled, and the score is the eager evaluator's."""
    import golf.eval.sliding as sliding

    calls: list[int | None] = []

    def fake_compile(fn, **kw):
        def compiled(ids, last=None):
            calls.append(last)
            return fn(ids, last=last)
        return compiled

    monkeypatch.setattr(sliding.torch, "compile", fake_compile)
    model, val = _model(), _tokens(300)  # 16 windows in 4 batches: window 0's, then 3 of tail windows
    got = SlidingEvaluator(window=64, stride=16, batch_windows=4, compile=True).evaluate(model, val, _target_bytes(val))
    want = SlidingEvaluator(window=64, stride=16, batch_windows=4, compile=False).evaluate(model, val, _target_bytes(val))
    assert calls == [16] * 3 and got.val_loss == pytest.approx(want.val_loss, rel=1e-9)
    calls.clear()
    SlidingEvaluator(window=64, stride=64, batch_windows=1, compile=True).evaluate(model, val[:257], _target_bytes(val[:257]))
    assert calls == [None] * 4  # stride = window: every batch is full length, so that shape is compiled


def test_standard_equals_sliding_with_stride_equal_to_window():
    model, val = _model(), _tokens(64 * 7)
    std = Evaluator(batch_tokens=64 * 3, seq_len=64).evaluate(model, val, _target_bytes(val))
    sl = SlidingEvaluator(window=64, stride=64, batch_windows=3, compile=False).evaluate(model, val, _target_bytes(val))
    assert (std.tokens, std.bytes) == (sl.tokens, sl.bytes)
    assert std.val_loss == pytest.approx(sl.val_loss, rel=1e-6) and std.val_bpb == pytest.approx(sl.val_bpb, rel=1e-6)


def test_records_windows_rescore_the_tail():
    n, W, s = 256, 64, 16
    starts, first, end = record_windows(n, W, s)
    counts = torch.zeros(n, dtype=torch.long)
    for a, f, e in zip(starts, first, end):
        counts[int(a + f) : int(a + e)] += 1
    assert int(counts.min()) == 1 and int(counts[-1]) == W // s  # the last targets scored W/s = 4 times
    model, val = _model(), _tokens(n)
    rec = SlidingEvaluator(window=W, stride=s, batch_windows=4, reproduce_record_tail=True, compile=False)
    assert rec.evaluate(model, val, _target_bytes(val)).tokens == int(counts.sum()) > n


def test_ttt_never_scores_a_target_with_weights_trained_on_it():
    model, val = _model(), _tokens(600)
    events = []
    ttt = TTTEvaluator(chunk_tokens=128, window=64, stride=16, batch_windows=4, seq_len=32, lr=0.05, epochs=2,
                       batch_seqs=2, compile=False)
    r = ttt.evaluate(model, val, _target_bytes(val), recorder=lambda kind, v, pos: events.append((kind, v, pos)))
    scored_at = torch.full((600,), -1)
    trained_first = torch.full((600,), 10**9)
    for kind, v, pos in events:
        if kind == "score":
            assert torch.all(scored_at[pos] == -1)  # scored once
            scored_at[pos] = v
        else:
            assert torch.all(scored_at[pos] >= 0)  # trained only on targets already scored
            trained_first[pos] = torch.minimum(trained_first[pos], torch.full_like(pos, v))
    assert torch.all(scored_at >= 0) and r.tokens == 600 and r.status == "complete"
    assert torch.all(scored_at < trained_first)  # no score came from weights trained on that target
    assert (trained_first < 10**9).sum() > 300 and r.chunks == r.chunks_scored == 5


def test_ttt_without_training_is_the_sliding_score_and_training_changes_it():
    val = _tokens(600)
    kw = dict(chunk_tokens=128, window=64, stride=16, batch_windows=4, seq_len=32, batch_seqs=2, compile=False)
    sl = SlidingEvaluator(window=64, stride=16, batch_windows=4, compile=False).evaluate(_model(), val, _target_bytes(val))
    frozen = TTTEvaluator(**kw, epochs=0).evaluate(_model(), val, _target_bytes(val))
    assert frozen.val_loss == pytest.approx(sl.val_loss, rel=1e-9) and frozen.tokens == sl.tokens
    trained = TTTEvaluator(**kw, epochs=2, lr=0.05).evaluate(_model(), val, _target_bytes(val))
    assert trained.val_loss != pytest.approx(sl.val_loss, rel=1e-6)


def test_frozen_blocks_are_frozen_entirely():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    TTTEvaluator(chunk_tokens=128, window=64, stride=16, seq_len=32, lr=0.05, epochs=1, batch_seqs=2, freeze_blocks=1,
                 compile=False).evaluate(model, _tokens(400), _target_bytes(_tokens(400)))
    after = model.state_dict()
    for k in before:
        if k.startswith("blocks.0."):
            assert torch.equal(after[k], before[k]), k  # matrices too, not only scalars
    assert not torch.equal(after["blocks.1.attn.c_q.weight"], before["blocks.1.attn.c_q.weight"])


def test_ttt_time_guard_reports_a_valid_partial_score():
    val = _tokens(600)
    ttt = TTTEvaluator(chunk_tokens=128, window=64, stride=16, seq_len=32, lr=0.05, epochs=1, batch_seqs=2, compile=False)
    r = ttt.evaluate(_model(), val, _target_bytes(val), time_budget=1e-6)
    assert r.chunks_scored == 1 and r.chunks == 5 and "stopped by the time guard before chunk 1 of 5" in r.status
    starts, first, end = golf_windows(600, 64, 16)
    first_chunk = ((starts + first) // 128 == 0)
    assert r.tokens == int((end - first)[first_chunk].sum()) and math.isfinite(r.val_bpb) and r.val_bpb > 0


def _eval_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    val = _tokens(500)
    sl = SlidingEvaluator(window=64, stride=16, batch_windows=3, compile=False).evaluate(_model(), val, _target_bytes(val), rank=rank,
                                                                                        world_size=world)
    tt = TTTEvaluator(chunk_tokens=128, window=64, stride=16, batch_windows=3, seq_len=32, lr=0.05, epochs=1, batch_seqs=4,
                      compile=False).evaluate(_model(), val, _target_bytes(val), rank=rank, world_size=world)
    guard = TTTEvaluator(chunk_tokens=128, window=64, stride=16, batch_windows=3, seq_len=32, lr=0.05, epochs=1,
                         batch_seqs=4, compile=False).evaluate(_model(), val, _target_bytes(val), rank=rank, world_size=world,
                                                               time_budget=[None, 1e-6][rank])  # only rank 1 is late
    if rank == 0:
        torch.save({"sliding": (sl.val_loss, sl.tokens, sl.bytes), "ttt": (tt.val_loss, tt.tokens, tt.bytes),
                    "guard": (guard.chunks_scored, guard.tokens)}, out)
    dist.destroy_process_group()
    os._exit(0)  # skip interpreter teardown: gloo's threads can abort it (SIGABRT, 'terminate called without an active exception')


def test_two_gloo_ranks_score_as_one_process(tmp_path):
    out = str(tmp_path / "r.pt")
    mp.spawn(_eval_worker, args=(2, free_port(), out), nprocs=2, join=True)
    two = torch.load(out)
    val = _tokens(500)
    sl = SlidingEvaluator(window=64, stride=16, batch_windows=3, compile=False).evaluate(_model(), val, _target_bytes(val))
    tt = TTTEvaluator(chunk_tokens=128, window=64, stride=16, batch_windows=3, seq_len=32, lr=0.05, epochs=1, batch_seqs=4,
                      compile=False).evaluate(_model(), val, _target_bytes(val))
    assert two["sliding"][1:] == (sl.tokens, sl.bytes) and two["sliding"][0] == pytest.approx(sl.val_loss, rel=1e-9)
    assert two["ttt"][1:] == (tt.tokens, tt.bytes) and two["ttt"][0] == pytest.approx(tt.val_loss, rel=1e-5)
    late = TTTEvaluator(chunk_tokens=128, window=64, stride=16, batch_windows=3, seq_len=32, lr=0.05, epochs=1,
                        batch_seqs=4, compile=False).evaluate(_model(), val, _target_bytes(val), time_budget=1e-6)
    assert two["guard"] == (1, late.tokens)  # one rank out of time stops both after the same chunk


def test_bad_eval_options_name_the_key():
    with pytest.raises(ValueError, match="eval.sliding: stride"):
        SlidingEvaluator(window=64, stride=100)
    with pytest.raises(ValueError, match="eval.ttt.chunk_tokens"):
        TTTEvaluator(chunk_tokens=16, seq_len=32)
    with pytest.raises(ValueError, match="eval.sliding.compile_mode must be one of"):
        SlidingEvaluator(compile_mode="fast")


def test_standard_eval_holds_a_forwards_logits_under_the_cap(monkeypatch):
    """A large vocabulary gets fewer rows a forward (no 17 GB of fp32 logits at vocab 8192), and the same score."""
    import golf.eval.bpb as bpb

    class Uniform(torch.nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.vocab_size, self.rows = vocab, []

        def forward(self, x, y):
            self.rows.append(x.size(0))
            return torch.full((), math.log(self.vocab_size), dtype=torch.float32)

    tokens = torch.arange(64 * 16 + 1) % 7
    val_bytes = TargetBytes(torch.ones(tokens.numel(), dtype=torch.int32))
    monkeypatch.setattr(bpb, "MAX_LOGITS", 8 * 16 * 100)  # 8 rows of 16 at vocab 100
    small, large = Uniform(50), Uniform(100)
    ev = Evaluator(batch_tokens=64 * 16, seq_len=16)
    r_small, r_large = ev.evaluate(small, tokens, val_bytes), ev.evaluate(large, tokens, val_bytes)
    assert small.rows == [16] * 4 and large.rows == [8] * 8
    assert r_large.tokens == r_small.tokens == 64 * 16
    assert r_large.val_loss == pytest.approx(math.log(100))


def test_standard_eval_time_guard_scores_whole_batches_and_says_so():
    model, val = _model(), _tokens(64 * 8)
    full = Evaluator(batch_tokens=64 * 2, seq_len=64).evaluate(model, val, _target_bytes(val))
    cut = Evaluator(batch_tokens=64 * 2, seq_len=64).evaluate(model, val, _target_bytes(val), time_budget=1e-9)
    assert full.status == "complete" and full.tokens == 64 * 8
    assert cut.tokens == 64 * 2 and cut.status.startswith("stopped by the time guard after 1 batches")
