"""The GPT of the challenge's naive baseline (and the trunk later records extend).

tok_emb -> RMSNorm -> x0; L blocks, the first floor(L/2) pushing U-Net skips that the later blocks
pop (LIFO) with learnable per-channel weights; each block mixes its input with x0 (``resid_mix``),
then adds scaled attention and ReLU² MLP outputs. Output: final RMSNorm, tied (or separate) head,
logit softcap ``c * tanh(z / c)``, cross-entropy in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.models.attention import CausalSelfAttention
from golf.models.layers import CastedLinear, rms_norm, rotary_tables

# Parameter names kept in fp32, routed to the scalar optimizer and stored unquantized.
CONTROL_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc = CastedLinear(dim, hidden)
        self.proj = CastedLinear(hidden, dim, zero_init=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, mlp_hidden: int, qk_gain_init: float):
        super().__init__()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads, qk_gain_init)
        self.mlp = MLP(dim, mlp_hidden)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x: Tensor, x0: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x), cos, sin)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class GPT(nn.Module):
    """Baseline GPT. Sizes and initialisation come from keyword arguments (``conf/model/*.yaml``)."""

    def __init__(
        self,
        *,
        vocab_size: int,
        num_layers: int = 9,
        model_dim: int = 512,
        num_heads: int = 8,
        num_kv_heads: int = 4,
        mlp_mult: float = 2.0,
        tie_embeddings: bool = True,
        tied_embed_init_std: float = 0.005,
        logit_softcap: float = 30.0,
        rope_base: float = 10000.0,
        qk_gain_init: float = 1.5,
    ):
        super().__init__()
        if logit_softcap <= 0:
            raise ValueError(f"logit_softcap must be positive, got {logit_softcap}")
        self.vocab_size = vocab_size
        self.logit_softcap = logit_softcap
        self.rope_base = rope_base
        self.head_dim = model_dim // num_heads
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        self.num_encoder_layers = num_layers // 2
        self.num_decoder_layers = num_layers - self.num_encoder_layers
        num_skips = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, model_dim))
        hidden = int(mlp_mult * model_dim)
        self.blocks = nn.ModuleList(
            Block(model_dim, num_heads, num_kv_heads, hidden, qk_gain_init) for _ in range(num_layers)
        )
        self.lm_head = None if tie_embeddings else CastedLinear(model_dim, vocab_size, zero_init=True)
        if tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=tied_embed_init_std)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimizer role: ``matrix`` (Muon), ``embed``, ``head`` and ``scalar`` (Adam)."""
        groups: dict[str, list[nn.Parameter]] = {"matrix": [], "embed": [self.tok_emb.weight], "head": [], "scalar": []}
        for name, p in self.blocks.named_parameters():
            is_control = p.ndim < 2 or any(pat in name for pat in CONTROL_PATTERNS)
            groups["scalar" if is_control else "matrix"].append(p)
        groups["scalar"].append(self.skip_weights)
        if self.lm_head is not None:
            groups["head"].append(self.lm_head.weight)
        return groups

    def cast_for_training(self, dtype: torch.dtype) -> GPT:
        """Store the embedding table in the compute dtype (as the records do); matrices of
        ``CastedLinear`` and all control/low-dimensional tensors stay fp32."""
        self.tok_emb.to(dtype)
        return self

    def hidden(self, input_ids: Tensor) -> Tensor:
        x = rms_norm(self.tok_emb(input_ids))
        x0 = x
        cos, sin = rotary_tables(input_ids.size(1), self.head_dim, self.rope_base, input_ids.device)
        skips: list[Tensor] = []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0, cos, sin)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0, cos, sin)
        return rms_norm(x)

    def logits(self, input_ids: Tensor) -> Tensor:
        h = self.hidden(input_ids)
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        z = F.linear(h, weight.to(h.dtype))
        return self.logit_softcap * torch.tanh(z / self.logit_softcap)

    def forward(self, input_ids: Tensor, target_ids: Tensor, reduction: str = "mean") -> Tensor:
        """Cross-entropy (nats) of ``target_ids`` given ``input_ids``; ``reduction='none'`` gives per-token."""
        logits = self.logits(input_ids)
        loss = F.cross_entropy(logits.float().flatten(0, 1), target_ids.flatten(), reduction=reduction)
        return loss if reduction != "none" else loss.view_as(target_ids)
