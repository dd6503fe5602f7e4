"""The records' optimizer split: Muon for block matrices, Adam for the embedding, head and scalars.

The model says which parameter plays which role (``model.param_groups()``); this class turns the roles
into optimizers with their learning rates, and applies the schedule's LR multiplier and Muon momentum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from golf.optim.muon import Muon


class MuonAdam:
    """Muon on ``matrix`` parameters; one Adam per non-empty ``embed``/``head``/``scalar`` role."""

    def __init__(
        self,
        model: nn.Module,
        *,
        matrix_lr: float = 0.04,
        embed_lr: float = 0.05,
        head_lr: float = 0.008,
        scalar_lr: float = 0.04,
        muon_momentum: float = 0.95,
        ns_steps: int = 5,
        nesterov: bool = True,
        muon_weight_decay: float = 0.0,
        adam_betas: Sequence[float] = (0.9, 0.95),
        adam_eps: float = 1e-8,
        adam_weight_decay: float = 0.0,
        fused: bool | None = None,
        grad_clip_norm: float = 0.0,
    ):
        if grad_clip_norm < 0:
            raise ValueError(f"optimizer.grad_clip_norm must be >= 0 (0: off), got {grad_clip_norm}")
        self.grad_clip_norm = grad_clip_norm
        self.params = [p for p in model.parameters() if p.requires_grad]
        groups = model.param_groups()
        unknown = set(groups) - {"matrix", "embed", "head", "scalar"}
        if unknown:
            raise ValueError(f"model.param_groups() returned unknown roles {sorted(unknown)}")
        n_routed = sum(len(v) for v in groups.values())
        if n_routed != len(self.params):
            raise ValueError(f"model.param_groups() routes {n_routed} of {len(self.params)} trainable parameters")
        if fused is None:
            fused = all(p.is_cuda for p in model.parameters())
        betas = tuple(float(b) for b in adam_betas)
        adam_cls = torch.optim.AdamW if adam_weight_decay else torch.optim.Adam
        self.muon = Muon(groups["matrix"], lr=matrix_lr, momentum=muon_momentum, nesterov=nesterov,
                         ns_steps=ns_steps, weight_decay=muon_weight_decay) if groups["matrix"] else None
        self.optimizers: list[torch.optim.Optimizer] = []
        for role, lr in (("embed", embed_lr), ("head", head_lr), ("scalar", scalar_lr)):
            if groups[role]:
                kw = dict(lr=lr, betas=betas, eps=adam_eps, fused=fused)
                if adam_weight_decay:
                    kw["weight_decay"] = adam_weight_decay
                self.optimizers.append(adam_cls(groups[role], **kw))
        if self.muon is not None:
            self.optimizers.insert(1 if groups["embed"] else 0, self.muon)
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["base_lr"] = g["lr"]

    def compile(self) -> None:
        if self.muon is not None:
            self.muon.compile()

    def set_lr_multiplier(self, mult: float) -> None:
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * mult

    def set_muon_momentum(self, momentum: float) -> None:
        if self.muon is not None:
            for g in self.muon.param_groups:
                g["momentum"] = momentum

    def step(self) -> None:
        if self.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip_norm)
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, s in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(s)
