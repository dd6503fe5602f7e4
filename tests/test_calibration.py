"""Calibration: KV-cached self-generation against full-prefix recomputation, Hessians against a direct
computation (and across 2 gloo ranks), the sources' shares and their refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from golf.calibration.generate import generate, generate_batch, generate_by_recomputation
from golf.calibration.hessians import collect_hessians
from golf.calibration.sources import AutoRegressive, CalibrationContext, RandomTokens, TrainBatches, ValBatches
from golf.models.attention import attend_masked, attend_tail
from golf.models.gpt import GPT
from tests.helpers import free_port

FEATURES = dict(vocab_size=64, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2, init="banked",
                activation="leaky_relu2", rope_dims=8, rope_ntk_seq_len=8, ln_scale=True, xsa_last_n=4, smear_gate=True,
                bigram_buckets=32, bigram_dim=16, trigram=True, ve_dim=16, ve_layers=[2, 3], value_residual=True,
                gated_attention=True, skips="gated")


def _model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    m = GPT(**{**FEATURES, **kw})
    with torch.no_grad():  # trained-looking weights: outputs and MLP projections are not zero
        for lin in m.quantized_linears():
            lin.weight.normal_(0, 0.15)
    return m


@pytest.mark.parametrize("extra", [{}, {"bigram_buckets": 0, "engram_buckets": 16}])
def test_cached_decoding_equals_the_full_forward(extra):
    m = _model(**extra).eval()
    ids = torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(1))
    full = m._project(m.hidden(ids, rope_len=24), None)
    state = m.decode_state(24)
    steps = [m.decode(ids[:, :6], state)] + [m.decode(ids[:, t : t + 1], state) for t in range(6, 24)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="full"):
        m.decode(ids[:, :1], state)


@pytest.mark.parametrize("extra", [{}, {"bigram_buckets": 0, "engram_buckets": 16, "ve_layers": [3]}])
def test_last_positions_only_equal_the_full_forward(extra):
    """hidden(last=k), whose last block computes queries, MLP and output for k positions (the sliding eval's
    scored ones), equals the last k rows of the full forward: XSA, value embedding and value residual in that
    block included."""
    m = _model(**extra).eval()
    ids = torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(2))
    full = m.hidden(ids)
    for k in (1, 5, 24):
        torch.testing.assert_close(m.hidden(ids, last=k), full[:, -k:], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="last=25"):
        m.hidden(ids, last=25)


def test_ar_generation_with_the_cache_gives_the_tokens_of_recomputation():
    """Same seed, fp32: the KV-cached generator samples exactly the tokens of recomputing every prefix."""
    m = _model()
    cached = generate_batch(m, 4, 40, 0.8, seed=7, batch_index=3, device=torch.device("cpu"))
    recomputed = generate_by_recomputation(m, 4, 40, 0.8, seed=7, batch_index=3, device=torch.device("cpu"))
    assert torch.equal(cached, recomputed)
    assert cached.shape == (4, 40) and int(cached.max()) < 64
    assert not torch.equal(cached, generate_batch(m, 4, 40, 0.8, seed=8, batch_index=3, device=torch.device("cpu")))


@pytest.mark.parametrize("extra", [{}, {"bigram_buckets": 0, "engram_buckets": 16}])
def test_static_decoding_samples_the_tokens_of_eager_decoding(extra):
    """The fixed-shape decoding step (the one captured in a CUDA graph): cache written at a device position,
    every slot attended under a mask, hash/smear context updated in place. Same seed, fp32: the same tokens
    as eager decoding, through every model feature, and for several batches decoded together."""
    m = _model(**extra)
    cpu = torch.device("cpu")
    eager = generate(m, [(0, 3), (5, 2)], 40, 0.8, seed=7, device=cpu, mode="eager")
    static = generate(m, [(0, 3), (5, 2)], 40, 0.8, seed=7, device=cpu, mode="static")
    assert torch.equal(static, eager)
    assert torch.equal(generate(m, [(0, 3)], 3, 0.8, seed=7, device=cpu, mode="static"), eager[:3, :3])
    with pytest.raises(ValueError, match="calibration.decode=graph needs a CUDA device"):
        generate(m, [(0, 3)], 8, 0.8, seed=7, device=cpu, mode="graph")
    with pytest.raises(ValueError, match="calibration.decode must be one of"):
        AutoRegressive(decode="cuda_graphs")


def test_masked_grouped_attention_equals_sdpa_over_the_filled_slots():
    """The static step's attention (grouped matmuls over head-major K/V, never repeated) equals SDPA with
    grouped K/V over just the filled prefix."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 1, 8, 16, generator=g)
    k, v = torch.randn(3, 2, 32, 16, generator=g), torch.randn(3, 2, 32, 16, generator=g)
    for filled in (1, 17, 32):
        valid = torch.arange(32) < filled
        ref = F.scaled_dot_product_attention(q.transpose(1, 2), k[:, :, :filled], v[:, :, :filled], enable_gqa=True)
        torch.testing.assert_close(attend_masked(q, k, v, valid), ref.transpose(1, 2), rtol=1e-6, atol=1e-6)


def test_few_query_attention_keeps_fp32_scores_under_bf16_autocast():
    """attend_tail (the sliding eval's last block) under bf16 autocast, with logits up to ~18: within 0.02 of an
    fp32 reference on the same bf16 inputs. Scores rounded to bf16 (what a bf16 matmul returns) miss by 0.034."""
    g = torch.Generator().manual_seed(0)
    q = (F.normalize(torch.randn(2, 16, 8, 64, generator=g), dim=-1) * 32).bfloat16()
    k = (F.normalize(torch.randn(2, 48, 4, 64, generator=g), dim=-1) * 8).bfloat16()
    v = torch.randn(2, 48, 4, 64, generator=g).bfloat16()
    allowed = torch.arange(48)[None, :] <= torch.arange(32, 48)[:, None]
    ref = F.scaled_dot_product_attention(*(t.float().transpose(1, 2) for t in (q, k, v)), attn_mask=allowed,
                                         enable_gqa=True).transpose(1, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attend_tail(q, k, v)
    assert (out.float() - ref).abs().max() < 0.02


def test_a_static_state_needs_two_positions_first():
    m = _model().eval()
    state = m.decode_state(8)
    m.decode(torch.zeros(2, 1, dtype=torch.long), state)
    with pytest.raises(ValueError, match="two positions"):
        state.make_static()


def test_hessians_equal_a_direct_computation():
    m = _model().eval()
    batches = [torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    H, tokens = collect_hessians(m, batches)
    assert tokens == 96 and len(H) == 4 * 6 + 1  # and the head's (tok_emb.weight)
    inputs = {"fc": [], "proj": []}
    hooks = [m.blocks[2].mlp.fc.register_forward_hook(lambda mod, i, o: inputs["fc"].append(i[0].reshape(-1, 64))),
             m.blocks[2].mlp.proj.register_forward_hook(lambda mod, i, o: inputs["proj"].append(i[0].reshape(-1, 128)))]
    with torch.no_grad():
        for b in batches:
            m.hidden(b)
    for h in hooks:
        h.remove()
    for key, name in (("fc", "blocks.2.mlp.fc.weight"), ("proj", "blocks.2.mlp.proj.weight")):
        X = torch.cat(inputs[key])
        torch.testing.assert_close(H[name], X.T @ X / X.shape[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(H["blocks.1.attn.c_q.weight"], H["blocks.1.attn.c_v.weight"], rtol=0, atol=0)
    assert not torch.equal(H["blocks.1.attn.c_q.weight"], H["blocks.2.attn.c_q.weight"])



def _hessian_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    m = _model()
    ctx = CalibrationContext(model=m, device=torch.device("cpu"), autocast_dtype=None, rank=rank, world_size=world,
                             seed=5, seq_len=16)
    src = AutoRegressive(sequences=6, seq_len=16, batch_seqs=2)
    H, tokens = collect_hessians(m, src.batches(ctx), world_size=world)
    if rank == 0:
        torch.save({"H": H, "tokens": tokens}, out)
    dist.destroy_process_group()
    os._exit(0)  # skip interpreter teardown: gloo's threads can abort it (SIGABRT, 'terminate called without an active exception')


def test_ar_hessians_do_not_depend_on_the_world_size(tmp_path):
    """Batch b is generated from seed (seed, b) by rank b mod W; Hessians are all-reduced: 2 ranks = 1."""
    out = str(tmp_path / "h.pt")
    mp.spawn(_hessian_worker, args=(2, free_port(), out), nprocs=2, join=True)
    two = torch.load(out)
    m = _model()
    ctx = CalibrationContext(model=m, device=torch.device("cpu"), autocast_dtype=None, rank=0, world_size=1, seed=5,
                             seq_len=16)
    one, tokens = collect_hessians(m, AutoRegressive(sequences=6, seq_len=16, batch_seqs=2).batches(ctx))
    assert two["tokens"] == tokens == 96
    for name, h in one.items():
        torch.testing.assert_close(two["H"][name], h, rtol=1e-5, atol=1e-7)


def test_sources_split_sequences_by_batch_over_ranks(tmp_path):
    """Train batches continue the real stream: at 3 ranks each keeps batch b = rank mod 3, and the union is
    the 1-rank sequence of batches (the loader's next_batch would have split every batch 3 ways)."""
    from golf.data.loader import SequentialLoader
    from golf.data.shards import write_shard

    write_shard(tmp_path / "train_000.bin", (np.arange(4000) % 64).astype(np.uint16))
    m = _model()

    def ctx(rank: int, world: int) -> CalibrationContext:
        loader = SequentialLoader(str(tmp_path / "train_*.bin"), rank=rank, world_size=world)
        loader.stream.take(5)  # training consumed some of it
        return CalibrationContext(model=m, device=torch.device("cpu"), autocast_dtype=None, rank=rank,
                                  world_size=world, seed=1, seq_len=8, loader=loader, val_tokens=torch.arange(10_000) % 64)

    one = list(TrainBatches(sequences=10, batch_seqs=3).batches(ctx(0, 1)))
    assert [b.shape[0] for b in one] == [3, 3, 3, 1] and torch.equal(one[0][0], torch.arange(5, 13) % 64)
    shares = []
    for rank in range(3):
        c = ctx(rank, 3)
        got = list(TrainBatches(sequences=10, batch_seqs=3).batches(c))
        shares.append([b.shape[0] for b in got])
        for k, b in enumerate(got):
            assert torch.equal(b, one[rank + 3 * k])
        assert all(b.shape[1] == 8 for b in ValBatches(sequences=10, batch_seqs=3).batches(c))
        assert all(b.shape == (2, 8) for b in RandomTokens(sequences=4, seq_len=8, batch_seqs=2).batches(c))
    assert shares == [[3, 1], [3], [3]]  # batches 0..3 of 3, 3, 3, 1 sequences: rank r takes b = r mod 3
    assert not ValBatches().allowed_for_record and TrainBatches().reserve_seconds == 14.0


def test_sources_refuse_what_cannot_run():
    with pytest.raises(ValueError, match="calibration.reserve_seconds=30.0 leaves no training time"):
        TrainBatches(reserve_seconds=30.0).check(_model(), 30.0)
    with pytest.raises(ValueError, match="calibration=ar needs a model that decodes incrementally"):
        AutoRegressive().check(torch.nn.Linear(2, 2), None)
    ctx = CalibrationContext(model=_model(), device=torch.device("cpu"), autocast_dtype=None, rank=0, world_size=1,
                             seed=1, seq_len=8, val_tokens=torch.arange(100) % 64)
    with pytest.raises(ValueError, match="calibration=val wants 50 sequences of 8 but the validation split has 12"):
        list(ValBatches(sequences=50).batches(ctx))
    with pytest.raises(ValueError, match="calibration.temperature"):
        AutoRegressive(temperature=0)


def check_hessians_exact_under_bf16(device: torch.device) -> None:
    """collect_hessians under bf16 autocast equals float64 X^T X of the inputs the same forward sees."""
    m = _model().to(device).eval()
    batches = [torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    H, _ = collect_hessians(m, batches, autocast_dtype=torch.bfloat16)
    seen = []
    hook = m.blocks[1].mlp.proj.register_forward_hook(lambda mod, i, o: seen.append(i[0].reshape(-1, 128).double()))
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        for b in batches:
            m.hidden(b.to(device))
    hook.remove()
    X = torch.cat(seen)
    h = H["blocks.1.mlp.proj.weight"]
    assert h.dtype == torch.float32 and h.device.type == device.type
    torch.testing.assert_close(h.double(), X.T @ X / X.shape[0], rtol=1e-5, atol=1e-7)


def test_hessians_stay_float32_under_bf16_autocast():
    """The forward runs under the training's bf16 autocast; the products X^T X and their sums must not (a
    bf16 Hessian is off by ~1% entrywise, more than GPTQ's 1% damping)."""
    check_hessians_exact_under_bf16(torch.device("cpu"))


def test_exact_fp32_turns_off_autocast_and_tf32_and_restores_them():
    from golf.numerics import exact_fp32

    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")
    a = torch.randn(8, 8)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert (a @ a).dtype == torch.bfloat16
            with exact_fp32("cpu"):
                assert (a @ a).dtype == torch.float32
                assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
            assert (a @ a).dtype == torch.bfloat16
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def test_a_one_token_prompt_decodes_like_the_full_forward():
    """AR calibration starts every sequence from one token: that prefill goes through the decoding path (cuDNN
    rejects a key length of 1) and must still equal the full forward."""
    m = _model().eval()
    ids = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(2))
    full = m._project(m.hidden(ids, rope_len=12), None)
    state = m.decode_state(12)
    steps = [m.decode(ids[:, t : t + 1], state) for t in range(12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
