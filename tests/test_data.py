"""Shards, the sequential loader, gradient accumulation and data sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from golf.data import loader as loader_mod
from golf.data.loader import SequentialLoader
from golf.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    SHARD_VERSION,
    ShardError,
    read_header,
    read_shard,
    shard_files,
    write_shard,
)
from golf.data.sources import ShardData
from golf.trainer import TrainConfig

# ---------------------------------------------------------------------------------------------- shards


def _raw_shard(path: Path, header_ints: dict[int, int], tokens: np.ndarray) -> Path:
    header = np.zeros(256, dtype="<i4")
    for i, v in header_ints.items():
        header[i] = v
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes())
    return path


def test_shard_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 65536, size=10_001, dtype=np.int64)
    tokens[:3] = [0, 65535, 0]
    tokens[-1] = 65535
    path = tmp_path / "sub" / "fineweb_train_000000.bin"
    write_shard(path, tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size
    assert read_header(path) == tokens.size
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [SHARD_MAGIC, SHARD_VERSION, tokens.size]
    for mmap in (False, True):
        got = read_shard(path, mmap=mmap)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got.astype(np.int64), tokens)
    assert not list(path.parent.glob("*.tmp")), "temporary file left behind"


def test_shard_round_trip_empty(tmp_path):
    path = tmp_path / "empty.bin"
    write_shard(path, np.zeros(0, dtype=np.uint16))
    assert read_header(path) == 0 and read_shard(path).size == 0


def test_read_header_bad_magic(tmp_path):
    path = _raw_shard(tmp_path / "magic.bin", {0: 12345, 1: 1, 2: 4}, np.arange(4))
    with pytest.raises(ShardError, match="bad magic 12345") as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_read_header_bad_version(tmp_path):
    path = _raw_shard(tmp_path / "version.bin", {0: SHARD_MAGIC, 1: 7, 2: 4}, np.arange(4))
    with pytest.raises(ShardError, match="version 7") as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_read_header_truncated_header(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(np.array([SHARD_MAGIC, SHARD_VERSION, 4], dtype="<i4").tobytes())
    with pytest.raises(ShardError, match="shorter than the 1024-byte header") as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_read_header_size_mismatch(tmp_path):
    path = tmp_path / "cut.bin"
    write_shard(path, np.arange(100))
    path.write_bytes(path.read_bytes()[:-10])  # a truncated download: 5 tokens missing
    with pytest.raises(ShardError, match="size mismatch") as info:
        read_header(path)
    msg = str(info.value)
    assert str(path) in msg and "100 tokens" in msg and str(HEADER_BYTES + 190) in msg
    with pytest.raises(ShardError):
        read_shard(path)


def test_read_header_missing_file(tmp_path):
    path = tmp_path / "absent.bin"
    with pytest.raises(ShardError) as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_write_shard_rejects_bad_input(tmp_path):
    with pytest.raises(ShardError, match="65535") as info:
        write_shard(tmp_path / "big.bin", np.array([1, 65536]))
    assert str(tmp_path / "big.bin") in str(info.value)
    with pytest.raises(ShardError):
        write_shard(tmp_path / "neg.bin", np.array([-1, 2]))
    with pytest.raises(ShardError, match="1-D"):
        write_shard(tmp_path / "2d.bin", np.zeros((2, 3), dtype=np.uint16))
    assert not list(tmp_path.iterdir()), "a rejected shard must not leave a file"


def test_shard_files_sorted_and_missing(tmp_path):
    for i in (2, 0, 1):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", np.arange(3))
    assert [p.name for p in shard_files(str(tmp_path / "fineweb_train_*.bin"))] == [
        f"fineweb_train_{i:06d}.bin" for i in range(3)
    ]
    pattern = str(tmp_path / "fineweb_val_*.bin")
    with pytest.raises(FileNotFoundError, match="fineweb_val_"):
        shard_files(pattern)


# ---------------------------------------------------------------------------------------------- loader

SHARD_SIZES = (1000, 700)


@pytest.fixture
def two_shards(tmp_path) -> tuple[str, np.ndarray]:
    """Two shards with distinct tokens; returns (pattern, their concatenation = one lap of the stream)."""
    rng = np.random.default_rng(1)
    stream = rng.integers(0, 65536, size=sum(SHARD_SIZES), dtype=np.int64)
    stream[: SHARD_SIZES[0]] = np.arange(SHARD_SIZES[0]) + 1  # make positions recognisable
    write_shard(tmp_path / "fineweb_train_000000.bin", stream[: SHARD_SIZES[0]])
    write_shard(tmp_path / "fineweb_train_000001.bin", stream[SHARD_SIZES[0] :])
    return str(tmp_path / "fineweb_train_*.bin"), stream


def _reference_batches(stream: np.ndarray, steps: int, global_tokens: int, seq_len: int, accum: int,
                       rank: int, world: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The records' loader rule on an endlessly repeated ``stream``."""
    local = global_tokens // (world * accum)
    span = local + 1
    out, pos = [], 0
    for _ in range(steps * accum):
        idx = (pos + rank * span + np.arange(span)) % stream.size
        part = stream[idx]
        out.append((part[:-1].reshape(-1, seq_len), part[1:].reshape(-1, seq_len)))
        pos += world * span
    return out


def test_loader_shift_and_wraparound(two_shards):
    pattern, stream = two_shards
    loader = SequentialLoader(pattern)
    G, T, A = 512, 64, 2  # 256-token micro-batches; 8 steps read 8*2*257 = 4112 tokens: over two laps
    ref = _reference_batches(stream, 8, G, T, A, rank=0, world=1)
    for x_ref, y_ref in ref:
        x, y = loader.next_batch(G, T, A)
        assert x.dtype == torch.int64 and x.shape == (G // A // T, T) and y.shape == x.shape
        np.testing.assert_array_equal(x.numpy(), x_ref)
        np.testing.assert_array_equal(y.numpy(), y_ref)
        np.testing.assert_array_equal(x.reshape(-1)[1:].numpy(), y.reshape(-1)[:-1].numpy())
    # First micro-batch: tokens 1..256 as x and 2..257 as y (shard 0 holds 1..1000).
    first_x, first_y = ref[0]
    assert first_x[0, 0] == 1 and first_y[-1, -1] == 257


def test_loader_batch_crossing_shard_boundary(two_shards):
    pattern, stream = two_shards
    loader = SequentialLoader(pattern)
    loader.next_batch(3 * 256, 256, 1)  # 769 tokens: inside shard 0
    x, y = loader.next_batch(3 * 256, 256, 1)  # tokens 769..1537: crosses into shard 1
    lap = np.concatenate([stream, stream])
    np.testing.assert_array_equal(x.reshape(-1).numpy(), lap[769 : 769 + 768])
    np.testing.assert_array_equal(y.reshape(-1).numpy(), lap[770 : 770 + 768])


@pytest.mark.parametrize("g", [1, 2])
def test_loader_world_size_invariance(two_shards, g):
    """Two ranks with grad_accum g see, micro-step by micro-step, rank 0 then rank 1, exactly the
    tokens one rank sees with grad_accum 2g."""
    pattern, _ = two_shards
    G, T, steps = 1024, 64, 5
    single = SequentialLoader(pattern, rank=0, world_size=1)
    ranks = [SequentialLoader(pattern, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(steps):
        one = [single.next_batch(G, T, 2 * g) for _ in range(2 * g)]
        two = []
        for _ in range(g):
            b0, b1 = (ranks[r].next_batch(G, T, g) for r in (0, 1))
            two += [b0, b1]
        assert len(one) == len(two) == 2 * g
        for (x1, y1), (x2, y2) in zip(one, two):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
        tokens_per_step = sum(x.numel() for x, _ in one)
        assert tokens_per_step == G


def test_loader_state_round_trip(two_shards):
    pattern, _ = two_shards
    a = SequentialLoader(pattern)
    for _ in range(3):
        a.next_batch(512, 128, 1)  # 3*513 = 1539 tokens: now in shard 1
    state = a.state_dict()
    assert state == {"file_idx": 1, "pos": 3 * 513 - SHARD_SIZES[0]}
    expected = [a.next_batch(512, 128, 1) for _ in range(4)]  # wraps back to shard 0
    assert a.state_dict()["file_idx"] == 0
    b = SequentialLoader(pattern)
    b.load_state_dict(state)
    for x, y in expected:
        x2, y2 = b.next_batch(512, 128, 1)
        assert torch.equal(x, x2) and torch.equal(y, y2)
    # Restoring an earlier state on the same loader (the warm-up's undo) replays the same stream.
    a.load_state_dict(state)
    assert torch.equal(a.next_batch(512, 128, 1)[0], expected[0][0])


def test_loader_prefetch_changes_no_token(two_shards):
    """A prefetching loader returns the batches a plain one returns. A pending prefetch is not consumed: the
    state it reports, a resume from that state, a change of geometry and calibration's reads all see the
    stream as if nothing had been prefetched."""
    pattern, _ = two_shards
    plain, ahead = SequentialLoader(pattern), SequentialLoader(pattern)
    for _ in range(5):  # 5 * 513 tokens: into shard 1 and back to shard 0
        ahead.prefetch(512, 128, 1)
        ahead.prefetch(512, 128, 1)  # a second call keeps the pending batch
        assert torch.equal(ahead.next_batch(512, 128, 1)[0], plain.next_batch(512, 128, 1)[0])
    ahead.prefetch(512, 128, 1)
    assert ahead.state_dict() == plain.state_dict()
    resumed = SequentialLoader(pattern)
    resumed.load_state_dict(ahead.state_dict())
    x = plain.next_batch(256, 128, 1)[0]  # another geometry: the pending 512-token batch goes back
    assert torch.equal(ahead.next_batch(256, 128, 1)[0], x)
    assert torch.equal(resumed.next_batch(256, 128, 1)[0], x)
    ahead.prefetch(512, 128, 1)
    assert torch.equal(ahead.next_sequences(2, 64), plain.next_sequences(2, 64))
    ahead.prefetch(512, 128, 1)
    ahead.load_state_dict(plain.state_dict())  # the warm-up's undo drops a pending batch
    assert torch.equal(ahead.next_batch(256, 128, 1)[1], plain.next_batch(256, 128, 1)[1])


def test_loader_rejects_indivisible_batch(two_shards):
    pattern, _ = two_shards
    loader = SequentialLoader(pattern, world_size=2)
    with pytest.raises(ValueError, match="not a multiple of train.seq_len=64"):
        loader.next_batch(1000, 64, 1)


def test_loader_skips_an_empty_shard(tmp_path):
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(1, 101))
    write_shard(tmp_path / "fineweb_train_000001.bin", np.zeros(0, dtype=np.uint16))
    loader = SequentialLoader(str(tmp_path / "fineweb_train_*.bin"))
    loader.next_batch(64, 64, 1)  # tokens 1..65
    x, _ = loader.next_batch(64, 64, 1)  # 66..100, then (the empty shard skipped) 1..30
    np.testing.assert_array_equal(x.reshape(-1).numpy(), np.r_[np.arange(66, 101), np.arange(1, 30)])


def test_loader_all_empty_shards_raise(tmp_path, monkeypatch):
    for i in range(2):
        write_shard(tmp_path / f"fineweb_train_{i:06d}.bin", np.zeros(0, dtype=np.uint16))
    calls = 0
    real = loader_mod.read_shard

    def guarded(path, *args, **kwargs):  # turns the endless loop into a RuntimeError
        nonlocal calls
        calls += 1
        if calls > 100:
            raise RuntimeError("TokenStream.take kept cycling over empty shards")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loader_mod, "read_shard", guarded)
    with pytest.raises(ValueError, match="training shards are empty"):
        SequentialLoader(str(tmp_path / "fineweb_train_*.bin")).next_batch(64, 64, 1)


# ------------------------------------------------------------------------------------------ grad_accum


@pytest.mark.parametrize(("world", "accum"), [(1, 8), (2, 4), (4, 2), (8, 1)])
def test_grad_accum_records_rule(world, accum):
    cfg = TrainConfig(batch_tokens=524_288, seq_len=1024, max_micro_batch_tokens=None)
    assert cfg.grad_accum(world) == accum
    assert cfg.batch_tokens // (world * accum) == 65536 * 8 // (world * accum)


@pytest.mark.parametrize(
    ("batch", "seq", "cap", "world", "accum"),
    [
        (524_288, 1024, 131_072, 1, 4),    # 512 sequences per rank, at most 128 per micro-step
        (524_288, 1024, 131_072, 2, 2),
        (524_288, 1024, 131_072, 8, 1),    # 64 sequences fit in one micro-step
        (524_288, 1024, 10**9, 1, 1),
        (12 * 256, 256, 5 * 256, 1, 3),    # 12 sequences, cap 5: 12/2=6 > 5, 12/3=4 fits
        (12 * 256, 256, 5 * 256 + 255, 1, 3),  # the cap counts whole sequences only
        (7 * 128, 128, 2 * 128, 1, 7),     # 7 is prime: one sequence per micro-step
        (8192, 256, 100, 1, 32),           # a cap below one sequence still allows one sequence
        (6 * 64 * 3, 64, 6 * 64, 3, 1),    # world sizes that do not divide 8 are fine with a cap
    ],
)
def test_grad_accum_cap_rule(batch, seq, cap, world, accum):
    cfg = TrainConfig(batch_tokens=batch, seq_len=seq, max_micro_batch_tokens=cap)
    assert cfg.grad_accum(world) == accum


def test_grad_accum_errors():
    with pytest.raises(ValueError, match=r"train.batch_tokens=1000 must be a positive multiple of world_size=1"):
        TrainConfig(batch_tokens=1000, seq_len=64).grad_accum(1)
    with pytest.raises(ValueError, match="positive multiple"):
        TrainConfig(batch_tokens=1024, seq_len=1024).grad_accum(2)  # zero sequences per rank
    with pytest.raises(ValueError, match="set train.max_micro_batch_tokens"):
        TrainConfig(batch_tokens=3 * 8 * 1024, seq_len=1024, max_micro_batch_tokens=None).grad_accum(3)
    with pytest.raises(ValueError, match="world_size=2 does not fit"):
        # 6 sequences per rank cannot be split into 8 // 2 = 4 micro-steps
        TrainConfig(batch_tokens=12 * 1024, seq_len=1024, max_micro_batch_tokens=None).grad_accum(2)


# --------------------------------------------------------------------------------------------- sources


def test_shard_data_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    src = ShardData(path=str(missing), tokenizer=str(tmp_path / "tok.model"), make_hint="make the-data --now")
    with pytest.raises(FileNotFoundError) as info:
        src.prepare()
    msg = str(info.value)
    assert str(missing) in msg and "make the-data --now" in msg


def test_shard_data_missing_shards(tmp_path):
    (tmp_path / "d").mkdir()
    write_shard(tmp_path / "d" / "fineweb_train_000000.bin", np.arange(10))
    src = ShardData(path=str(tmp_path / "d"), tokenizer=str(tmp_path / "tok.model"), make_hint="HINT")
    with pytest.raises(FileNotFoundError) as info:
        src.prepare()
    msg = str(info.value)
    assert "validation" in msg and str(tmp_path / "d" / "fineweb_val_*.bin") in msg and "HINT" in msg


def test_shard_data_missing_tokenizer_and_success(tmp_path):
    d = tmp_path / "d"
    write_shard(d / "fineweb_train_000000.bin", np.arange(10))
    write_shard(d / "fineweb_val_000000.bin", np.arange(10))
    tok = tmp_path / "tok.model"
    src = ShardData(path=str(d), tokenizer=str(tok), vocab_size=1024, make_hint="python make_tok.py")
    with pytest.raises(FileNotFoundError) as info:
        src.prepare()
    msg = str(info.value)
    assert str(tok) in msg and "python make_tok.py" in msg and "tokenizer" in msg
    tok.write_bytes(b"x")
    paths = src.prepare()
    assert paths.train_pattern == str(d / "fineweb_train_*.bin") and paths.val_pattern == str(d / "fineweb_val_*.bin")
    assert paths.tokenizer == tok and paths.vocab_size == 1024
    assert len(shard_files(paths.train_pattern)) == 1


def test_shard_data_default_hint_names_commands(tmp_path):
    src = ShardData(path=str(tmp_path / "x"), tokenizer=str(tmp_path / "t.model"))
    with pytest.raises(FileNotFoundError, match="scripts/download_data.py"):
        src.prepare()
