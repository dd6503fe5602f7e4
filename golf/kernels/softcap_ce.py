"""The training loss: cross-entropy of softcapped logits, c tanh(z / c), fused (#1787/#1855's idea).

Why a kernel of its own: the unfused loss writes the logits, their softcapped copy and an fp32 copy ([tokens,
vocab] each: at 98,304 tokens and vocab 8192, 1.6 GB in bf16 and 3.2 GB in fp32) and reads them back for the
softmax and again in the backward. The kernel (golf.kernels.softcap_ce_triton) reads the head's output once
each way, keeps only each row's log-sum-exp, and computes the cap in fp32. ``loss`` chooses as
``model.kernels`` says (golf.kernels, name ``softcap_ce``); ``reference`` is the PyTorch form the tests hold
the kernel to. Evaluation keeps the reference (it needs per-token losses of the capped logits, as the records').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from golf.kernels import TRITON, use_triton

if TRITON:
    from golf.kernels import softcap_ce_triton as _k


def reference(z: Tensor, target: Tensor, softcap: float, reduction: str = "mean") -> Tensor:
    """Cross-entropy of softcap * tanh(z / softcap) against ``target`` (z [N, V], fp32 softmax)."""
    capped = softcap * torch.tanh(z.float() / softcap)
    return F.cross_entropy(capped, target, reduction=reduction)


def loss(z: Tensor, target: Tensor, softcap: float, mode: str = "auto") -> Tensor:
    """Mean cross-entropy of the softcapped logits z [N, V] (pre-cap), by the kernel where ``mode`` runs it."""
    if not use_triton(mode, z, target) or z.stride(-1) != 1:
        return reference(z, target, softcap)
    per_row, _ = _k.softcap_ce(z, target, float(softcap))
    return per_row.sum() / (target != -100).sum().clamp_min(1)
