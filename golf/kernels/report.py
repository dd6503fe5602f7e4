"""Which kernel runs for each family of a built model, and where a faster one exists but does not run, why and
the line that installs it: printed at the start of a run and kept in results.json (``kernels``)."""

from __future__ import annotations

import torch
from torch import nn

from golf.kernels import TRITON, flash4


def _triton(mode: str, cuda: bool, what: str) -> str:
    if mode == "torch":
        return f"PyTorch reference ({what}; model.kernels leaves it to PyTorch)"
    if not cuda:
        return f"PyTorch reference ({what}; golf's Triton kernel runs on CUDA tensors only)"
    if not TRITON:
        return f"PyTorch reference ({what}; triton does not import: pip install triton)"
    return f"golf's Triton kernel ({what})"


def _attention(model: nn.Module, cuda: bool) -> str:
    from golf.models.attention import fa3_function

    if getattr(model, "doc_mask", False):
        return ("flex attention under the documents' block mask (FlashAttention-3's variable-length path is not "
                "wired in golf yet)" if cuda else "SDPA under the documents' mask (CPU)")
    if not cuda:
        return "SDPA (CPU)"
    kernel = model.attention_kernel
    why = []
    if kernel != "fa3":
        why.append("FlashAttention-3 does not import (flash_attn_interface is built from source for head dim 64)"
                   if fa3_function() is None else "FlashAttention-3 imports but model.attn_kernel chose otherwise")
    if kernel not in ("fa3", "fa4") and flash4.problem() is not None:
        why.append(flash4.problem())
    return kernel + (f" ({'; '.join(why)})" if why else "")


def kernel_report(model: nn.Module, device: torch.device) -> dict[str, str]:
    """One line per family (attention, q/k norm + RoPE, XSA, MLP, cross-entropy) for a golf GPT."""
    cuda = device.type == "cuda"
    attn = model.blocks[0].attn
    out = {"attention": _attention(model, cuda),
           "qk_norm_rope": _triton(attn.qk_mode, cuda, "q/k RMSNorm + RoPE + gain in one pass")}
    if any(b.attn.xsa for b in model.blocks):
        out["xsa"] = _triton(attn.xsa_mode, cuda, "exclusive self-attention")
    mlp = model.blocks[0].mlp
    fused = cuda and mlp.mode != "torch" and mlp.quack_problem is None
    out["mlp"] = ("quack's GEMMs with the activation in their epilogue (training)" if fused else
                  f"PyTorch ({mlp.quack_problem or 'no CUDA device'})")
    if model.ce_mode == "torch":
        out["cross_entropy"] = ("PyTorch, softcap then fp32 cross-entropy (the fused kernel is opt-in: add softcap_ce "
                                "to model.kernels)")
    else:
        out["cross_entropy"] = _triton(model.ce_mode, cuda, "fused softcapped cross-entropy")
    return out
