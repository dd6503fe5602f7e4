"""Document masking (#1530 on): attention that never crosses a document start, in training and every eval.

The segments come from the tokens on the device, never from the host: a segment starts at each BOS token, at the
row's first position, and (``max_len`` > 0) every ``max_len`` tokens after a document's start, which is how the
records cut a long document in their flat 98,304-token rows (``_build_cu_seqlens``'s ``max_doc_len``). Segment
ids are a cumulative sum, so no step waits for the GPU to say where the documents are, and every path that runs
the model on token rows (training, the standard and sliding evals, TTT) masks the same way.

``Documents`` holds what attention needs: the segment id of each position and, on CUDA, flex attention's block
mask (only the blocks that hold a visible pair are computed); elsewhere SDPA under an explicit mask, in bands of
``max_len`` queries when the row is longer than two segments can be (the packing loader's flat rows). The records call
FlashAttention-3's variable-length kernel with ``cu_seqlens``; here the fallback is flex attention, which is
exact on the same segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def segment_ids(ids: Tensor, bos_id: int, max_len: int = 0) -> Tensor:
    """[B, T] int32, nondecreasing along each row: position t's segment. A new segment starts at position 0, at
    every ``bos_id`` token, and every ``max_len`` positions after a document's start (0: never)."""
    T = ids.size(-1)
    pos = torch.arange(T, device=ids.device)
    start = ids == bos_id
    start[..., 0] = True
    if max_len > 0:
        doc_start = torch.cummax(torch.where(start, pos, 0), dim=-1).values
        start = start | ((pos - doc_start) % max_len == 0)
    return start.to(torch.int32).cumsum(-1, dtype=torch.int32)


def first_of_document(ids: Tensor, bos_id: int) -> Tensor:
    """[B, T] bool: positions whose previous token belongs to another document (a BOS, or the row's first)."""
    first = ids == bos_id
    first[..., 0] = True
    return first


@dataclass
class Documents:
    """The segments of a batch of rows (``build``) and the masks attention uses for them."""

    seg: Tensor                 # [B, T] int32
    max_len: int = 0            # no segment is longer (0: unbounded)
    block_mask: object = None   # flex attention's BlockMask (CUDA)
    _masks: dict | None = None

    @classmethod
    def build(cls, ids: Tensor, bos_id: int, max_len: int = 0) -> Documents:
        seg = segment_ids(ids, bos_id, max_len)
        return cls(seg, max_len, block_mask=block_mask(seg) if ids.is_cuda else None)

    def banded(self) -> bool:
        """Whether attention runs in blocks of ``max_len`` queries over their block and the one before: exact, as
        no segment reaches further back, and ~T / (2 max_len) times less work than the whole row."""
        return 0 < self.max_len and 2 * self.max_len < self.seg.size(-1)

    def mask(self) -> Tensor:
        """[B, 1, T, T], or banded [B * n, 1, M, 2M]: True where a query may see a key (computed once per batch)."""
        self._masks = self._masks or {}
        if "mask" not in self._masks:
            if self.banded():
                sq, sk = _bands(self.seg, self.max_len, -1)
                self._masks["mask"] = _band_mask(sq, sk, self.max_len)
            else:
                self._masks["mask"] = allowed(self.seg, self.seg.size(-1))[:, None]
        return self._masks["mask"]


def allowed(seg: Tensor, tq: int) -> Tensor:
    """[B, tq, T] bool: the last ``tq`` positions' queries may see key j when j is not after them and in the
    same segment."""
    T = seg.size(-1)
    kpos = torch.arange(T, device=seg.device)
    causal = kpos[None, :] <= kpos[T - tq:, None]
    return causal[None] & (seg[:, T - tq:, None] == seg[:, None, :])


def _bands(t: Tensor, M: int, fill: float) -> tuple[Tensor, Tensor]:
    """t [B, T, ...] padded to n blocks of M: the blocks [B * n, M, ...] and each block with the one before it
    [B * n, 2M, ...] (the first block's predecessor and the padding are ``fill``)."""
    B, T = t.shape[:2]
    pad = (-T) % M
    if pad:
        t = torch.cat((t, t.new_full((B, pad, *t.shape[2:]), fill)), dim=1)
    blocks = t.view(B, -1, M, *t.shape[2:])
    before = torch.cat((torch.full_like(blocks[:, :1], fill), blocks[:, :-1]), dim=1)
    return blocks.flatten(0, 1), torch.cat((before, blocks), dim=2).flatten(0, 1)


def _band_mask(sq: Tensor, sk: Tensor, M: int) -> Tensor:
    qpos = torch.arange(M, device=sq.device)
    kpos = torch.arange(-M, M, device=sq.device)
    causal = kpos[None, :] <= qpos[:, None]
    return (causal[None] & (sq[:, :, None] == sk[:, None, :]))[:, None]


def sdpa(q: Tensor, k: Tensor, v: Tensor, docs: Documents) -> Tensor:
    """Attention of q [B, T, H, D] over k, v [B, T, Hkv, D] within documents by SDPA under an explicit mask
    (the CPU's path, and the GPU's where flex attention is not wanted); [B, T, H, D]."""
    B, T = q.shape[:2]
    gqa = k.size(2) != q.size(2)
    if docs.banded():
        M = docs.max_len
        qb, _ = _bands(q, M, 0.0)
        _, kb = _bands(k, M, 0.0)
        _, vb = _bands(v, M, 0.0)
        out = F.scaled_dot_product_attention(qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2),
                                             attn_mask=docs.mask(), enable_gqa=gqa).transpose(1, 2)
        return out.reshape(B, -1, *out.shape[2:])[:, :T]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=docs.mask(), enable_gqa=gqa).transpose(1, 2)


def block_mask(seg: Tensor, block: int = 128):
    """Flex attention's block mask for causal attention within segments, built at block granularity.

    ``create_block_mask`` evaluates the mask at every (query, key) pair: 9.7e9 of them for a 98,304-token packed
    row, 9.7 GB in eager mode. Segment ids are nondecreasing along a row, so a block's ids lie between its first
    and last; key block j < query block i holds a visible pair exactly when j's last id equals i's first, and
    every pair is visible when j's first equals i's last. The diagonal block is always partial (causal)."""
    from torch.nn.attention.flex_attention import BlockMask

    B, T = seg.shape
    n = -(-T // block)
    starts = torch.arange(n, device=seg.device) * block
    first = seg[:, starts]                                           # [B, n]
    last = seg[:, (starts + block - 1).clamp(max=T - 1)]
    qi, kj = torch.arange(n, device=seg.device)[:, None], torch.arange(n, device=seg.device)[None, :]
    below = (kj < qi)[None]
    full = below & (first[:, None, :] == last[:, :, None])           # [B, q block, kv block]
    partial = (below & (last[:, None, :] == first[:, :, None]) & ~full) | (kj == qi)[None]

    def blocks(m: Tensor) -> tuple[Tensor, Tensor]:
        count = m.sum(-1, dtype=torch.int32)
        order = torch.argsort((~m).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return count[:, None], order[:, None]

    def same_document(b, h, q, kv):
        return (kv <= q) & (seg[b, q] == seg[b, kv])

    return BlockMask.from_kv_blocks(*blocks(partial), *blocks(full), BLOCK_SIZE=block, mask_mod=same_document,
                                    seq_lengths=(T, T))


_FLEX = None


def flex(q: Tensor, k: Tensor, v: Tensor, docs: Documents) -> Tensor:
    """Flex attention of q [B, T, H, D] over k, v [B, T, Hkv, D] under the documents' block mask; [B, T, H, D].
    Compiled once here, so an eager caller (an uncompiled eval) gets the fused kernel, not the reference that
    materialises every score."""
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention, dynamic=False)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    out = _FLEX(qt, kt, vt, block_mask=docs.block_mask, enable_gqa=k.size(2) != q.size(2))
    return out.transpose(1, 2)
