"""torch.distributed helpers: set-up from torchrun's environment, rank queries, seeding."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
        return torch.device("cuda", local_rank)
    if requested == "cpu":
        return torch.device("cpu")
    raise ValueError(f"train.device must be auto, cuda or cpu, got {requested!r}")


COLLECTIVE_TIMEOUT = timedelta(minutes=30)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        # Rank 0 alone quantizes and compresses (minutes with GPTQ and brotli-11 pruning) while the others
        # wait at a barrier, which can outlast NCCL's default 10-minute timeout.
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT, **kwargs)
    return DistInfo(rank, world, local_rank, dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def reduce_step(loss: float, flags: list[bool], device: torch.device, elapsed_ms: float = 0.0
                ) -> tuple[float, list[bool], float]:
    """The mean of a per-rank loss, the OR of per-rank flags and the largest per-rank elapsed time, in one
    all-reduce (each rank's clock in its own slot): every rank then runs the schedule, late QAT and the stop
    on the same clock."""
    if not (dist.is_available() and dist.is_initialized()):
        return loss, list(flags), elapsed_ms
    world, k = dist.get_world_size(), len(flags)
    t = torch.zeros(1 + k + world, dtype=torch.float64, device=device)
    t[0] = loss
    t[1 : 1 + k] = torch.tensor([float(f) for f in flags], dtype=torch.float64)
    t[1 + k + dist.get_rank()] = elapsed_ms
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    vals = t.tolist()
    return vals[0] / world, [v > 0 for v in vals[1 : 1 + k]], max(vals[1 + k :])


def guard_stops(mine: bool, device: torch.device, world_size: int) -> bool:
    """A time guard's decision, the same on every rank (any rank out of time stops them all before the next part:
    ranks stopping at different parts would pair mismatched collectives)."""
    if world_size == 1:
        return mine
    return reduce_step(0.0, [mine], device)[1][0]


def sync_and_step(opt: torch.optim.Optimizer, params: list[torch.Tensor], grad_clip: float, world_size: int) -> None:
    """A data-parallel step whose ranks weighted their losses by their share: gradients summed over ranks in one
    all-reduce (a parameter without one counts as zeros), clipped, applied."""
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.float().flatten() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for p, g in zip(params, flat.split([q.numel() for q in params])):
            p.grad = g.view_as(p).to(p.dtype)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()


def seed_all(seed: int) -> None:
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
