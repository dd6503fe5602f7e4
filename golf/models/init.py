"""Weight initialisation schemes of the records (techniques.md §2.8), drawing from the RNG in each record's
order so that the same seed gives the same starting weights as the record's script.

- ``default`` (naive baseline): nn.Linear's own init, drawn as the layers are built; output projections zero;
  linears outside the blocks (hash/VE projections, which start at zero and would stay there) as in ``ortho``.
- ``ortho`` (#414's OrthoInit): after building, every linear with both dims >= 64 that is not zero-init gets
  orthogonal(gain 1) in module order; with ``proj_scale`` those named ``*.proj`` are scaled by 1/sqrt(2L).
- ``banked`` (#549 and later, whose block weights live in 3-D banks): the block matrices draw nothing while
  being built; then per layer Q, K, V, MLP-up orthogonal, attention output and MLP-down zero (or the mimetic
  V-O init); then the other linears as in ``ortho`` without scaling.
- ``frontier`` (#1394 to #1855): as ``banked``, but every layer's Q, K, V are drawn first, then every layer's
  MLP-up (the records fill their banks in two loops).
- ``mimetic_alpha`` > 0 (#1089): the attention output rows of query head h are -alpha x the V rows of its
  KV group.
The tied embedding is N(0, tied_embed_init_std²), drawn after everything else was built. The records skip
linears narrower than 64; a hash/VE projection behind a zero table is initialised whatever its size
(``needs_init``), since zero table and zero projection would never receive a gradient.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEMES = ("default", "ortho", "banked", "frontier")


def _ortho_rest(model: nn.Module, skip: set[int], proj_scale: float | None) -> None:
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear) or id(m) in skip:
            continue
        if getattr(m, "zero_init", False):
            nn.init.zeros_(m.weight)
        elif m.weight.ndim == 2 and (min(m.weight.shape) >= 64 or getattr(m, "needs_init", False)):
            nn.init.orthogonal_(m.weight, gain=1.0)
            if proj_scale is not None and (".proj." in name or name.endswith(".proj")):
                m.weight.data.mul_(proj_scale)


def _mimetic(attn, alpha: float) -> None:
    """O[h rows] = -alpha * V[g(h) rows] for every query head h of KV group g(h)."""
    hd, group = attn.head_dim, attn.num_heads // attn.num_kv_heads
    v = attn.c_v.weight.data
    rows = torch.arange(attn.num_heads).repeat_interleave(hd) // group * hd + torch.arange(hd).repeat(attn.num_heads)
    attn.proj.weight.data.copy_(-alpha * v[rows])


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str, *, tied_embed_std: float | None, proj_scale: bool = False,
                 mimetic_alpha: float = 0.0) -> None:
    """Initialise a GPT (``model.blocks``, ``model.tok_emb``) by ``scheme``; see the module docstring."""
    if scheme not in SCHEMES:
        raise ValueError(f"model.init must be one of {SCHEMES}, got {scheme!r}")
    if tied_embed_std is not None:
        nn.init.normal_(model.tok_emb.weight, mean=0.0, std=tied_embed_std)
    blocks = list(model.blocks)
    block_linears = {id(m) for b in blocks for m in b.modules() if isinstance(m, nn.Linear)}
    if scheme in ("banked", "frontier"):
        if scheme == "banked":
            order = [lin for b in blocks for lin in (b.attn.c_q, b.attn.c_k, b.attn.c_v, b.mlp.fc)]
        else:  # #1394 on: every layer's Q, K, V first, then every layer's MLP input
            order = [lin for b in blocks for lin in (b.attn.c_q, b.attn.c_k, b.attn.c_v)] + [b.mlp.fc for b in blocks]
        for lin in order:
            nn.init.orthogonal_(lin.weight, gain=1.0)
        for b in blocks:
            nn.init.zeros_(b.mlp.proj.weight)
            nn.init.zeros_(b.attn.proj.weight)
            if mimetic_alpha:
                _mimetic(b.attn, mimetic_alpha)
        done = {id(m) for b in blocks for m in (b.attn.c_q, b.attn.c_k, b.attn.c_v, b.attn.proj, b.mlp.fc, b.mlp.proj)}
        _ortho_rest(model, done, None)
        return
    if scheme == "ortho":
        _ortho_rest(model, set(), 1.0 / math.sqrt(2 * len(blocks)) if proj_scale else None)
    else:  # the block matrices keep nn.Linear's init; hash/VE projections still need a non-zero start
        _ortho_rest(model, block_linears, None)
    if mimetic_alpha:
        for b in blocks:
            _mimetic(b.attn, mimetic_alpha)
