"""Muon: Nesterov momentum, then Newton–Schulz orthogonalisation, scaled by sqrt(max(1, rows/cols)).

Parameters of one shape are orthogonalised together as a batch (one set of kernels per shape instead
of per matrix). Under torch.distributed each rank orthogonalises its share (parameter i of a shape
group on rank i mod W) and one all-reduce of a flat bf16 buffer gives every rank every update,
the baseline's scheme. Gradients must already be averaged over ranks (DDP does that).
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.distributed as dist
from torch import Tensor

from golf.optim.newton_schulz import newton_schulz


class Muon(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 0.04,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, weight_decay=weight_decay))
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D parameters only, got shape {tuple(p.shape)}")
        self._orthogonalize = newton_schulz

    def compile(self) -> None:
        """Compile the Newton–Schulz routine (one graph per stacked shape)."""
        self._orthogonalize = torch.compile(newton_schulz)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        distributed = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            mu = group["momentum"]
            offsets, total = {}, 0
            for p in params:
                offsets[p] = total
                total += p.numel()
            flat = torch.zeros(total, device=params[0].device, dtype=torch.bfloat16)
            by_shape: dict[tuple[int, ...], list[Tensor]] = defaultdict(list)
            for p in params:
                by_shape[tuple(p.shape)].append(p)
            for shape, same in by_shape.items():
                mine = same[rank::world]
                if not mine:
                    continue
                updates = []
                for p in mine:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    buf = state["momentum_buffer"]
                    buf.mul_(mu).add_(p.grad)
                    updates.append(p.grad.add(buf, alpha=mu) if group["nesterov"] else buf)
                ortho = self._orthogonalize(torch.stack(updates), steps=group["ns_steps"])
                ortho = ortho * max(1.0, shape[0] / shape[1]) ** 0.5
                for p, u in zip(mine, ortho):
                    flat[offsets[p] : offsets[p] + p.numel()] = u.reshape(-1)
            if distributed and world > 1:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            lr, wd = group["lr"], group["weight_decay"]
            for p in params:
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(flat[offsets[p] : offsets[p] + p.numel()].view_as(p).to(p.dtype), alpha=-lr)
        return loss
