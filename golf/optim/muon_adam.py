"""The records' optimizer split: Muon for block matrices, AdamW for everything else (techniques.md §3).

The model says which parameter plays which role (``model.param_groups()``: matrix, embed, proj, head,
scalar); this class turns roles into one Muon and one fused AdamW with a param group per role, applies
the schedule's LR multiplier and Muon momentum, clips the global gradient norm, and, with ``parallel``
(the records' Parallel Muon), synchronises gradients itself instead of DDP: the Muon reduce-scatter is
launched first, the replicated gradients are averaged in one flat all-reduce while it runs, then the
global norm is clipped (over the averaged gradient, at any world size: the records clipped each rank's
local gradient), AdamW steps, and Muon orthogonalises its shards and all-gathers the updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from golf.optim.muon import Muon
from golf.optim.orthogonalize import Orthogonalizer

ROLES = ("matrix", "embed", "proj", "head", "scalar")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class MuonAdam:
    def __init__(
        self,
        model: nn.Module,
        *,
        matrix_lr: float = 0.04,
        embed_lr: float = 0.05,
        head_lr: float = 0.008,
        scalar_lr: float = 0.04,
        proj_optimizer: str = "adam",
        muon_momentum: float = 0.95,
        nesterov: bool = True,
        orthogonalize: Orthogonalizer | dict | None = None,
        muon_weight_decay: float = 0.0,
        muon_wd_after_update: bool = False,
        muon_momentum_dtype: str = "float32",
        adam_betas: Sequence[float] = (0.9, 0.95),
        embed_beta1: float | None = None,
        head_beta1: float | None = None,
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        embed_weight_decay: float | None = None,
        fused: bool | None = None,
        grad_clip_norm: float = 0.0,
        parallel: bool = False,
    ):
        if grad_clip_norm < 0:
            raise ValueError(f"optimizer.grad_clip_norm must be >= 0 (0: off), got {grad_clip_norm}")
        if proj_optimizer not in ("adam", "muon"):
            raise ValueError(f"optimizer.proj_optimizer must be adam or muon, got {proj_optimizer!r}")
        if muon_momentum_dtype not in DTYPES:
            raise ValueError(f"optimizer.muon_momentum_dtype must be one of {sorted(DTYPES)}, got {muon_momentum_dtype!r}")
        self.grad_clip_norm, self.parallel = grad_clip_norm, parallel
        self.params = [p for p in model.parameters() if p.requires_grad]
        groups = model.param_groups()
        unknown = set(groups) - set(ROLES)
        if unknown:
            raise ValueError(f"model.param_groups() returned unknown roles {sorted(unknown)}")
        n_routed = sum(len(v) for v in groups.values())
        if n_routed != len(self.params):
            raise ValueError(f"model.param_groups() routes {n_routed} of {len(self.params)} trainable parameters")
        groups = {r: [p for p in groups.get(r, []) if p.requires_grad] for r in ROLES}
        if fused is None:
            fused = all(p.is_cuda for p in model.parameters())
        ortho = Orthogonalizer(**orthogonalize) if isinstance(orthogonalize, dict) else orthogonalize
        matrices = groups["matrix"] + (groups["proj"] if proj_optimizer == "muon" else [])
        self.muon = Muon(matrices, lr=matrix_lr, momentum=muon_momentum, nesterov=nesterov, orthogonalizer=ortho,
                         weight_decay=muon_weight_decay, wd_after_update=muon_wd_after_update,
                         momentum_dtype=DTYPES[muon_momentum_dtype], reduce_grads=parallel) if matrices else None
        b1, b2 = (float(b) for b in adam_betas)
        scalar = groups["scalar"] + (groups["proj"] if proj_optimizer == "adam" else [])
        adam_groups = [
            dict(params=groups["embed"], lr=embed_lr, betas=(embed_beta1 if embed_beta1 is not None else b1, b2),
                 weight_decay=adam_weight_decay if embed_weight_decay is None else embed_weight_decay, role="embed"),
            dict(params=scalar, lr=scalar_lr, betas=(b1, b2), weight_decay=adam_weight_decay, role="scalar"),
            dict(params=groups["head"], lr=head_lr, betas=(head_beta1 if head_beta1 is not None else b1, b2),
                 weight_decay=0.0, role="head"),
        ]
        adam_groups = [g for g in adam_groups if g["params"]]
        self.adam = torch.optim.AdamW(adam_groups, eps=adam_eps, fused=fused) if adam_groups else None
        self.optimizers = [o for o in (self.adam, self.muon) if o is not None]
        self.replicated = [p for g in adam_groups for p in g["params"]]
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["base_lr"] = g["lr"]

    @property
    def syncs_gradients(self) -> bool:
        """True when this optimizer averages gradients over ranks itself (no DDP around the model)."""
        return self.parallel

    def compile(self) -> None:
        if self.muon is not None:
            self.muon.compile()

    def set_lr_multiplier(self, mult: float) -> None:
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * mult

    def set_wd_multiplier(self, mult: float) -> None:
        """Scale Muon's weight decay (the schedule's taper); Adam's groups keep theirs, as in #1729."""
        if self.muon is not None:
            for g in self.muon.param_groups:
                g["weight_decay"] = g.setdefault("base_wd", g["weight_decay"]) * mult

    def set_muon_momentum(self, momentum: float) -> None:
        if self.muon is not None:
            for g in self.muon.param_groups:
                g["momentum"] = momentum

    def _all_reduce_replicated(self) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.replicated]
        flat = torch.cat([g.float().flatten() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.AVG)
        for p, chunk in zip(self.replicated, flat.split([p.numel() for p in self.replicated])):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.copy_(chunk.view_as(p))

    def _clip(self, shards: list[Tensor], world: int) -> None:
        """Scale every gradient by min(1, max_norm / (||g|| + 1e-6)), ||g|| over the averaged gradient."""
        rep = [p.grad for p in self.replicated if p.grad is not None]
        sq = torch.zeros((), device=self.params[0].device, dtype=torch.float32)
        if shards:
            sq = torch.stack([n.float() for n in torch._foreach_norm(shards)]).square().sum()
            if world > 1:
                dist.all_reduce(sq, op=dist.ReduceOp.SUM)
        if rep:
            sq = sq + torch.stack([n.float() for n in torch._foreach_norm(rep)]).square().sum()
        coef = (self.grad_clip_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(shards + rep, coef)

    @torch.no_grad()
    def step(self) -> None:
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if self.muon is not None:
            self.muon.launch_reduce()
        if self.parallel and world > 1 and self.replicated:
            self._all_reduce_replicated()
        shards = self.muon.wait_reduce() if self.muon is not None else []
        if self.grad_clip_norm > 0:
            self._clip(shards, world)
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, s in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(s)
