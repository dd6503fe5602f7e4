"""The quantized-state form shared by all quantizers, and its generic dequantizer.

A quantized state is ``(tensors, meta)``: ``tensors`` maps storage keys to tensors; ``meta`` maps
each original parameter name to a record saying how to rebuild it:
  {"scheme": "per_row"|"per_tensor", "q": key, "scale": key, "dtype": original dtype, "bits": b}
  {"scheme": "passthrough", "data": key, "dtype": original dtype}
A per_row record may carry ``"lqer": {"A": key, "sA": key, "B": key, "sB": key}``: a low-rank correction added back
(golf.quant.lqer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from golf.quant.grid import dequantize_rows
from golf.quant.lqer import correction


@dataclass
class QuantizedState:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, dict] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    def add_passthrough(self, name: str, t: Tensor, store_dtype: torch.dtype | None = None) -> None:
        stored = t if store_dtype is None else t.to(store_dtype)
        self.tensors[name] = stored.contiguous()
        self.meta[name] = {"scheme": "passthrough", "data": name, "dtype": _dtype_name(t.dtype)}

    def add_correction(self, name: str, parts: dict[str, Tensor]) -> None:
        """Attach LQER's stored factors (keys A, sA, B, sB) to the quantized ``name``."""
        keys = {k: f"{name}.lqer_{k}" for k in parts}
        for k, t in parts.items():
            self.tensors[keys[k]] = t.contiguous()
        self.meta[name]["lqer"] = keys

    def add_quantized(self, name: str, scheme: str, q: Tensor, scale: Tensor, dtype: torch.dtype, bits: int) -> None:
        self.tensors[name + ".q"] = q
        self.tensors[name + ".scale"] = scale
        self.meta[name] = {"scheme": scheme, "q": name + ".q", "scale": name + ".scale",
                           "dtype": _dtype_name(dtype), "bits": bits}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"artifact metadata names unknown dtype {name!r}")
    return dt


def dequantize_state(tensors: dict[str, Tensor], meta: dict[str, dict]) -> dict[str, Tensor]:
    """Rebuild a float state dict from a quantized state (the artifact's own metadata suffices)."""
    out: dict[str, Tensor] = {}
    for name, m in meta.items():
        scheme = m.get("scheme")
        if scheme == "passthrough":
            out[name] = tensors[m["data"]].to(_dtype(m["dtype"])).contiguous()
        elif scheme in ("per_row", "per_tensor"):
            w = dequantize_rows(tensors[m["q"]], tensors[m["scale"]])
            if "lqer" in m:
                w = w + correction({k: tensors[key] for k, key in m["lqer"].items()})
            out[name] = w.to(_dtype(m["dtype"])).contiguous()
        else:
            raise ValueError(f"artifact metadata for {name!r} has unknown scheme {scheme!r}")
    return out
