"""LQER (#1797/#1855): a low-rank correction of the quantization error on the matrices where it is largest.

For a quantized matrix W_q of W, E = W - W_q = U S Vᵀ; the correction is A B with A = U_r S_r (rows x r) and
B = V_rᵀ (r x cols), stored small and added back at load. ``asym`` (the records' logged choice): A on a signed
int2 grid [-2, 1] with one scale, max|A| / 1.5; B on int4 [-8, 7] in groups of ``group`` consecutive entries of the
flattened B, each scale max / 7.5. Otherwise A and B per row at ``bits`` (scale max / (2^(bits-1) - 1)).
Scales are fp16, as the records store them; the bytes count in the artifact like every other tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LQERConfig:
    rank: int = 4
    top_k: int = 3
    asym: bool = True
    group: int = 64
    bits: int = 4

    def __post_init__(self) -> None:
        if self.rank < 1 or self.top_k < 1 or self.group < 1 or not 2 <= self.bits <= 8:
            raise ValueError(f"quant.lqer needs rank, top_k, group >= 1 and bits in 2..8, got {self}")


def factors(E: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """A = U_r S_r and B = V_rᵀ of the error's SVD (fp32)."""
    U, S, Vh = torch.linalg.svd(E.float(), full_matrices=False)
    r = min(rank, S.numel())
    return (U[:, :r] * S[:r]).contiguous(), Vh[:r].contiguous()


def pack(A: Tensor, B: Tensor, cfg: LQERConfig) -> dict[str, Tensor]:
    """The stored form: int8 containers and fp16 scales (keys A, sA, B, sB)."""
    if cfg.asym and B.numel() % cfg.group == 0:
        sA = (A.abs().amax().clamp_min(1e-10) / 1.5).to(torch.float16)
        qA = torch.clamp(torch.round(A / sA.float()), -2, 1).to(torch.int8)
        Bg = B.reshape(-1, cfg.group)
        sB = (Bg.abs().amax(dim=-1, keepdim=True).clamp_min(1e-10) / 7.5).to(torch.float16).reshape(-1)
        qB = torch.clamp(torch.round(Bg / sB.float()[:, None]), -8, 7).to(torch.int8).reshape(B.shape)
        return {"A": qA, "sA": sA, "B": qB, "sB": sB}
    top = 2 ** (cfg.bits - 1) - 1
    sA = (A.abs().amax(dim=1).clamp_min(1e-10) / top).to(torch.float16)
    sB = (B.abs().amax(dim=1).clamp_min(1e-10) / top).to(torch.float16)
    qA = torch.clamp(torch.round(A / sA.float()[:, None]), -top, top).to(torch.int8)
    qB = torch.clamp(torch.round(B / sB.float()[:, None]), -top, top).to(torch.int8)
    return {"A": qA, "sA": sA, "B": qB, "sB": sB}


def correction(p: dict[str, Tensor]) -> Tensor:
    """A B from the stored form (either layout: a scalar sA is the asymmetric one)."""
    qA, sA, qB, sB = p["A"].float(), p["sA"].float(), p["B"].float(), p["sB"].float()
    if sA.ndim == 0:
        g = qB.numel() // sB.numel()
        return (qA * sA) @ (qB.reshape(-1, g) * sB[:, None]).reshape(qB.shape)
    return (qA * sA[:, None]) @ (qB * sB[:, None])
