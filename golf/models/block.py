"""One layer of the records' GPT: the MLP (ReLU² or LeakyReLU(slope)², optionally in quack's fused GEMMs) and the
block around attention and MLP: sequential, GPT-J parallel (#1493) or the two-lane form of #1530-#1855.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.kernels import check_mode, fused_mlp, mode_for
from golf.kernels.rotary import rms_norm
from golf.models.attention import CausalSelfAttention, KVCache
from golf.models.documents import Documents
from golf.models.layers import CastedLinear, matmul_dtype
from golf.models.lora import SlotLoRA

ACTIVATIONS = ("relu2", "leaky_relu2")


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str, slope: float, skip_init: bool = False,
                 kernels: str | Sequence[str] = "torch"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.fc = CastedLinear(dim, hidden, skip_init=skip_init)
        self.proj = CastedLinear(hidden, dim, zero_init=True, skip_init=skip_init)
        self.slope = slope if activation == "leaky_relu2" else None
        self.kernels = check_mode(kernels)
        self.mode = mode_for(self.kernels, "mlp")
        self.quack_act, self.quack_problem = fused_mlp.plan(self.mode, self.slope)

    def forward(self, x: Tensor, out_scale: Tensor | None = None) -> Tensor:
        """proj(act(fc(x))), its output channels scaled by ``out_scale`` (folded into proj's weight)."""
        if self.training and self.mode != "torch" and not (self.fc._forward_hooks or self.proj._forward_hooks):
            # training only: hooked layers (calibration's) must see their inputs, and evaluation and generation
            # (CUDA-graph captured) were never run with quack's GEMMs
            dtype = matmul_dtype(x)
            x = x.to(dtype)
            return fused_mlp.mlp(x, self.fc.cast_weight(dtype), self.proj.cast_weight(dtype, out_scale), self.slope,
                                 self.mode, self.quack_act, self.quack_problem)
        h = self.fc(x)
        h = torch.relu(h) if self.slope is None else F.leaky_relu(h, negative_slope=self.slope)
        return self.proj(h.square(), out_scale)


class Block(nn.Module):
    """One layer. ``lanes``: 0 sequential (attention, then the MLP on its result); 1 parallel, GPT-J style (#1493:
    both read the same input); 2 the two-lane form of #1530-#1855 (attention reads lane 0, the MLP lane 1, and a
    learned 2x2 mix writes both back, each lane's residual scaled by its own factor, init 1.1)."""

    def __init__(self, dim: int, attn: CausalSelfAttention, mlp: MLP, ln_scale: float, lanes: int = 0,
                 lane_resid_init: float = 1.1):
        super().__init__()
        self.attn, self.mlp = attn, mlp
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))
        self.ln_scale = ln_scale
        self.lanes = lanes
        if lanes == 2:
            self.lane_resid = nn.Parameter(torch.full((2,), lane_resid_init))  # rho: lane i's own residual
            self.lane_post = nn.Parameter(torch.ones(2, 2))                    # P[source (attn, mlp), lane]

    def norm(self, x: Tensor) -> Tensor:
        return rms_norm(x) * self.ln_scale if self.ln_scale != 1.0 else rms_norm(x)

    def forward(self, x: Tensor, x0: Tensor, cos: Tensor, sin: Tensor, ve: Tensor | None = None,
                v0: Tensor | None = None, cache: KVCache | None = None, q_from: int = 0,
                docs: Documents | None = None, lora: SlotLoRA | None = None) -> tuple[Tensor, Tensor | None]:
        """``q_from`` > 0: the output of positions q_from.. only (see ``CausalSelfAttention.forward``); ``docs``:
        attention within documents; ``lora``: this layer's test-time adapters."""
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        # attn_scale and mlp_scale scale the output channels of attention's and the MLP's last matrix: folded into
        # those weights, no pass over the tokens multiplies by them or reduces their gradients
        h = self.norm(x)
        a, raw_v = self.attn(h, cos, sin, ve, v0, cache, q_from, out_scale=self.attn_scale, docs=docs, lora=lora)
        x = (x[:, q_from:] if q_from else x) + a
        if self.lanes == 1:
            return x + self._mlp(h[:, q_from:] if q_from else h, lora), raw_v
        return x + self._mlp(self.norm(x), lora), raw_v

    def _mlp(self, h: Tensor, lora: SlotLoRA | None) -> Tensor:
        out = self.mlp(h, self.mlp_scale)
        if lora is not None and lora.mlp is not None:
            out = out + self.mlp_scale.to(out.dtype) * lora.mlp(h)
        return out

    def two_lanes(self, lanes: tuple[Tensor, Tensor], x0: Tensor, cos: Tensor, sin: Tensor, ve: Tensor | None = None,
                  v0: Tensor | None = None, cache: KVCache | None = None, q_from: int = 0,
                  docs: Documents | None = None, lora: SlotLoRA | None = None
                  ) -> tuple[tuple[Tensor, Tensor], Tensor | None]:
        """The two-lane layer: attention reads resid_mix(lane 0, x0), the MLP reads lane 1."""
        lane0, lane1 = lanes
        mix = self.resid_mix.to(lane0.dtype)
        a, raw_v = self.attn(self.norm(mix[0] * lane0 + mix[1] * x0), cos, sin, ve, v0, cache, q_from,
                             out_scale=self.attn_scale, docs=docs, lora=lora)
        if q_from:
            lane0, lane1 = lane0[:, q_from:], lane1[:, q_from:]
        m = self._mlp(self.norm(lane1), lora)
        r, P = self.lane_resid.to(lane0.dtype), self.lane_post.to(lane0.dtype)
        return (r[0] * lane0 + P[0, 0] * a + P[1, 0] * m, r[1] * lane1 + P[0, 1] * a + P[1, 1] * m), raw_v
