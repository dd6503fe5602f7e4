"""Hessians of the block matrices' inputs: H = (1/N) sum_t x_t x_tᵀ over every calibration token, for each
matrix GPTQ quantizes, and of the final hidden state (the output head's input), from forward hooks on the model
itself (its matrices keep per-layer names; the records rebuilt an unbanked replica for this). Q, K and V of a
layer read the same input, so each distinct input is multiplied once. Sums and token counts are all-reduced over ranks before dividing.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import Tensor, nn


def head_name(model: nn.Module) -> str | None:
    """The output head's matrix (the tied embedding, else ``lm_head``): its input is the final hidden state, whose
    Hessian GPTQ on the embedding uses (#1394)."""
    if not hasattr(model, "tok_emb"):
        return None
    return "tok_emb.weight" if getattr(model, "lm_head", None) is None else "lm_head.weight"


def matrix_names(model: nn.Module) -> dict[nn.Module, str]:
    """The quantized linears of ``model`` by module, named as in its state dict."""
    wanted = {id(m) for m in model.quantized_linears()}
    return {m: f"{name}.weight" for name, m in model.named_modules() if id(m) in wanted}


@torch.inference_mode()
def collect_hessians(model: nn.Module, batches: Iterable[Tensor], *, autocast_dtype: torch.dtype | None = None,
                     world_size: int = 1) -> tuple[dict[str, Tensor], int]:
    """(Hessian per matrix name, calibration tokens over all ranks)."""
    names = matrix_names(model)
    sums: dict[str, Tensor] = {}
    last: list = [None, None]  # the last input tensor (kept alive, so identity is meaningful) and its product

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], _out) -> None:
        x = inputs[0]
        if x is not last[0]:  # Q, K and V are called one after the other on the same tensor: one product
            # Not under the forward's bf16 autocast (1% entrywise error, above GPTQ's damping). TF32 follows
            # train.tf32: ~1e-4 relative, and exact fp32 would cost ~10 s of #1089's 14 s reserve on an H100.
            with torch.autocast(x.device.type, enabled=False):
                flat = x.reshape(-1, x.size(-1)).float()
                last[0], last[1] = x, flat.T @ flat
        name = names[module]
        sums[name] = sums[name] + last[1] if name in sums else last[1].clone()

    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    model.eval()
    tokens = 0
    device = next(model.parameters()).device
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    head = head_name(model)
    try:
        for batch in batches:
            with ctx:
                h = model.hidden(batch.to(device))
            if head is not None:
                flat = h.reshape(-1, h.size(-1)).float()
                sums[head] = sums[head] + flat.T @ flat if head in sums else flat.T @ flat
            tokens += batch.numel()
    finally:
        last[0] = last[1] = None
        for h in handles:
            h.remove()
        model.train(was_training)
    count = torch.tensor(float(tokens), device=device, dtype=torch.float64)
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        for name in sorted(set(names.values()) | ({head} if head else set())):
            if name not in sums:  # a rank without batches still takes part in every reduction
                sums[name] = torch.zeros(_width(model, name), _width(model, name), device=device)
            dist.all_reduce(sums[name], op=dist.ReduceOp.SUM)
        dist.all_reduce(count, op=dist.ReduceOp.SUM)
    total = int(count.item())
    if total == 0:
        raise ValueError("calibration produced no tokens (calibration.sequences = 0?)")
    return {name: h / total for name, h in sums.items()}, total


def _width(model: nn.Module, name: str) -> int:
    return model.get_parameter(name).shape[1]
