"""The records' input-side modules (techniques.md §2.6): SmearGate, BigramHash (+ TrigramHash),
EngramLite and the shared ValueEmbedding. Hash tables and their projections are initialised the
records' way, drawing from the RNG in the same order, so a seeded golf model starts where the record does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.models.layers import CastedLinear


class SmearGate(nn.Module):
    """x_t <- (1 - sigmoid(g)) * x_t + sigmoid(g) * x_{t-1} (x_{-1} = 0), g in R^dim initialised to 0. Given
    ``first`` (document masking), x_{t-1} is 0 where position t starts a document: no document sees another's
    last token through the smear (the leak #1851/#1855 fixed in theirs)."""

    pre_norm = False

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, before: Tensor | None = None, first: Tensor | None = None) -> Tensor:
        """``before``: the (normalised) input of the position preceding x's first one, when decoding. ``first``
        [B, T] bool: the positions that start a document."""
        g = torch.sigmoid(self.gate.to(x.dtype))[None, None, :]
        head = torch.zeros_like(x[:, :1]) if before is None else before.to(x.dtype)
        prev = torch.cat((head, x[:, :-1]), dim=1)
        if first is not None:
            prev = prev * (~first).unsqueeze(-1).to(x.dtype)
        return (1 - g) * x + g * prev


class InputSmearGate(nn.Module):
    """#1667's input-dependent smear, on the token embeddings before their norm: e_t <- e_t + g_t e_{t-1},
    g_t = lambda * sigmoid(W e_t[:window]), W [1, window] and lambda zero-initialised (an identity at init).
    Given ``first``, e_{t-1} is 0 where position t starts a document (#1855's BOS fix)."""

    pre_norm = True

    def __init__(self, window: int, dim: int):
        super().__init__()
        if not 0 < window <= dim:
            raise ValueError(f"model.gate_window must be in 1..model_dim={dim}, got {window}")
        self.window = window
        self.weight = nn.Parameter(torch.empty(1, window))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # the draw of the record's nn.Linear, then zeroed:
        nn.init.zeros_(self.weight)                             # the same seed gives the record's other weights
        self.lam = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, before: Tensor | None = None, first: Tensor | None = None) -> Tensor:
        g = self.lam.to(x.dtype) * torch.sigmoid(F.linear(x[..., : self.window], self.weight.to(x.dtype)))
        head = torch.zeros_like(x[:, :1]) if before is None else before.to(x.dtype)
        prev = torch.cat((head, x[:, :-1]), dim=1)
        if first is not None:
            prev = prev * (~first).unsqueeze(-1).to(x.dtype)
        return x + g * prev


def _back(first: Tensor, n: int) -> Tensor:
    """[B, T] bool: a document starts within the last ``n`` positions up to t (t - n + 1 .. t), i.e. the
    token n back from t belongs to another document (or is before the row)."""
    out = first.clone()
    for k in range(1, n):
        out[..., k:] |= first[..., :-k]
    out[..., : n - 1] = True
    return out


def bigram_index(ids: Tensor, buckets: int, first: Tensor | None = None) -> Tensor:
    """((36313 t_i) xor (27191 t_{i-1})) mod (buckets - 1) in int32; position 0 (and, given ``first``, every
    position that starts a document) gets bucket buckets - 1."""
    t = ids.to(torch.int32)
    mod = buckets - 1
    head = torch.full_like(t[..., :1], mod)
    idx = torch.cat((head, torch.bitwise_xor(36313 * t[..., 1:], 27191 * t[..., :-1]) % mod), dim=-1)
    return (idx if first is None else idx.masked_fill(first, mod)).long()


def trigram_index(ids: Tensor, buckets: int, first: Tensor | None = None) -> Tensor:
    """(36313 t_i xor 27191 t_{i-1} xor 51497 t_{i-2}) mod (buckets - 1); positions 0 and 1 (and, given
    ``first``, those within a document's first two) -> buckets - 1."""
    t = ids.to(torch.int32)
    mod = buckets - 1
    head = torch.full_like(t[..., :2], mod)
    body = torch.bitwise_xor(torch.bitwise_xor(36313 * t[..., 2:], 27191 * t[..., 1:-1]), 51497 * t[..., :-2]) % mod
    idx = torch.cat((head, body), dim=-1)
    return (idx if first is None else idx.masked_fill(_back(first, 2), mod)).long()


class BigramHash(nn.Module):
    """A zero-initialised table of ``buckets`` x ``dim`` indexed by a hash of (previous, current) token,
    projected to the model width and scaled by a learnable scalar (init 0.05). With ``trigram`` the
    (t-2, t-1, t) hash is looked up in the same table and added before the projection."""

    def __init__(self, buckets: int, dim: int, model_dim: int, scale_init: float = 0.05, trigram: bool = False):
        super().__init__()
        if buckets < 2:
            raise ValueError(f"model.bigram_buckets must be >= 2 (or 0 for none), got {buckets}")
        self.buckets, self.trigram = buckets, trigram
        self.embed = nn.Embedding(buckets, dim)
        nn.init.zeros_(self.embed.weight)
        self.proj = CastedLinear(dim, model_dim) if dim != model_dim else None
        if self.proj is not None:
            nn.init.zeros_(self.proj.weight)
            self.proj.needs_init = True  # the table starts at zero: the projection must not
        self.scale = nn.Parameter(torch.tensor(scale_init, dtype=torch.float32))

    def forward(self, ids: Tensor, first: Tensor | None = None) -> Tensor:
        h = self.embed(bigram_index(ids, self.buckets, first))
        if self.trigram:
            h = h + self.embed(trigram_index(ids, self.buckets, first))
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)


def engram_indices(ids: Tensor, buckets: int, orders: int, first: Tensor | None = None) -> Tensor:
    """EngramLite's row indices [..., 2 * orders] into its table of 2 * orders * buckets rows: two bigram
    hash heads, then (orders >= 2) two trigram heads, each offset into its own slice of ``buckets`` rows. A
    token before the row, or (given ``first``) in another document, counts as 0."""
    prev = F.pad(ids[:, :-1], (1, 0), value=0)
    if first is not None:
        prev = prev.masked_fill(first, 0)
    idx = [(prev * 1009 + ids) % buckets, ((prev * 2719 + 314159) ^ (ids * 3137)) % buckets + buckets]
    if orders >= 2:
        prev2 = F.pad(prev[:, :-1], (1, 0), value=0)
        if first is not None:
            prev2 = prev2.masked_fill(_back(first, 2), 0)
        idx.append(((prev2 * 36313) ^ (prev * 27191) ^ (ids * 4903)) % buckets + 2 * buckets)
        idx.append(((prev2 * 7919) ^ (prev * 4391) ^ (ids * 6151)) % buckets + 3 * buckets)
    return torch.stack(idx, dim=-1)


class EngramLite(nn.Module):
    """#1089's multi-head hashed n-gram embedding: ``heads`` hash heads per order (bigram, trigram) into one
    table of dim ``dim_per_head`` (N(0, 0.01²)), concatenated, projected to the model width by a
    zero-initialised matrix and gated per channel by sigmoid(ngram_gate) (gate init 0, i.e. 0.5)."""

    def __init__(self, buckets: int, heads: int, orders: int, dim_per_head: int, model_dim: int):
        super().__init__()
        if heads != 2 or orders not in (1, 2):
            raise ValueError(f"model.engram_heads must be 2 and model.engram_orders 1 or 2 (the #1089 hashes), "
                             f"got heads={heads} orders={orders}")
        self.buckets, self.orders = buckets, orders
        self.embed = nn.Embedding(orders * heads * buckets, dim_per_head)
        nn.init.normal_(self.embed.weight, std=0.01)
        self.proj = CastedLinear(orders * heads * dim_per_head, model_dim, zero_init=True)
        self.ngram_gate = nn.Parameter(torch.zeros(model_dim))

    def forward(self, ids: Tensor, first: Tensor | None = None) -> Tensor:
        flat = self.embed(engram_indices(ids, self.buckets, self.orders, first)).flatten(-2)
        out = self.proj(flat)
        return out * torch.sigmoid(self.ngram_gate.to(out.dtype))[None, None, :]


class ValueEmbedding(nn.Module):
    """One shared table vocab x ``dim`` (N(0, 0.01²)), projected to the K/V width (zero, then the model's
    initialiser) and scaled (init 0.1); the model adds it, times a per-layer scale, to V in chosen layers."""

    def __init__(self, vocab_size: int, dim: int, kv_dim: int, scale_init: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=0.01)
        self.proj = CastedLinear(dim, kv_dim) if dim != kv_dim else None
        if self.proj is not None:
            nn.init.zeros_(self.proj.weight)
            self.proj.needs_init = True
        self.scale = nn.Parameter(torch.tensor(scale_init, dtype=torch.float32))

    def forward(self, ids: Tensor) -> Tensor:
        h = self.embed(ids)
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)
