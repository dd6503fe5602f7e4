"""CUDA graphs in training (``train.compile_mode=reduce-overhead`` or ``max-autotune``): the gradients stay in
zeroed ``.grad`` buffers, so backward adds each micro-step's graph output into memory no replay overwrites; on a
GPU the step then replays graphs and trains as the default mode does."""

from __future__ import annotations

import pytest
import torch

from golf.dist import DistInfo
from golf.logging import NullBackend
from golf.optim.muon_adam import MuonAdam
from golf.optim.schedule import WarmdownSchedule
from golf.trainer import TrainConfig, graph_hooks, train
from tests.helpers import RandomTokens
from tests.test_optim import _small_model


def test_only_the_graph_modes_on_cuda_keep_gradient_buffers():
    assert TrainConfig(compile_mode="reduce-overhead").cudagraphs and TrainConfig(compile_mode="max-autotune").cudagraphs
    assert not TrainConfig().cudagraphs and not TrainConfig(compile_mode="max-autotune-no-cudagraphs").cudagraphs
    graphs = TrainConfig(compile_mode="reduce-overhead")
    for cfg, device in ((TrainConfig(), torch.device("cuda")), (graphs, torch.device("cpu"))):
        model = _small_model()
        graph_hooks(model, MuonAdam(model), cfg, device)
        assert all(p.grad is None for p in model.parameters())


def test_gradient_buffers_accumulate_in_place_and_are_zeroed_not_freed():
    model = _small_model()
    start, zero_grad = graph_hooks(model, MuonAdam(model), TrainConfig(compile_mode="reduce-overhead"),
                                    torch.device("cuda"))  # the device only selects the behaviour; the model is on CPU
    buffers = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and not g.any() for g in buffers.values())
    x, y = RandomTokens().next_batch(256, 32, 2)
    start()
    model(x, y).backward()
    once = {n: p.grad.clone() for n, p in model.named_parameters()}
    zero_grad()
    assert all(p.grad is buffers[n] and not p.grad.any() for n, p in model.named_parameters())
    for _ in range(2):
        start()
        model(x, y).backward()
    for n, p in model.named_parameters():
        assert p.grad is buffers[n], n
        torch.testing.assert_close(p.grad, 2 * once[n], rtol=1e-5, atol=1e-7, msg=n)


def _train_on_cuda(mode: str):
    from golf.stages.training import compile_model

    torch.manual_seed(0)
    model = _small_model(num_layers=3, model_dim=64).cuda().cast_for_training(torch.bfloat16)
    opt = MuonAdam(model)
    cfg = TrainConfig(batch_tokens=1024, seq_len=64, max_micro_batch_tokens=256, max_wallclock_seconds=0,
                      iterations=4, warmup_steps=3, compile=True, compile_mode=mode, device="cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = train(model=model, train_model=compile_model(model, cfg), optimizer=opt, schedule=WarmdownSchedule(),
                    loader=RandomTokens(device="cuda"), cfg=cfg, dist_info=DistInfo(0, 1, 0, torch.device("cuda")),
                    log=lambda *_: None, metrics=NullBackend(), autocast_dtype=torch.bfloat16)
    graph_launches = sum(e.count for e in prof.key_averages() if "cudaGraphLaunch" in e.key)
    return out, graph_launches


@pytest.mark.gpu
def test_reduce_overhead_replays_cuda_graphs_and_trains_as_the_default_mode():
    plain, plain_launches = _train_on_cuda("default")
    graphs, launches = _train_on_cuda("reduce-overhead")
    assert plain_launches == 0 and plain.cudagraph_skips is None
    assert graphs.cudagraph_skips == 0
    assert launches >= 2 * 4 * 4  # forward and backward of 4 micro-steps in each of the 4 training steps
    torch.testing.assert_close(torch.tensor(graphs.losses), torch.tensor(plain.losses), rtol=2e-3, atol=0)
