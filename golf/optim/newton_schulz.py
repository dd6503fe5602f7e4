"""Newton–Schulz orthogonalisation: the one routine every Muon variant calls.

For a (batch of) matrix G, X0 = G / (||G||_F + eps) in bf16 (wide orientation), then for each
(a, b, c) of the coefficient schedule: A = X Xᵀ, X <- a X + (b A + c A²) X. Five steps of
(3.4445, -4.7750, 2.0315) is the baseline's (modded-nanogpt's) quintic iteration.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

QUINTIC = (3.4445, -4.7750, 2.0315)


def newton_schulz(G: Tensor, steps: int = 5, coefficients: Sequence[Sequence[float]] | None = None, eps: float = 1e-7) -> Tensor:
    """Approximately orthogonalise the last two dims of ``G`` ([..., m, n]); returns bf16."""
    coeffs = list(coefficients) if coefficients is not None else [QUINTIC] * steps
    if len(coeffs) < steps:
        coeffs += [coeffs[-1]] * (steps - len(coeffs))
    X = G.bfloat16()
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    for a, b, c in coeffs[:steps]:
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if transposed else X
