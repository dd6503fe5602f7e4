"""The sampling loaders (golf.data.sampling): #1394's shuffled windows and #1060's coprime-stride mix, checked by
what they must do: every window a contiguous slice of a shard, each visited once per pass, the same draws from the
same seed and after a prefetch, ranks that split the data, and (coprime) the same windows per step at any world
size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from golf.data.sampling import CoprimeLoader, ShuffledLoader, fnv_seed
from golf.data.shards import write_shard
from tests.test_pipeline import FAST, run_in_process

SEQ = 8


@pytest.fixture
def shards(tmp_path) -> str:
    """Four shards whose tokens are their own positions plus the shard's offset: a window's tokens name its place."""
    for i, n in enumerate((203, 150, 97, 260)):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", np.arange(n) + 1000 * i)
    return str(tmp_path / "fineweb_train_*.bin")


def _places(x: np.ndarray, y: np.ndarray) -> list[tuple[int, int]]:
    """(shard, start) of each row, checking the row is a contiguous slice and y is x shifted by one."""
    rows = np.concatenate([x, y[:, -1:]], axis=1)
    assert (np.diff(rows, axis=1) == 1).all() and (y[:, :-1] == x[:, 1:]).all()
    return [(int(r[0]) // 1000, int(r[0]) % 1000) for r in rows]


def _steps(loader, n: int, rows: int = 4, accum: int = 1) -> list[tuple[int, int]]:
    out = []
    for _ in range(n * accum):
        x, y = loader.next_batch(rows * SEQ * loader.world_size * accum, SEQ, accum)
        out += _places(x.numpy(), y.numpy())
    return out


def test_shuffled_takes_every_window_of_its_shards_once_per_pass(shards):
    ranks = [ShuffledLoader(shards, rank=r, world_size=2) for r in (0, 1)]
    per_rank = [_steps(loader, 20) for loader in ranks]  # 80 windows per rank, past the end of a pass
    assert {s for s, _ in per_rank[0]} == {0, 2} and {s for s, _ in per_rank[1]} == {1, 3}  # sorted[rank::2]
    a = ranks[0]
    n_windows = [s.size for s in a.starts]
    first = per_rank[0][: sum(n_windows)]
    assert len(set(first)) == len(first) == sum(n_windows)  # one pass: no window twice
    for si, shard in ((0, 203), (2, 97)):  # windows of a shard share one phase and fit in it
        starts = sorted(p for s, p in first if s == si)
        assert len({p % SEQ for p in starts}) == 1 and starts[-1] + SEQ + 1 <= shard


def test_shuffled_is_seeded_and_prefetch_does_not_change_the_draws(shards):
    plain, ahead = ShuffledLoader(shards), ShuffledLoader(shards)
    want = _steps(plain, 6)
    got = []
    for _ in range(6):
        ahead.prefetch(4 * SEQ, SEQ, 1)
        state = ahead.state_dict()
        ahead.load_state_dict(state)  # a restore (as after warm-up) rewinds to before the prefetched batch
        x, y = ahead.next_batch(4 * SEQ, SEQ, 1)
        got += _places(x.numpy(), y.numpy())
    assert got == want
    assert _steps(ShuffledLoader(shards, seed=5), 6) != want  # another seed, another order


def test_coprime_visits_every_block_once_per_cursor_pass(shards):
    loader = CoprimeLoader(shards, seed=3)
    first = loader._take(0, 1, SEQ)
    bc, phase = int(loader.count[0]), int(loader.phase[0])  # shard 0: (203 - 1 - phase) // 8 blocks
    assert bc == (203 - 1 - phase) // SEQ and 1 < loader.stride[0] < bc or bc <= 2
    one_pass = first + loader._take(0, bc - 1, SEQ)
    assert sorted(p for _, p in one_pass) == [phase + SEQ * b for b in range(bc)]  # each block once
    loader._take(0, 1, SEQ)  # the next take starts a new pass: a new phase, start and stride
    assert loader.next[0] == 1


def test_coprime_draws_the_same_windows_per_step_at_any_world_size(shards):
    one = CoprimeLoader(shards, seed=1)
    alone = _steps(one, 5, rows=2, accum=4)  # 1 rank, 4 micro-steps of 2 rows
    four = [CoprimeLoader(shards, seed=1, rank=r, world_size=4) for r in range(4)]
    for step in range(5):
        mine = [set(_steps(loader, 1, rows=2)) for loader in four]
        assert set().union(*mine) == set(alone[8 * step : 8 * (step + 1)])


def test_coprime_seed_is_the_records_path_hash():
    """#1060 seeds its generator with FNV-1a (basis 0) over the shard paths: for the challenge's 80 sp1024 shards
    under ./data/datasets/fineweb10B_sp1024 that is 17327015384875681392 (computed from the record's rule)."""
    files = [Path(f"data/datasets/fineweb10B_sp1024/fineweb_train_{i:06d}.bin") for i in range(80)]
    assert fnv_seed(files) == 17327015384875681392


@pytest.mark.parametrize("loader", ["shuffled", "coprime"])
def test_a_run_trains_with_each_loader(loader, smoke_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    r = run_in_process([*FAST, "logger=none", "train.iterations=3", "train.warmup_steps=1", f"loader={loader}"], tmp_path)
    assert r["status"] == "ok" and r["steps"] == 3 and r["train_loss"][-1] < r["train_loss"][0] + 1
