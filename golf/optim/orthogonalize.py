"""Approximate orthogonalisation of a (batch of) matrix G: the one routine every Muon variant calls.

X0 = P(G) in the wide orientation (m <= n), then for each step i with coefficients (a, b, c) of the schedule
(the last entry repeats): A = X Xᵀ, X <- a X + (b A + c A²) X. On singular values that is the odd
polynomial p_i(s) = a s + b s³ + c s⁵, so the output's singular values are p_k(...p_1(s)) of X0's.
Preconditioners P (techniques.md §3.2, §3.4):
  frobenius  X0 = G / (||G||_F + eps)                                  (modded-nanogpt, the baseline)
  aol        X0 = diag(r) G, r_i = 1 / (sqrt(sum_j |G Gᵀ|_ij) + eps)    (Gershgorin bound: ||X0||_2 <= 1; the
             first step reuses diag(r) A diag(r) instead of recomputing A, #1089)
Schedules: ``quintic`` (3.4445, -4.7750, 2.0315) every step; ``polar_express`` Amsel et al.'s per-step
coefficients (arXiv:2505.16932) from the first; ``polar_express_aol`` the same from the second (#1089:
AOL already contracts the spectrum); ``polar_express_1787`` the five triples of #1787/#1855.
MuonEq-R (#1334/#1394 on, ``pre_norm: row``): each row of G divided by its L2 norm (fp32, at least 1e-7)
before the preconditioner. Post-normalisation (Muon+): ``row`` / ``col`` / ``row_col`` divide rows,
then columns, by their L2 norms. Turbo-Muon = aol + polar_express_aol, 4 steps + row_col.
``safety`` f > 1 evaluates every step's polynomial but the last at s / f: without it Polar Express in bf16
leaves its band (largest singular value 1.2-1.3 for #1089's AOL form, above 2 from a Frobenius start,
against the promised 1.124); 1.0 reproduces the records. Each schedule keeps its record's bf16 arithmetic:
the quintic computes c (A A), the Polar Express code (c A) A; equal in exact arithmetic, 3.5% apart after
4 bf16 steps, so golf reproduces either bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

QUINTIC = ((3.4445, -4.7750, 2.0315),)
POLAR_EXPRESS = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.875, -1.25, 0.375),
)
# #1787/#1855's five Polar Express triples (frontier.md §8), evaluated as b A + c (A A), from a Frobenius start
POLAR_EXPRESS_1787 = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
SCHEDULES = {"quintic": QUINTIC, "polar_express": POLAR_EXPRESS, "polar_express_aol": POLAR_EXPRESS[1:],
             "polar_express_1787": POLAR_EXPRESS_1787}
C_FIRST = ("polar_express", "polar_express_aol")  # #1089's code evaluates (c A) A
PRECONDITIONERS = ("frobenius", "aol")
POST_NORMS = ("none", "row", "col", "row_col")
PRE_NORMS = ("none", "row")


def coefficients_for(schedule: str, steps: int, safety: float = 1.0) -> tuple[tuple[float, float, float], ...]:
    """The schedule's first ``steps`` triples; with ``safety`` f > 1 every step but the last evaluates its
    polynomial at s / f (Polar Express's cushioning against bf16 rounding pushing singular values above 1)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"optimizer.orthogonalize.schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    if steps < 1:
        raise ValueError(f"optimizer.orthogonalize.steps must be >= 1, got {steps}")
    if not 1.0 <= safety < 1.1:
        raise ValueError(f"optimizer.orthogonalize.safety must be in [1, 1.1), got {safety}")
    table = SCHEDULES[schedule]
    out = [table[min(i, len(table) - 1)] for i in range(steps)]
    return tuple((a / safety, b / safety**3, c / safety**5) for a, b, c in out[:-1]) + (out[-1],)


def orthogonalize(G: Tensor, coefficients: Sequence[Sequence[float]] = QUINTIC * 5, precondition: str = "frobenius",
                  post_norm: str = "none", c_first: bool = False, eps: float = 1e-7,
                  dtype: torch.dtype = torch.bfloat16, pre_norm: str = "none") -> Tensor:
    """Orthogonalise the last two dims of ``G`` ([..., m, n]) in ``dtype``; one coefficient triple per step.
    ``c_first`` evaluates the quintic term as (c A) A instead of c (A A); ``pre_norm='row'``: MuonEq-R."""
    if pre_norm == "row":
        G = G / G.float().norm(dim=-1, keepdim=True).clamp_min(eps).to(G.dtype)
    elif pre_norm != "none":
        raise ValueError(f"optimizer.orthogonalize.pre_norm must be one of {PRE_NORMS}, got {pre_norm!r}")
    X = G.to(dtype)
    transposed = X.size(-2) > X.size(-1)
    if transposed:
        X = X.mT
    A = None
    if precondition == "aol":
        A = X @ X.mT
        r = 1.0 / (A.abs().sum(dim=-1).sqrt() + eps)
        X = r.unsqueeze(-1) * X
        A = r.unsqueeze(-2) * A * r.unsqueeze(-1)
    elif precondition == "frobenius":
        X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    else:
        raise ValueError(f"optimizer.orthogonalize.precondition must be one of {PRECONDITIONERS}, got {precondition!r}")
    for i, (a, b, c) in enumerate(coefficients):
        if i > 0 or A is None:
            A = X @ X.mT
        X = a * X + (b * A + ((c * A) @ A if c_first else c * (A @ A))) @ X
    if transposed:
        X = X.mT
    return normalize_rows_cols(X, post_norm, eps)


def normalize_rows_cols(X: Tensor, mode: str, eps: float = 1e-7) -> Tensor:
    """Muon+ post-normalisation: rows, then columns, to unit L2 norm (norms in fp32)."""
    if mode not in POST_NORMS:
        raise ValueError(f"optimizer.orthogonalize.post_norm must be one of {POST_NORMS}, got {mode!r}")
    if mode in ("row", "row_col"):
        X = X / (X.float().norm(dim=-1, keepdim=True).to(X.dtype) + eps)
    if mode in ("col", "row_col"):
        X = X / (X.float().norm(dim=-2, keepdim=True).to(X.dtype) + eps)
    return X


def singular_value_band(coefficients: Sequence[Sequence[float]], lo: float, hi: float, points: int = 200_001) -> tuple[float, float]:
    """Where the schedule sends singular values in [lo, hi]: min and max of p_k(...p_1(s)) over a fine grid
    (float64). Exact arithmetic maps each singular value of X0 through this composition."""
    s = np.linspace(lo, hi, points, dtype=np.float64)
    for a, b, c in coefficients:
        s = a * s + b * s**3 + c * s**5
    return float(s.min()), float(s.max())


@dataclass(frozen=True)
class Orthogonalizer:
    """The ``optimizer.orthogonalize`` config node: schedule, steps, preconditioner, post-normalisation, safety."""

    schedule: str = "quintic"
    steps: int = 5
    precondition: str = "frobenius"
    post_norm: str = "none"
    safety: float = 1.0
    pre_norm: str = "none"

    def __post_init__(self) -> None:
        coefficients_for(self.schedule, self.steps, self.safety)
        if self.pre_norm not in PRE_NORMS:
            raise ValueError(f"optimizer.orthogonalize.pre_norm must be one of {PRE_NORMS}, got {self.pre_norm!r}")
        if self.precondition not in PRECONDITIONERS:
            raise ValueError(f"optimizer.orthogonalize.precondition must be one of {PRECONDITIONERS}, got {self.precondition!r}")
        if self.post_norm not in POST_NORMS:
            raise ValueError(f"optimizer.orthogonalize.post_norm must be one of {POST_NORMS}, got {self.post_norm!r}")

    @property
    def coefficients(self) -> tuple[tuple[float, float, float], ...]:
        return coefficients_for(self.schedule, self.steps, self.safety)

    def kwargs(self) -> dict:
        return {"coefficients": self.coefficients, "precondition": self.precondition, "post_norm": self.post_norm,
                "c_first": self.schedule in C_FIRST, "pre_norm": self.pre_norm}
