"""golf.dist across 2 gloo ranks: one collective gives every rank the mean loss, the OR of the flags and the
largest clock, so the schedule, late QAT and the stop read the same numbers on every rank."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from golf.dist import reduce_step
from tests.helpers import free_port


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    got = reduce_step([2.0, 4.0][rank], [rank == 1, False], torch.device("cpu"), [1000.0, 1250.5][rank])
    torch.save(got, f"{out}.{rank}")
    dist.destroy_process_group()
    os._exit(0)  # skip interpreter teardown: gloo's threads can abort it (SIGABRT, 'terminate called without an active exception')


def test_reduce_step_agrees_on_mean_or_and_the_largest_clock(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "r")), nprocs=2)
    for rank in range(2):
        assert torch.load(tmp_path / f"r.{rank}") == (3.0, [True, False], 1250.5)

