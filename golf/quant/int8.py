"""The baseline's int8 export (``int8_clean_per_row_v1``, techniques.md §4.1).

Float tensors with more than ``keep_float_max_numel`` elements: 2-D ones per row at the
``clip_percentile`` quantile of |w| (scale fp16, clamp 1/127), others with one fp32 scale. Smaller
float tensors pass through as fp16, or fp32 when their name matches a control pattern. Non-float
tensors pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from golf.quant.format import QuantizedState
from golf.quant.grid import quantize_rows, quantize_tensor, row_clip


class Int8PerRow:
    def __init__(
        self,
        *,
        clip_percentile: float = 0.9999984,
        keep_float_max_numel: int = 65_536,
        keep_fp32_patterns: Sequence[str] = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight"),
        bits: int = 8,
    ):
        if not 0 < clip_percentile <= 1:
            raise ValueError(f"quant.clip_percentile must be in (0, 1], got {clip_percentile}")
        self.clip_percentile = clip_percentile
        self.keep_float_max_numel = keep_float_max_numel
        self.keep_fp32_patterns = tuple(keep_fp32_patterns)
        self.bits = bits
        self.qmax = 2 ** (bits - 1) - 1

    def quantize(self, state_dict: dict[str, Tensor]) -> QuantizedState:
        out = QuantizedState(stats={"params": 0, "quantized_params": 0, "payload_bytes": 0})
        for name, t in state_dict.items():
            t = t.detach().cpu().contiguous()
            out.stats["params"] += t.numel()
            if not t.is_floating_point():
                out.add_passthrough(name, t)
            elif t.numel() <= self.keep_float_max_numel:
                keep32 = any(p in name for p in self.keep_fp32_patterns)
                out.add_passthrough(name, t, torch.float32 if keep32 else torch.float16)
            elif t.ndim == 2:
                q, s = quantize_rows(t, row_clip(t, self.clip_percentile), self.qmax)
                out.add_quantized(name, "per_row", q, s, t.dtype, self.bits)
                out.stats["quantized_params"] += t.numel()
            else:
                q, s = quantize_tensor(t, self.clip_percentile, self.qmax)
                out.add_quantized(name, "per_tensor", q, s, t.dtype, self.bits)
                out.stats["quantized_params"] += t.numel()
        out.stats["payload_bytes"] = sum(v.numel() * v.element_size() for v in out.tensors.values())
        return out
