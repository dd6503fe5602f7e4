"""Muon: Nesterov momentum, then orthogonalisation, scaled by sqrt(max(1, rows/cols)), with decoupled
weight decay p <- p (1 - lr wd) before (the #414 line) or after (#1089) the update.

Matrices of one shape are stacked and processed together, which is the records' parameter banking
(a [B, m, n] bank per shape) without moving the weights into banks: the model keeps per-layer names.
Distributed, each shape group's stack is padded to a multiple of the world size W and split into W
contiguous shards; rank r orthogonalises shard r and an all-gather gives everyone every update:
- ``reduce_grads=True`` (Parallel Muon, #399/#549): the stack of local gradients is reduce-scattered
  (average) in ``momentum_dtype``, launched asynchronously before the Adam step; no DDP.
- ``reduce_grads=False``: gradients were already averaged (DDP); each rank slices its shard.
The all-gather of one group overlaps the orthogonalisation of the next. At W = 1 there is no
communication and the result is the same. Momentum lives with the shard, in ``momentum_dtype``
(float32 in the baseline, bfloat16 in the banked records).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from golf.optim.orthogonalize import Orthogonalizer, orthogonalize

# torch >= 2.12 renames the single-tensor collectives; the GPU image has 2.11.
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


@dataclass
class _Group:
    params: list[Tensor]
    shard: slice                 # this rank's rows of the padded stack
    stack: Tensor | None = None  # [B_pad, m, n] local (or already averaged) gradients
    grad: Tensor | None = None   # [B_pad / W, m, n] this rank's averaged gradients
    handle: object = None


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.04, momentum: float = 0.95, nesterov: bool = True,
                 orthogonalizer: Orthogonalizer | None = None, weight_decay: float = 0.0, wd_after_update: bool = False,
                 momentum_dtype: torch.dtype = torch.float32, reduce_grads: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D parameters only, got shape {tuple(p.shape)}")
        self.ortho = orthogonalizer or Orthogonalizer()
        self.wd_after_update, self.momentum_dtype, self.reduce_grads = wd_after_update, momentum_dtype, reduce_grads
        self._orthogonalize = orthogonalize
        self._shards: list[list[_Group]] | None = None  # per param group, by index (load_state_dict replaces the dicts)
        self._launched = False

    def compile(self) -> None:
        """Compile the orthogonalisation (one graph per stacked shape)."""
        self._orthogonalize = torch.compile(orthogonalize, dynamic=False)

    def _world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _layout(self) -> list[tuple[dict, list[_Group]]]:
        """(param group, its shape groups); the group dicts are read fresh every call: the schedule sets lr and
        momentum in ``self.param_groups``, which ``load_state_dict`` replaces with new dicts."""
        if self._shards is None:
            world, rank = self._world()
            self._shards = []
            for group in self.param_groups:
                by_shape: dict[tuple[int, ...], list[Tensor]] = defaultdict(list)
                for p in group["params"]:
                    by_shape[tuple(p.shape)].append(p)
                shards = []
                for same in sorted(by_shape.values(), key=lambda ps: -ps[0].numel() * len(ps)):  # largest first
                    per = -(-len(same) // world)
                    shards.append(_Group(same, slice(rank * per, (rank + 1) * per)))
                self._shards.append(shards)
        return list(zip(self.param_groups, self._shards))

    @torch.no_grad()
    def launch_reduce(self) -> None:
        """Stack each shape group's gradients and start the reduce-scatter (or slice the shard locally)."""
        world, _ = self._world()
        for _group, shards in self._layout():
            for g in shards:
                per = g.shard.stop - g.shard.start
                if g.stack is None:
                    p0 = g.params[0]
                    g.stack = torch.zeros(per * world, *p0.shape, device=p0.device, dtype=self.momentum_dtype)
                for i, p in enumerate(g.params):
                    g.stack[i].copy_(p.grad if p.grad is not None else torch.zeros_like(p))
                if self.reduce_grads and world > 1:
                    g.grad = torch.empty_like(g.stack[g.shard])
                    g.handle = _reduce_scatter(g.grad, g.stack, op=dist.ReduceOp.AVG, async_op=True)
                else:
                    g.grad = g.stack[g.shard]
        self._launched = True

    @torch.no_grad()
    def wait_reduce(self) -> list[Tensor]:
        """Wait for the reduce-scatters; returns this rank's gradient shards (for a global-norm clip)."""
        out = []
        for _group, shards in self._layout():
            for g in shards:
                if g.handle is not None:
                    g.handle.wait()
                    g.handle = None
                out.append(g.grad)
        return out

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._launched:
            self.launch_reduce()
        self.wait_reduce()
        self._launched = False
        world, _ = self._world()
        kw = self.ortho.kwargs()
        for group, shards in self._layout():
            pending = None
            for g in shards:
                mu, key = group["momentum"], g.params[0]
                state = self.state[key]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g.grad)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(g.grad)
                update = g.grad.add(buf, alpha=mu) if group["nesterov"] else buf
                update = self._orthogonalize(update, **kw)
                if world > 1:
                    full = torch.empty((update.size(0) * world, *update.shape[1:]), device=update.device, dtype=update.dtype)
                    handle = _all_gather(full, update.contiguous(), async_op=True)
                else:
                    full, handle = update, None
                if pending is not None:
                    self._apply(group, *pending)
                pending = (g, full, handle)
                g.grad = None
            if pending is not None:
                self._apply(group, *pending)
        return loss

    def _apply(self, group: dict, g: _Group, full: Tensor, handle) -> None:
        if handle is not None:
            handle.wait()
        lr, wd = group["lr"], group["weight_decay"]
        rows, cols = g.params[0].shape
        updates = list(full[: len(g.params)].to(g.params[0].dtype).unbind(0))
        if wd and not self.wd_after_update:
            torch._foreach_mul_(g.params, 1.0 - lr * wd)
        torch._foreach_add_(g.params, updates, alpha=-lr * max(1.0, rows / cols) ** 0.5)
        if wd and self.wd_after_update:
            torch._foreach_mul_(g.params, 1.0 - lr * wd)

    def load_state_dict(self, state_dict: dict) -> None:
        """torch casts floating state to the parameter's dtype on load; the momentum keeps ``momentum_dtype``."""
        super().load_state_dict(state_dict)
        for st in self.state.values():
            if "momentum_buffer" in st:
                st["momentum_buffer"] = st["momentum_buffer"].to(self.momentum_dtype)
