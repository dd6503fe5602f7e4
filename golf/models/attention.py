"""Causal self-attention of the records: grouped K/V heads, QK-norm, (partial) RoPE, a learnable per-head
query gain, and the optional XSA, value embedding, value residual and output gate (techniques.md §2.3).

Logits are g_h * (q̂ . k̂) / sqrt(head_dim): q and k are RMS-normalised per head, rotated, then q is
scaled by ``q_gain``. Tensors stay [B, T, H, D] (FlashAttention-3's layout); SDPA gets a transposed view.
The kernel is chosen by ``kernel``: ``fa3`` (flash_attn_interface), ``fa4`` (FlashAttention-4's CuTe-DSL
kernels, golf.kernels.flash4), an SDPA backend (``cudnn``, ``flash``, ``efficient``, ``math``) forced with
``sdpa_kernel`` inside the forward, which, unlike the global ``enable_*_sdp`` flags, is honoured in compiled
graphs, or ``auto`` (FA3 if it imports, else FA4 if it runs here, else cuDNN). FA3 and FA4 take bf16/fp16: fp32
tensors (train.precision=fp32) go to cuDNN. On the CPU every choice runs SDPA's default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from golf.kernels import check_mode, flash4, mode_for
from golf.kernels.qk_norm_rope import fuses_qkv, norm_rope, qkv_norm_rope, qkv_norm_rope_wide
from golf.kernels.xsa import exclusive
from golf.models.documents import Documents, allowed, flex, sdpa
from golf.models.layers import CastedLinear, matmul_dtype
from golf.models.lora import SlotLoRA

SDPA_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
KERNELS = ("auto", "fa3", "fa4", *SDPA_BACKENDS)
HALF = (torch.bfloat16, torch.float16)


def _load_fa3():
    try:
        from flash_attn_interface import flash_attn_func
    except ImportError:
        return None
    return flash_attn_func


_FA3 = _load_fa3()  # looked up once at import: compiled code only ever sees the function (or None)


def fa3_function():
    """FlashAttention-3's ``flash_attn_func`` when ``flash_attn_interface`` imports, else None."""
    return _FA3


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"model.attn_kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "fa3" and fa3_function() is None:
        raise ValueError("model.attn_kernel=fa3 but flash_attn_interface (FlashAttention-3) does not import; "
                         "install it or choose auto, cudnn or flash")
    if kernel == "fa4" and flash4.problem() is not None:
        raise ValueError(f"model.attn_kernel=fa4 but {flash4.problem()}; choose auto, cudnn or flash")
    return kernel


def resolve_kernel(kernel: str) -> str:
    """``auto``: FlashAttention-3 when it imports, else FlashAttention-4 when it runs here, else cuDNN (on our
    H100 1.5x faster than flash for the #1019 shape, reference-measurements.md)."""
    if kernel == "auto":
        return "fa3" if fa3_function() is not None else "fa4" if flash4.problem() is None else "cudnn"
    return kernel


def attend(q: Tensor, k: Tensor, v: Tensor, kernel: str, docs: Documents | None = None) -> Tensor:
    """Causal attention of q [B, T, H, D] over k, v [B, T, Hkv, D] (H a multiple of Hkv); returns [B, T, H, D].
    ``kernel`` is resolved (not ``auto``): see ``resolve_kernel``. With ``docs`` a query sees only its own
    segment's keys: flex attention on CUDA, SDPA under the dense mask on the CPU."""
    if docs is not None:
        return flex(q, k, v, docs) if q.is_cuda else sdpa(q, k, v, docs)
    if q.is_cuda and kernel in ("fa3", "fa4") and q.dtype not in HALF:
        kernel = "cudnn"
    if q.is_cuda and kernel == "fa3":
        out = _FA3(q, k, v, causal=True)
        return out[0] if isinstance(out, tuple) else out
    if q.is_cuda and kernel == "fa4":
        return flash4.attend(q, k, v)
    gqa = k.size(2) != q.size(2)
    if gqa and q.is_cuda and kernel == "efficient":  # the memory-efficient kernel has no grouped K/V form
        k, v = (t.repeat_interleave(q.size(2) // k.size(2), dim=2) for t in (k, v))
        gqa = False
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if not q.is_cuda:
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=gqa).transpose(1, 2)
    with sdpa_kernel([SDPA_BACKENDS[kernel]]):
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=gqa).transpose(1, 2)


DECODE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]


def attend_last(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of the newest position q [B, 1, H, D] over every cached one (decoding: no mask). On CUDA the
    flash kernel (math as fallback): cuDNN, which SDPA would pick, rejects a key length of 1 and builds a new
    graph for every cache length."""
    if q.size(1) != 1:
        raise ValueError("a KV cache takes a prompt at an empty cache, then one position at a time")
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    gqa = k.size(2) != q.size(2)
    if not q.is_cuda:
        return F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=gqa).transpose(1, 2)
    with sdpa_kernel(DECODE_BACKENDS):
        return F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=gqa).transpose(1, 2)


class KVCache:
    """One layer's keys and values for incremental decoding, stored head-major [B, Hkv, capacity, D] (the
    layout attention reads; allocated at the first append, in the keys' dtype), filled up to ``length``. In
    static mode (``pos`` set, a device tensor [1]) a step writes its position in place and attends to every
    slot under a mask, so its shapes never change and one step can be captured in a CUDA graph."""

    def __init__(self, capacity: int):
        self.capacity, self.length = capacity, 0
        self.k = self.v = None
        self.pos: Tensor | None = None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v [B, n, Hkv, D]; every filled position's K and V as [B, length, Hkv, D] views."""
        n = k.size(1)
        if self.k is None:
            self.k = k.new_zeros(k.size(0), k.size(2), self.capacity, k.size(3))
            self.v = v.new_zeros(v.size(0), v.size(2), self.capacity, v.size(3))
        if self.length + n > self.capacity:
            raise ValueError(f"KV cache of {self.capacity} positions is full")
        self.k[:, :, self.length : self.length + n] = k.transpose(1, 2)
        self.v[:, :, self.length : self.length + n] = v.transpose(1, 2)
        self.length += n
        return self.k[:, :, : self.length].transpose(1, 2), self.v[:, :, : self.length].transpose(1, 2)

    def write(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Static mode: store one position at ``pos``; every slot's K and V [B, Hkv, capacity, D], and the
        mask of those filled."""
        self.k.index_copy_(2, self.pos, k.transpose(1, 2).to(self.k.dtype))
        self.v.index_copy_(2, self.pos, v.transpose(1, 2).to(self.v.dtype))
        return self.k, self.v, torch.arange(self.capacity, device=k.device) <= self.pos


def _scores_fp32(qg: Tensor, k: Tensor) -> Tensor:
    """qg @ k^T [B, Hkv, M, S] in fp32. On CUDA from bf16/fp16 operands, cuBLAS's fp32-output bmm reads the K
    cache once in its own dtype (upcasting it first cost decoding 64 x 2048 3.4 s of its 10.5 s); inside
    ``torch.compile`` (the sliding eval's last block) the upcast matmul is kept, which inductor lowers."""
    if qg.is_cuda and k.dtype in (torch.bfloat16, torch.float16) and not torch.compiler.is_compiling():
        B, hkv, m, D = qg.shape
        k3 = k.reshape(B * hkv, k.size(-2), D)
        return torch.bmm(qg.to(k.dtype).reshape(B * hkv, m, D), k3.transpose(1, 2),
                         out_dtype=torch.float32).view(B, hkv, m, k.size(-2))
    return torch.matmul(qg.float(), k.float().transpose(-1, -2))


def attend_grouped(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """Attention of q [B, Tq, H, D] over head-major k, v [B, Hkv, S, D] where ``allowed`` [Tq, S] (or per row,
    [B, Tq, S]) says which
    key each query may see; two batched matmuls per KV group, so each K and V is read once, never repeated to
    the query heads. For the few queries of static decoding and of the sliding eval's last block, where SDPA
    has no fused kernel for an explicit mask with grouped K/V (its math path repeats K and V: for the #1019
    model decoding 64 x 2048 tokens, most of a step's time)."""
    B, Tq, H, D = q.shape
    hkv = k.size(1)
    g = H // hkv
    qg = q.reshape(B, Tq, hkv, g, D).permute(0, 2, 3, 1, 4).reshape(B, hkv, g * Tq, D)
    with torch.autocast(q.device.type, enabled=False):  # scores in fp32, as flash keeps them: bf16 logits of
        scores = _scores_fp32(qg, k) * D ** -0.5                        # ~30 would be off by ~0.1
    mask = allowed.repeat(g, 1) if allowed.dim() == 2 else allowed.repeat(1, g, 1)[:, None]
    probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    y = torch.matmul(probs.to(v.dtype), v)
    return y.view(B, hkv, g, Tq, D).permute(0, 3, 1, 2, 4).reshape(B, Tq, H, D)


def attend_masked(q: Tensor, k: Tensor, v: Tensor, valid: Tensor) -> Tensor:
    """Static decoding: q [B, 1, H, D] over a fixed number of head-major slots, of which ``valid`` [S] are filled."""
    return attend_grouped(q, k, v, valid[None, :])


def attend_tail(q: Tensor, k: Tensor, v: Tensor, docs: Documents | None = None) -> Tensor:
    """Causal attention of the last Tq positions q [B, Tq, H, D] over all S positions k, v [B, S, Hkv, D]
    (within their segments, with ``docs``)."""
    tq, s = q.size(1), k.size(1)
    if docs is not None:
        mask = allowed(docs.seg, tq)
    else:
        mask = torch.arange(s, device=q.device)[None, :] <= torch.arange(s - tq, s, device=q.device)[:, None]
    return attend_grouped(q, k.transpose(1, 2), v.transpose(1, 2), mask)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, qk_gain_init: float, *, xsa: bool = False,
                 gated: bool = False, gate_bias_init: float = 4.0, value_residual: bool = False,
                 kernel: str = "flash", skip_init: bool = False, kernels: str | Sequence[str] = "torch",
                 out_gate: str | None = None, gate_window: int = 12, gate_scale: float = 1.0,
                 gate_init_std: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"model_dim={dim} must be divisible by num_heads={num_heads}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be divisible by num_kv_heads={num_kv_heads}")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dim // num_heads
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, skip_init=skip_init)
        self.c_k = CastedLinear(dim, kv_dim, skip_init=skip_init)
        self.c_v = CastedLinear(dim, kv_dim, skip_init=skip_init)
        self.proj = CastedLinear(dim, dim, zero_init=True, skip_init=skip_init)
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))
        self.xsa, self.kernel = xsa, resolve_kernel(check_kernel(kernel))
        self.kernels = check_mode(kernels)
        self.qk_mode, self.xsa_mode = mode_for(self.kernels, "qk_norm_rope"), mode_for(self.kernels, "xsa")
        self.qkv_mode = mode_for(self.kernels, "qkv")
        # K/V repeated to the query heads by the fused projection's kernel: FA3's and FA4's backwards then write dK, dV
        # per head instead of accumulating each group's in fp32 and converting (value residual mixes in layer 0's V
        # after the projection, so it keeps grouped K/V)
        self.wide_kv = (mode_for(self.kernels, "wide_kv") != "torch" and self.kernel in ("fa3", "fa4")
                        and num_kv_heads < num_heads and not value_residual)
        self.attn_gate = None
        if gated:  # per-head output gate sigmoid(W x + b), W = 0, b = 4 (#635)
            self.attn_gate = CastedLinear(dim, num_heads, bias=True)
            nn.init.zeros_(self.attn_gate.weight)
            nn.init.constant_(self.attn_gate.bias, gate_bias_init)
        self.vr_lambda = nn.Parameter(torch.tensor([0.5, 0.5])) if value_residual else None
        self.gate_kind = self._check_out_gate(out_gate, gated, dim, gate_window)
        self.gate_window, self.gate_scale = gate_window, gate_scale
        self.gate_w = None  # the April records' per-head output gate (a raw parameter: no RNG draw unless std > 0)
        if self.gate_kind is not None:
            self.gate_w = nn.Parameter(torch.zeros(num_heads, dim if self.gate_kind == "dense" else gate_window))
            if gate_init_std > 0:
                nn.init.normal_(self.gate_w, mean=0.0, std=gate_init_std)

    @staticmethod
    def _check_out_gate(kind: str | None, gated: bool, dim: int, window: int) -> str | None:
        """sigmoid(scale * W x) per head: ``dense`` (#1736, W [H, dim], N(0, std)) or ``sparse`` (#1787/#1855,
        W [H, window] on the first ``window`` channels of x, zeros)."""
        if kind in (None, "none"):
            return None
        if kind not in ("dense", "sparse"):
            raise ValueError(f"model.attn_out_gate must be null, dense or sparse, got {kind!r}")
        if gated:
            raise ValueError("model.gated_attention (#635) and model.attn_out_gate are alternatives; set one of them")
        if kind == "sparse" and not 0 < window <= dim:
            raise ValueError(f"model.gate_window must be in 1..model_dim={dim}, got {window}")
        return kind

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, ve: Tensor | None = None,
                v0: Tensor | None = None, cache: KVCache | None = None, q_from: int = 0,
                out_scale: Tensor | None = None, docs: Documents | None = None,
                lora: SlotLoRA | None = None) -> tuple[Tensor, Tensor | None]:
        """Returns the output (its channels scaled by ``out_scale``, folded into proj's weight) and, with value
        residual on, this layer's own V (layer 0's becomes v0). With a ``cache`` the positions of ``x`` follow the
        cached ones (cos/sin are theirs), and attend to them too. ``docs``: attention within documents.
        ``q_from`` > 0: outputs for positions q_from.. only (their queries over every key; the sliding eval's
        last block, where only the scored positions are needed). ``lora``: test-time adapters on q, k, v (before
        their norms) and on the input, added to the output ("o", scaled by ``out_scale`` as the projection is)."""
        B, T, D = x.shape
        xq = x[:, q_from:] if q_from else x
        Tq = T - q_from
        fused = not q_from and cache is None and lora is None and self._fuses_qkv(x, 2 * cos.size(-1))
        wide = fused and self.wide_kv
        if wide:  # k and v at the query heads for attention, v_own (v + ve) at its own for XSA
            q, k, v, v_own = self._qkv(x, cos, sin, ve, wide=True)
        elif fused:
            q, k, v = self._qkv(x, cos, sin)
        else:
            q, k, v = self.c_q(xq), self.c_k(x), self.c_v(x)
            if lora is not None:
                q, k, v = (t if a is None else t + a(src) for t, a, src in ((q, lora.q, xq), (k, lora.k, x), (v, lora.v, x)))
            q = q.reshape(B, Tq, self.num_heads, self.head_dim)
            k = k.reshape(B, T, self.num_kv_heads, self.head_dim)
            v = v.reshape(B, T, self.num_kv_heads, self.head_dim)
        if ve is not None and not wide:
            v = v + ve.view_as(v)
        raw_v = v if self.vr_lambda is not None else None
        if self.vr_lambda is not None and v0 is not None:
            lam = self.vr_lambda.to(v.dtype)
            v = lam[0] * v0 + lam[1] * v
        if not fused:
            mode = self.qk_mode if cache is None else "torch"  # decoding keeps the references: a few rows per call
            q = norm_rope(q, cos[q_from:], sin[q_from:], self.q_gain, mode)
            k = norm_rope(k, cos, sin, None, mode)
        if q_from:
            y = attend_tail(q, k, v, docs)
        elif cache is None:
            y = attend(q, k, v, self.kernel, docs)
        elif cache.pos is not None:
            y = attend_masked(q, *cache.write(k, v))
        else:
            ks, vs = cache.append(k, v)
            y = attend(q, ks, vs, self.kernel) if ks.size(1) == T > 1 else attend_last(q, ks, vs)
        if self.xsa:
            v_xsa = v_own if wide else v[:, q_from:] if q_from else v
            y = exclusive(y, v_xsa, self.xsa_mode if cache is None else "torch")
        if self.attn_gate is not None:
            y = y * torch.sigmoid(self.attn_gate(xq)).unsqueeze(-1)
        elif self.gate_w is not None:
            src = xq[..., : self.gate_window] if self.gate_kind == "sparse" else xq
            y = y * torch.sigmoid(self.gate_scale * F.linear(src, self.gate_w.to(src.dtype))).unsqueeze(-1)
        out = self.proj(y.reshape(B, Tq, D), out_scale)
        if lora is not None and lora.o is not None:
            o = lora.o(xq)
            out = out + (o if out_scale is None else out_scale.to(o.dtype) * o)
        return out, raw_v

    def _fuses_qkv(self, x: Tensor, rope_dims: int) -> bool:
        """One projection for q, k and v (``model.kernels``'s ``qkv``): where its kernel runs, and no hook watches
        c_q, c_k or c_v (calibration's record each matrix's input)."""
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in (self.c_q, self.c_k, self.c_v))
        return not hooked and fuses_qkv(self.qkv_mode, x, self.head_dim, rope_dims)

    def _qkv(self, x: Tensor, cos: Tensor, sin: Tensor, ve: Tensor | None = None,
             wide: bool = False) -> tuple[Tensor, ...]:
        """q, k prepared (norm, RoPE, gain) and v, from one GEMM over [c_q; c_k; c_v] and one kernel: its input
        gradient is then one GEMM too, instead of three whose outputs are summed. ``wide``: k and v (plus ``ve``)
        repeated to the query heads, and v at its own heads (empty without XSA)."""
        B, T, _ = x.shape
        dtype = matmul_dtype(x)
        w = torch.cat([m.cast_weight(dtype) for m in (self.c_q, self.c_k, self.c_v)])
        qkv = F.linear(x.to(dtype), w).view(B, T, self.num_heads + 2 * self.num_kv_heads, self.head_dim)
        if wide:
            ve = None if ve is None else ve.view(B, T, self.num_kv_heads, self.head_dim)
            return qkv_norm_rope_wide(qkv, self.num_heads, self.num_kv_heads, cos, sin, self.q_gain, ve, self.xsa,
                                      self.qkv_mode)
        return qkv_norm_rope(qkv, self.num_heads, self.num_kv_heads, cos, sin, self.q_gain, self.qkv_mode)
