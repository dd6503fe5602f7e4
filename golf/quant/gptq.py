"""Full-Hessian GPTQ on golf's per-row grid (techniques.md §4.4; Frantar et al. 2022).

Given a weight W (rows x cols) and the Hessian H = E[x xᵀ] of its input, columns are quantized one at a
time and each column's error is spread over the columns not yet quantized through the upper Cholesky
factor of H⁻¹, so the layer's output error tr(E H Eᵀ) stays low:
  dead columns (H_jj = 0): H_jj <- 1, W[:, j] <- 0; damping H += damp * mean(diag H) * I;
  act-order: columns by decreasing diag(H); U = chol(chol_inverse(chol(H)))ᵀ (upper);
  per block of ``block`` columns, per column i: q_i = Q(w_i), e = (w_i - q_i s) / U_ii,
  w_{i:block end} -= e U_{i, i:block end}; after the block, the rest of W -= E_block U_{block, rest}.
Per-row scales come from the clip search: ``search="matrix"`` quantizes with every candidate percentile
(one sweep over the stacked candidates) and keeps the lowest weight-space MSE (#593/#1019); ``search="row"``
picks each row's percentile by plain rounding first and sweeps once (#1089's single pass). A Hessian that
is not positive definite after damping is retried with ten times the damping (up to ``retries`` times) and
the attempts are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from golf.quant.grid import PERCENTILES, dequantize_rows, quantize_rows, quantize_with_scales, row_clip, search_clip


@dataclass
class GPTQResult:
    q: Tensor
    scale: Tensor
    damp: float                         # the relative damping that worked
    retries: int = 0
    dead_columns: int = 0
    percentile: Tensor | None = None    # [rows] the clip percentile each row ended with
    notes: list[str] = field(default_factory=list)


def inverse_cholesky(H: Tensor, damp: float, retries: int = 3) -> tuple[Tensor, float, int]:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)⁻¹; on failure, damping x10 (``retries`` times)."""
    cols = H.shape[0]
    mean_diag = float(torch.diag(H).mean())
    for attempt in range(retries + 1):
        Hd = H.clone()
        Hd.diagonal().add_(damp * mean_diag)
        L, info = torch.linalg.cholesky_ex(Hd)
        if int(info) == 0:
            U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
            if int(info) == 0 and torch.isfinite(U).all():
                return U, damp, attempt
        damp *= 10.0
    raise ValueError(f"Hessian of a {cols}-column matrix is not positive definite even with damping {damp / 10:g} "
                     f"(x mean diagonal); the calibration data may not reach this layer")


def gptq_sweep(W: Tensor, U: Tensor, scales: Tensor, qmax: int, block: int = 128) -> Tensor:
    """Quantize W (columns already in act-order) with fixed per-row ``scales``; returns int8 q."""
    W = W.clone()
    rows, cols = W.shape
    s = scales.float()
    Q = torch.zeros(rows, cols, dtype=torch.int8, device=W.device)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            q = torch.clamp(torch.round(w / s), -qmax, qmax)
            Q[:, i1 + i] = q.to(torch.int8)
            err = (w - q * s) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            E1[:, i] = err
        if i2 < cols:
            W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return Q


def gptq(weight: Tensor, hessian: Tensor, qmax: int, *, percentiles=PERCENTILES, search: str = "matrix",
         block: int = 128, damp: float = 0.01, actorder: bool = True, retries: int = 3,
         floor: float | None = None, clip=None) -> GPTQResult:
    """GPTQ-quantize ``weight`` to [-qmax, qmax] per row given its input Hessian (see the module docstring);
    ``clip``: the row clips by percentile (a ``ClipCache``'s), default computed here."""
    if search not in ("matrix", "row"):
        raise ValueError(f"quant.search must be matrix or row, got {search!r}")
    W0 = weight.float()
    clip = clip or (lambda pct: row_clip(W0, pct))
    H = hessian.float().to(W0.device).clone()
    cols = W0.shape[1]
    if H.shape != (cols, cols):
        raise ValueError(f"Hessian shape {tuple(H.shape)} does not fit a weight with {cols} columns")
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    perm = torch.argsort(torch.diag(H), descending=True) if actorder else torch.arange(cols, device=W0.device)
    inv = torch.argsort(perm)
    W = W0[:, perm].clone()
    W[:, dead[perm]] = 0.0
    U, used, tries = inverse_cholesky(H[perm][:, perm], damp, retries)
    out = GPTQResult(q=None, scale=None, damp=used, retries=tries, dead_columns=int(dead.sum()))
    if tries:
        out.notes.append(f"Hessian not positive definite at damping {damp:g}; used {used:g}")
    if search == "row":
        s, out.percentile = search_clip(W0, qmax, percentiles, per_row=True, floor=floor, clip=clip)[1:]
        out.q, out.scale = gptq_sweep(W, U, s, qmax, block)[:, inv].contiguous(), s
        return out
    # Every candidate in one sweep: rows are independent in GPTQ (each propagates only its own error through
    # U), so stacking the candidates' copies of W quantizes each exactly as alone, with 1/P of the launches.
    scales = [quantize_rows(W0, clip(pct), qmax, floor=floor)[1] for pct in percentiles]
    Qs = gptq_sweep(W.repeat(len(scales), 1), U, torch.cat(scales), qmax, block).view(len(scales), *W.shape)
    best = None
    for Q, s, pct in zip(Qs, scales, percentiles):
        mse = float((W - dequantize_rows(Q, s)).pow(2).mean())
        if best is None or mse < best[0]:
            best = (mse, Q, s, pct)
    out.q, out.scale = best[1][:, inv].contiguous(), best[2]
    out.percentile = torch.full((W0.size(0),), best[3], device=W0.device)
    return out


def hessian_error(weight: Tensor, q: Tensor, scale: Tensor, hessian: Tensor) -> float:
    """tr((W - Ŵ) H (W - Ŵ)ᵀ): the layer's output error on the calibration inputs (times their count)."""
    E = weight.float() - dequantize_rows(q, scale).to(weight.device)
    return float(torch.einsum("ij,jk,ik->", E, hessian.float().to(E.device), E))


__all__ = ["GPTQResult", "gptq", "gptq_sweep", "hessian_error", "inverse_cholesky", "quantize_with_scales"]
