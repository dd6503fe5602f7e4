"""Depth recurrence (#1394 on): the order in which the physical blocks run, some of them more than once.

With ``loop = (s, e)`` and ``repeats = n`` the blocks run as 0..s-1, then s..e (n + 1) times, then e+1..L-1: the
records' ``NUM_LOOPS=2`` over 3..5 gives 17 virtual layers from 11. The first half of that order is the U-Net's
encoder (each pushes a skip) and the second its decoder (each pops one), so the skips pair virtual positions, as
in the records. Every option indexed by layer (LN scale, XSA-last-n, value-embedding layers, parallel lanes) keeps
its physical index: a looped block is the same block each time, and the optimizer sees its matrices once.
"""

from __future__ import annotations

from collections.abc import Sequence


def check_loop(loop: Sequence[int] | None, repeats: int, num_layers: int) -> tuple[int, int] | None:
    """The loop span as (start, end), inclusive, or None for no recurrence; one-line errors naming the key."""
    if loop is None or repeats == 0:
        if repeats < 0:
            raise ValueError(f"model.loop_repeats must be >= 0 (extra passes over model.loop_layers), got {repeats}")
        return None
    if len(loop) != 2:
        raise ValueError(f"model.loop_layers must be [first, last] (inclusive), got {list(loop)}")
    s, e = (int(i) + num_layers if int(i) < 0 else int(i) for i in loop)
    if not 0 <= s <= e < num_layers:
        raise ValueError(f"model.loop_layers={list(loop)} must name layers first <= last in 0..{num_layers - 1}")
    if repeats < 0:
        raise ValueError(f"model.loop_repeats must be >= 0, got {repeats}")
    return s, e


def layer_order(num_layers: int, loop: tuple[int, int] | None, repeats: int, looping: bool = True) -> list[int]:
    """The physical block index of each virtual layer."""
    if loop is None or not looping:
        return list(range(num_layers))
    s, e = loop
    return list(range(s)) + list(range(s, e + 1)) * (repeats + 1) + list(range(e + 1, num_layers))


def encoder_length(order: Sequence[int]) -> int:
    """How many virtual layers form the encoder (they push U-Net skips): the first half, rounded down."""
    return len(order) // 2
