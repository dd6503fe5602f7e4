"""No quantization: every tensor is stored as-is (or cast to ``store_dtype``), for ablations."""

from __future__ import annotations

import torch
from torch import Tensor

from golf.quant.format import QuantizedState
from golf.quant.quantizer import FitOptions


class NoQuant:
    fit = FitOptions()   # nothing to fit: no grid, no floor, no bits
    needs_hessians = False

    def __init__(self, *, store_dtype: str | None = None):
        self.store_dtype = getattr(torch, store_dtype) if store_dtype else None

    def quantize(self, state_dict: dict[str, Tensor], hessians=None, bits=None, clips=None) -> QuantizedState:
        out = QuantizedState(stats={"params": 0, "quantized_params": 0})
        for name, t in state_dict.items():
            t = t.detach().cpu().contiguous()
            out.stats["params"] += t.numel()
            out.add_passthrough(name, t, self.store_dtype if t.is_floating_point() else None)
        out.stats["payload_bytes"] = sum(v.numel() * v.element_size() for v in out.tensors.values())
        return out
