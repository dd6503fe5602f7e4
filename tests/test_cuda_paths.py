"""Paths that only run on a GPU (skipped without CUDA): AR calibration through the cuDNN-configured model in
bf16, Hessians under bf16 autocast, and the mixed allocator fed CUDA tensors."""

from __future__ import annotations

import pytest
import torch

from golf.calibration.generate import generate, generate_batch
from golf.quant.fit import ByteBudget, allocate_bits
from golf.quant.quantizer import Quantizer
from tests.test_calibration import _model, check_hessians_exact_under_bf16
from tests.test_fit import NonZeroBytes, _state

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_ar_generation_runs_through_a_cudnn_model_in_bf16():
    """One-token prompts and every cache length: cuDNN rejects a key length of 1 and would build a graph per
    length, so decoding must take the flash (or math) kernel whatever the model's attn_kernel."""
    m = _model(attn_kernel="cudnn").to(CUDA)
    a = generate_batch(m, 4, 64, 0.8, seed=7, batch_index=0, device=CUDA, autocast_dtype=torch.bfloat16)
    b = generate_batch(m, 4, 64, 0.8, seed=7, batch_index=0, device=CUDA, autocast_dtype=torch.bfloat16)
    assert a.shape == (4, 64) and int(a.max()) < 64 and torch.equal(a, b)


def test_graph_decoding_replays_the_static_step():
    """One static step captured in a CUDA graph and replayed gives the tokens of running that step eagerly
    (fp32, same seed), and decoding in bf16 through the graph runs."""
    m = _model().to(CUDA)
    static = generate(m, [(0, 4), (3, 4)], 96, 0.8, seed=7, device=CUDA, mode="static")
    graph = generate(m, [(0, 4), (3, 4)], 96, 0.8, seed=7, device=CUDA, mode="graph")
    assert torch.equal(graph, static)
    bf16 = generate(m, [(0, 8)], 96, 0.8, seed=7, device=CUDA, autocast_dtype=torch.bfloat16, mode="graph")
    assert bf16.shape == (8, 96) and int(bf16.max()) < 64


def test_graph_decoding_is_faster_than_eager():
    """The point of the graph: a decoding step of a small model is launch-bound, so replaying it must beat
    eager decoding by a wide margin (on an H100 the eager #1019 model took ~19 ms per position)."""
    import time

    m = _model().to(CUDA)

    def seconds(mode: str) -> float:
        generate(m, [(0, 8)], 64, 0.8, seed=1, device=CUDA, autocast_dtype=torch.bfloat16, mode=mode)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        generate(m, [(0, 8)], 256, 0.8, seed=1, device=CUDA, autocast_dtype=torch.bfloat16, mode=mode)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    eager, graph = seconds("eager"), seconds("graph")
    assert graph < eager / 2, f"graph {graph:.3f}s vs eager {eager:.3f}s"


def test_hessians_are_float32_under_bf16_autocast():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # train.tf32=false: then exact
    try:
        check_hessians_exact_under_bf16(CUDA)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_the_allocator_takes_cuda_tensors():
    state = _state()
    hessians = {n: torch.eye(128) * (1 + i) for i, n in enumerate(sorted(state))}
    quantizer = Quantizer(matrix_bits=5, method="lite", keep_float_max_numel=0)
    codec = NonZeroBytes()
    budget = ByteBudget(int(ByteBudget(10**9, 0, codec).total(quantizer.quantize(state)) * 1.12), 0, codec)
    cpu_bits, _ = allocate_bits(state, hessians, quantizer, budget, base_bits=5, max_bits=7, headroom=0.0)
    gpu_bits, _ = allocate_bits({n: t.to(CUDA) for n, t in state.items()}, {n: h.to(CUDA) for n, h in hessians.items()},
                                quantizer, budget, base_bits=5, max_bits=7, headroom=0.0)
    assert gpu_bits == cpu_bits


def test_few_query_scores_are_fp32_from_bf16_operands_on_cuda():
    """The fp32-output bmm (eager and CUDA-graph decoding) and the upcast matmul (inside torch.compile) agree
    with an fp32 reference within 0.02 at logits up to ~18, head-major and token-major K/V alike."""
    from golf.models.attention import attend_masked, attend_tail
    g = torch.Generator().manual_seed(0)
    q = (torch.nn.functional.normalize(torch.randn(2, 16, 8, 64, generator=g), dim=-1) * 32).bfloat16().to(CUDA)
    k = (torch.nn.functional.normalize(torch.randn(2, 48, 4, 64, generator=g), dim=-1) * 8).bfloat16().to(CUDA)
    v = torch.randn(2, 48, 4, 64, generator=g).bfloat16().to(CUDA)
    allowed = torch.arange(48, device=CUDA)[None, :] <= torch.arange(32, 48, device=CUDA)[:, None]
    ref = torch.nn.functional.scaled_dot_product_attention(
        *(t.float().transpose(1, 2) for t in (q, k, v)), attn_mask=allowed, enable_gqa=True).transpose(1, 2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = attend_tail(q, k, v)
        compiled = torch.compile(attend_tail, dynamic=False)(q, k, v)
        one = attend_masked(q[:, -1:], k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous(),
                            torch.ones(48, dtype=torch.bool, device=CUDA))
    for out in (eager, compiled):
        assert (out.float() - ref).abs().max() < 0.02
    assert (one.float() - ref[:, -1:]).abs().max() < 0.02
