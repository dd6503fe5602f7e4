"""scripts/profile_step.py's idle-time analysis on a hand-made kernel timeline."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from scripts.profile_step import idle_gaps


def _kernel(name: str, start: float, end: float, device=torch.autograd.DeviceType.CUDA):
    return SimpleNamespace(name=name, device_type=device, time_range=SimpleNamespace(start=start, end=end))


def test_idle_gaps_count_only_time_no_kernel_covers_by_the_kernel_that_ends_them():
    events = [_kernel("a", 0, 10), _kernel("b", 4, 12),       # overlapping (two streams): no gap
              _kernel("c", 15, 20),                           # 3 us after b ends
              _kernel("host", 20, 500, torch.autograd.DeviceType.CPU),  # not a kernel
              _kernel("a", 30, 31), _kernel("c", 31, 40)]     # 10 us before a, then back to back
    prof = SimpleNamespace(events=lambda: events)
    by_next, gaps = idle_gaps(prof)
    assert sorted(gaps) == [3, 10]
    assert {k: tuple(v) for k, v in by_next.items()} == {"c": (3, 1), "a": (10, 1)}


def test_host_ops_are_charged_with_the_long_gaps_they_overlap():
    from scripts.profile_step import host_during_gaps

    cpu = torch.autograd.DeviceType.CPU
    events = [_kernel("k", 0, 10), _kernel("k", 50, 60), _kernel("k", 500, 510),   # gaps of 40 us and 440 us
              _kernel("loader", 0, 300, cpu), _kernel("guards", 300, 520, cpu)]
    for i, e in enumerate(events):
        e.thread = i
    overlap, total = host_during_gaps(SimpleNamespace(events=lambda: events))
    assert total == 440  # the 40 us gap is under the 100 us floor
    assert dict(overlap) == {("loader", 3): 240, ("guards", 4): 200}
