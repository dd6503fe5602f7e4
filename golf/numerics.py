"""Exact float32 for GPTQ and the bit allocator. Training sets bf16 autocast and TF32 matmuls (10-bit
mantissas); inside ``exact_fp32`` neither applies, whatever the caller set. (The Hessian products leave
autocast but keep TF32 per train.tf32: see golf.calibration.hessians.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def exact_fp32(device_type: str) -> Iterator[None]:
    """Autocast off and float32 matmuls at full precision (no TF32) inside; both restored on exit."""
    precision = torch.get_float32_matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
