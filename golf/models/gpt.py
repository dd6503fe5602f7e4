"""The GPT of the challenge's records: the naive baseline's trunk and every option later records add.

tok_emb (+ BigramHash / EngramLite) (-> #1667's input SmearGate) -> RMSNorm (-> SmearGate) -> x0; the blocks
(golf.models.block) in their order (golf.models.depth: some run again under depth recurrence), the first half
pushing U-Net skips that the second half pops (LIFO), added with per-channel weights (``plain``) or blended by a
sigmoid gate (``gated``, #1089); each block mixes its input with x0 (``resid_mix``), then adds scaled
attention and MLP outputs, with optional LN scale 1/sqrt(layer+1); two-lane blocks carry both lanes to the end.
With ``doc_mask`` nothing crosses a BOS (golf.models.documents).
Output: final RMSNorm, tied (or separate) head, softcap c*tanh(z/c), cross-entropy in fp32;
multi-token-prediction heads add w * mean_k CE(head_k(h_t), y_{t+k+1}) in training and are never exported.
Block matrices keep per-layer names (``blocks.{i}.attn.c_q.weight``, ..., ``blocks.{i}.mlp.proj.weight``):
the optimizer batches them by shape, quantization sees each layer's matrix under a stable name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.kernels import check_mode, mode_for, softcap_ce
from golf.kernels.rotary import rms_norm, rope_base_for, rotary_tables
from golf.models.attention import CausalSelfAttention, KVCache
from golf.models.block import MLP, Block
from golf.models.depth import check_loop, encoder_length, layer_order
from golf.models.documents import Documents, first_of_document
from golf.models.embeddings import BigramHash, EngramLite, InputSmearGate, SmearGate, ValueEmbedding
from golf.models.init import init_weights
from golf.models.layers import CastedLinear
from golf.models.lora import DocLoRA
from golf.models.qat import FakeQuant


def layer_count(n: int | str, num_layers: int) -> int:
    """A count of layers where ``"all"`` means every layer at any depth (``model.xsa_last_n=all``)."""
    if isinstance(n, str):
        if n.strip().lower() != "all":
            raise ValueError(f"model.xsa_last_n must be a number of layers or 'all', got {n!r}")
        return num_layers
    return int(n)


def layer_indices(layers: Sequence[int], num_layers: int) -> list[int]:
    """Layer indices where a negative one counts from the last layer (-1: the last), as Python's do: [-2, -1] are
    the last two layers, or the only one of a one-layer model; a positive index outside the model is kept as
    given, for the check to name."""
    return sorted({i + num_layers if i < 0 else i for i in layers if i >= -num_layers})


@dataclass
class DecodeState:
    """What incremental decoding carries between calls: each layer's K/V, the last two token ids (hash
    embeddings) and the last normalised embedding (SmearGate); RoPE uses the base of ``capacity`` positions.
    After ``make_static`` the position is the device tensor ``pos`` and every buffer is updated in place."""

    caches: list[KVCache]
    capacity: int
    prev_ids: Tensor | None = None
    prev_x: Tensor | None = None
    rope: tuple[Tensor, Tensor] | None = None  # cos/sin of every position up to capacity
    pos: Tensor | None = None                   # static mode: the next position, [1] on the device

    @property
    def length(self) -> int:
        return self.caches[0].length

    def make_static(self) -> Tensor:
        """Switch to fixed shapes (for one decoding step captured in a CUDA graph and replayed); returns ``pos``,
        which the caller advances in place after each step. Needs two decoded positions (the hash embeddings
        then see a context of fixed width)."""
        if self.prev_ids is None or self.prev_ids.size(1) < 2 or self.rope is None:
            raise ValueError("a static decode state needs two positions decoded first")
        self.pos = torch.tensor([self.length], device=self.prev_ids.device)
        for c in self.caches:
            c.pos = self.pos
        self.prev_ids, self.prev_x = self.prev_ids.clone(), self.prev_x.clone()
        return self.pos

    def remember(self, ids: Tensor, x: Tensor) -> None:
        if self.pos is None:
            self.prev_ids, self.prev_x = ids, x
        else:
            self.prev_ids.copy_(ids)
            self.prev_x.copy_(x)


class GPT(nn.Module):
    """Every record's GPT; sizes, features and initialisation come from keyword arguments (``conf/model/*.yaml``)."""

    def __init__(
        self, *, vocab_size: int, num_layers: int = 9, model_dim: int = 512, num_heads: int = 8, num_kv_heads: int = 4,
        mlp_mult: float = 2.0, activation: str = "relu2", mlp_slope: float = 0.5, mlp_slopes: Sequence[float] | None = None,
        tie_embeddings: bool = True, tied_embed_init_std: float = 0.005, logit_softcap: float = 30.0,
        qk_gain_init: float = 1.5, rope_base: float = 10000.0, rope_dims: int = 0, rope_ntk_seq_len: int | None = None,
        ln_scale: bool = False, xsa_last_n: int | str = 0, smear_gate: bool | str = False, smear_leaks_bos: bool = False,
        bigram_buckets: int = 0, bigram_dim: int = 128, bigram_scale_init: float = 0.05, trigram: bool = False,
        engram_buckets: int = 0, engram_heads: int = 2, engram_orders: int = 2, engram_dim_per_head: int = 32,
        ve_dim: int = 0, ve_layers: Sequence[int] = (-2, -1), ve_scale_init: float = 0.1,
        value_residual: bool = False, gated_attention: bool = False, gate_bias_init: float = 4.0,
        skips: str = "plain", init: str = "default", ortho_proj_scale: bool = False, mimetic_vo_alpha: float = 0.0,
        mtp_heads: int = 0, mtp_loss_weight: float = 0.2, attn_kernel: str = "flash", kernels: str | Sequence[str] = "torch",
        doc_mask: bool = False, bos_id: int = 1, doc_max_len: int = 0,
        loop_layers: Sequence[int] | None = None, loop_repeats: int = 0, loop_from: float = 0.0,
        parallel_from: int | None = None, parallel_lanes: int = 2, lane_resid_init: float = 1.1,
        attn_out_gate: str | None = None, gate_window: int = 12, attn_gate_scale: float = 1.0,
        attn_gate_init_std: float = 0.0,
    ):
        super().__init__()
        head_dim = model_dim // num_heads
        xsa_last_n, ve_layers = layer_count(xsa_last_n, num_layers), layer_indices(ve_layers, num_layers)
        self._check(dict(num_layers=num_layers, model_dim=model_dim, num_heads=num_heads, logit_softcap=logit_softcap,
                         xsa_last_n=xsa_last_n, rope_dims=rope_dims, rope_ntk_seq_len=rope_ntk_seq_len, ve_dim=ve_dim,
                         ve_layers=ve_layers, skips=skips, bigram_buckets=bigram_buckets,
                         engram_buckets=engram_buckets), head_dim)
        self.vocab_size, self.num_layers, self.logit_softcap = vocab_size, num_layers, logit_softcap
        self.ce_mode = mode_for(check_mode(kernels), "softcap_ce")
        self.rope_dims = rope_dims or head_dim
        self.rope_base, self.rope_ntk_seq_len = rope_base, rope_ntk_seq_len
        self.mtp_loss_weight = mtp_loss_weight
        if doc_max_len < 0:
            raise ValueError(f"model.doc_max_len must be >= 0 (0: documents are not cut), got {doc_max_len}")
        self.doc_mask, self.bos_id, self.doc_max_len = bool(doc_mask), int(bos_id), int(doc_max_len)
        # Built in the records' order: the random draws of construction and init then match theirs.
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        self.bigram = BigramHash(bigram_buckets, bigram_dim, model_dim, bigram_scale_init, trigram) if bigram_buckets else None
        self.engram = (EngramLite(engram_buckets, engram_heads, engram_orders, engram_dim_per_head, model_dim)
                       if engram_buckets else None)
        self.smear = self._smear(smear_gate, gate_window, model_dim)
        self.smear_leaks_bos = bool(smear_leaks_bos)
        self.loop, self.loop_repeats = check_loop(loop_layers, loop_repeats, num_layers), int(loop_repeats)
        if not 0 <= loop_from < 1:
            raise ValueError(f"model.loop_from must be in [0, 1) (the fraction of training before the loop runs), "
                             f"got {loop_from}")
        self.loop_from, self.looping = float(loop_from), True  # training switches it (golf.trainer); eval loops
        lanes_from = self._lanes_from(parallel_from, parallel_lanes, num_layers)
        self.num_encoder_layers = num_layers // 2
        self.num_decoder_layers = num_layers - self.num_encoder_layers
        orders = [layer_order(num_layers, self.loop, self.loop_repeats, on) for on in (False, True)]
        num_skips = max(min(encoder_length(o), len(o) - encoder_length(o)) for o in orders) if skips != "none" else 0
        self.skip_weights = nn.Parameter(torch.ones(num_skips, model_dim))
        self.skip_gates = nn.Parameter(torch.zeros(num_skips, model_dim)) if skips == "gated" else None
        skip_init = init in ("banked", "frontier")
        xsa_from = num_layers - xsa_last_n
        slopes = list(mlp_slopes) if mlp_slopes is not None else []
        self.blocks = nn.ModuleList(
            Block(model_dim,
                  CausalSelfAttention(model_dim, num_heads, num_kv_heads, qk_gain_init, xsa=i >= xsa_from,
                                      gated=gated_attention, gate_bias_init=gate_bias_init,
                                      value_residual=value_residual, kernel=attn_kernel, skip_init=skip_init,
                                      kernels=kernels, out_gate=attn_out_gate, gate_window=gate_window,
                                      gate_scale=attn_gate_scale, gate_init_std=attn_gate_init_std),
                  MLP(model_dim, int(mlp_mult * model_dim), activation, slopes[i] if i < len(slopes) else mlp_slope,
                      skip_init=skip_init, kernels=kernels),
                  1.0 / math.sqrt(i + 1) if ln_scale else 1.0, parallel_lanes if i >= lanes_from else 0,
                  lane_resid_init)
            for i in range(num_layers))
        for o in orders:
            if any(self.blocks[i].lanes for i in o[: encoder_length(o)]):
                raise ValueError(f"model.parallel_from={parallel_from} puts a parallel layer in the U-Net's encoder "
                                 f"(virtual layers {o[: encoder_length(o)]}); start it in the decoder")
        self.ve_layers = sorted(ve_layers) if ve_dim else []
        self.ve = ValueEmbedding(vocab_size, ve_dim, num_kv_heads * head_dim, ve_scale_init) if ve_dim else None
        self.ve_layer_scales = nn.ParameterList(nn.Parameter(torch.ones(1)) for _ in self.ve_layers)
        self.lm_head = None if tie_embeddings else CastedLinear(model_dim, vocab_size, zero_init=True)
        self.mtp_heads = nn.ModuleList(CastedLinear(model_dim, vocab_size, zero_init=True) for _ in range(mtp_heads))
        self.qat = FakeQuant()
        for m in self.quantized_linears():
            object.__setattr__(m, "fake_quant", self.qat)
        init_weights(self, init, tied_embed_std=tied_embed_init_std if tie_embeddings else None,
                     proj_scale=ortho_proj_scale, mimetic_alpha=mimetic_vo_alpha)

    @staticmethod
    def _smear(kind: bool | str, window: int, dim: int) -> nn.Module | None:
        """``smear_gate``: false; true or ``channel`` (#414's per-channel gate, after the norm); ``input`` (#1667's
        gate from the current token's first ``gate_window`` channels, before the norm)."""
        if kind in (False, None, "none"):
            return None
        if kind in (True, "channel"):
            return SmearGate(dim)
        if kind == "input":
            return InputSmearGate(window, dim)
        raise ValueError(f"model.smear_gate must be false, true (channel, #414) or input (#1667), got {kind!r}")

    @staticmethod
    def _lanes_from(parallel_from: int | None, lanes: int, num_layers: int) -> int:
        """The first physical layer with parallel residuals (num_layers: none)."""
        if parallel_from is None:
            return num_layers
        if lanes not in (1, 2):
            raise ValueError(f"model.parallel_lanes must be 1 (GPT-J, #1493) or 2 (two lanes, #1530+), got {lanes}")
        first = parallel_from + num_layers if parallel_from < 0 else parallel_from
        if not 0 <= first < num_layers:
            raise ValueError(f"model.parallel_from={parallel_from} must index a layer of {num_layers} (or be null)")
        return first

    @staticmethod
    def _check(kw: dict, head_dim: int) -> None:
        L = kw["num_layers"]
        if L < 1 or kw["model_dim"] % kw["num_heads"]:
            raise ValueError(f"model.num_layers must be >= 1 and model.model_dim ({kw['model_dim']}) divisible by "
                             f"model.num_heads ({kw['num_heads']})")
        if kw["logit_softcap"] <= 0:
            raise ValueError(f"model.logit_softcap must be positive, got {kw['logit_softcap']}")
        if not 0 <= kw["xsa_last_n"] <= L:
            raise ValueError(f"model.xsa_last_n must be in 0..num_layers={L}, or all, got {kw['xsa_last_n']}")
        rd = kw["rope_dims"] or head_dim
        if rd % 2 or rd > head_dim or (kw["rope_ntk_seq_len"] is not None and rd <= 2):
            raise ValueError(f"model.rope_dims must be even, in 4..head_dim={head_dim} (0: all), got {kw['rope_dims']}")
        if kw["ve_dim"] and any(not 0 <= i < L for i in kw["ve_layers"]):
            raise ValueError(f"model.ve_layers must index layers 0..{L - 1} (or -{L}..-1 from the last), got "
                             f"{list(kw['ve_layers'])}")
        if kw["skips"] not in ("plain", "gated", "none"):
            raise ValueError(f"model.skips must be plain, gated or none, got {kw['skips']!r}")
        if kw["bigram_buckets"] and kw["engram_buckets"]:
            raise ValueError("model.bigram_buckets and model.engram_buckets are alternatives; set one of them to 0")

    # ------------------------------------------------------------------------------------ structure

    @property
    def attention_kernel(self) -> str:
        """The attention kernel the blocks run on CUDA (``auto`` resolved); on the CPU SDPA picks its own."""
        return self.blocks[0].attn.kernel

    def quantized_linears(self) -> list[CastedLinear]:
        """The block matrices: what int5/int6/int8 exports quantize and QAT fake-quantizes."""
        return [m for b in self.blocks for m in (b.attn.c_q, b.attn.c_k, b.attn.c_v, b.attn.proj, b.mlp.fc, b.mlp.proj)]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimizer role: ``matrix`` (block matrices, MTP heads), ``embed`` (token, hash and VE
        tables), ``proj`` (hash/VE projections: Muon in #414/#1089, Adam in #549-#1019), ``head``, ``scalar``."""
        matrix = {id(m.weight) for m in self.quantized_linears()} | {id(h.weight) for h in self.mtp_heads}
        groups: dict[str, list[nn.Parameter]] = {"matrix": [], "embed": [], "proj": [], "head": [], "scalar": []}
        for name, p in self.named_parameters():
            if id(p) in matrix:
                role = "matrix"
            elif name.endswith("embed.weight") or name == "tok_emb.weight":
                role = "embed"
            elif name.endswith("proj.weight") and p.ndim == 2:
                role = "proj"
            elif name == "lm_head.weight":
                role = "head"
            else:
                role = "scalar"
            groups[role].append(p)
        return groups

    def cast_for_training(self, dtype: torch.dtype) -> GPT:
        """Store the embedding tables in the compute dtype (as the records do); every matrix of a
        ``CastedLinear`` and all control/low-dimensional tensors stay fp32."""
        for m in (self.tok_emb, self.bigram, self.engram, self.ve):
            if m is not None:
                (m if isinstance(m, nn.Embedding) else m.embed).to(dtype)
        return self

    def export_state_dict(self) -> dict[str, Tensor]:
        """The weights a submission ships: everything but the multi-token-prediction heads."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("mtp_heads.")}

    def load_export_state_dict(self, state: dict[str, Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("mtp_heads.")]
        if missing or unexpected:
            raise KeyError(f"exported state does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")

    # ------------------------------------------------------------------------------------ forward

    def embed(self, input_ids: Tensor, state: DecodeState | None = None) -> Tensor:
        """tok_emb (+ hash embeddings, which see the previous tokens) (-> #1667's input SmearGate) -> RMSNorm
        (-> #414's SmearGate). Under document masking neither the hashes nor the smear see a token of another
        document (``smear_leaks_bos``: the smear does, as #1736/#1787's did)."""
        ctx = input_ids if state is None or state.prev_ids is None else torch.cat((state.prev_ids, input_ids), dim=1)
        first = first_of_document(input_ids, self.bos_id) if self.doc_mask and state is None else None
        T = input_ids.size(1)
        x = self.tok_emb(input_ids)
        for extra in (self.bigram, self.engram):
            if extra is not None:
                x = x + (extra(ctx) if first is None else extra(ctx, first))[:, -T:]
        before = None if state is None else state.prev_x
        smear_first = None if self.smear_leaks_bos else first
        if self.smear is not None and self.smear.pre_norm:
            seen, x = x, self.smear(x, before, smear_first)
            x = rms_norm(x)
        else:
            x = seen = rms_norm(x)
            if self.smear is not None:
                x = self.smear(x, before, smear_first)
        if state is not None:
            state.remember(ctx[:, -2:], seen[:, -1:])
        return x

    def hidden(self, input_ids: Tensor, state: DecodeState | None = None, rope_len: int | None = None,
               last: int | None = None, lora: DocLoRA | None = None) -> Tensor:
        """Final hidden states. ``state``: decode incrementally after the positions already cached. RoPE's
        (NTK-rescaled) base is that of ``rope_len`` positions (default: this call's length, or the state's
        capacity). ``last``: only the last ``last`` positions' states; the last block then computes its
        queries, MLP and output for those alone (exact: every earlier layer still sees every position).
        ``lora``: per-row test-time adapters (golf.models.lora), one set per virtual layer."""
        start = 0 if state is None else state.length
        if last is not None and (state is not None or not 0 < last <= input_ids.size(1)):
            raise ValueError(f"hidden(last={last}) needs 1 <= last <= {input_ids.size(1)} positions and no decode state")
        if state is not None and start + input_ids.size(1) > state.capacity:
            raise ValueError(f"decode state is full: {start} of {state.capacity} positions used")
        x = x0 = self.embed(input_ids, state)
        T = input_ids.size(1)
        base_len = rope_len or (state.capacity if state is not None else T)
        if self.doc_mask and self.doc_max_len:  # no query sees further back than a segment (flat packed rows)
            base_len = min(base_len, self.doc_max_len)
        cos, sin = self._rope(start + T, base_len, input_ids.device, state)
        if state is not None and state.pos is not None:
            cos, sin = cos.index_select(0, state.pos), sin.index_select(0, state.pos)
        else:
            cos, sin = cos[start : start + T], sin[start : start + T]
        ve_base = self.ve(input_ids) if self.ve is not None else None
        docs = Documents.build(input_ids, self.bos_id, self.doc_max_len) if self.doc_mask and state is None else None
        return rms_norm(self._trunk(x, x0, cos, sin, ve_base, state, last, docs, lora))

    def _trunk(self, x: Tensor, x0: Tensor, cos: Tensor, sin: Tensor, ve_base: Tensor | None,
               state: DecodeState | None, last: int | None, docs: Documents | None,
               lora: DocLoRA | None = None) -> Tensor:
        """The blocks in their (virtual) order with the U-Net skips; two-lane blocks carry both lanes to the end,
        where their mean is the output."""
        order = self.layer_order()
        n_enc = encoder_length(order)
        skips: list[Tensor] = []
        v0 = lanes = None
        for vi, i in enumerate(order):
            block = self.blocks[i]
            j = vi - n_enc
            if block.lanes == 2 and lanes is None:
                lanes = (x, x)
            if 0 <= j < self.skip_weights.size(0) and skips:
                if lanes is None:
                    x = self._skip(x, skips.pop(), j)
                else:  # the skip goes into lane 0 only
                    lanes = (self._skip(lanes[0], skips.pop(), j), lanes[1])
            ve = None
            if ve_base is not None and i in self.ve_layers:
                ve = ve_base * self.ve_layer_scales[self.ve_layers.index(i)].to(ve_base.dtype)
            q_from = x0.size(1) - last if last is not None and vi == len(order) - 1 else 0
            cache = None if state is None else state.caches[vi]
            slot = None if lora is None else lora.slot(vi)
            if block.lanes == 2:
                lanes, raw_v = block.two_lanes(lanes, x0, cos, sin, ve, v0, cache, q_from, docs, slot)
            else:
                x, raw_v = block(x, x0, cos, sin, ve, v0, cache, q_from, docs, slot)
            if v0 is None:
                v0 = raw_v
            if vi < n_enc:
                skips.append(x)
        return x if lanes is None else 0.5 * (lanes[0] + lanes[1])

    def _skip(self, x: Tensor, skip: Tensor, j: int) -> Tensor:
        s = self.skip_weights[j].to(x.dtype) * skip
        return x + s if self.skip_gates is None else torch.lerp(s, x, torch.sigmoid(self.skip_gates[j].to(x.dtype)))

    def layer_order(self) -> list[int]:
        """The physical block of each virtual layer (depth recurrence: golf.models.depth), as it runs now."""
        return layer_order(self.num_layers, self.loop, self.loop_repeats, self.looping)

    def _rope(self, length: int, base_len: int, device: torch.device, state: DecodeState | None) -> tuple[Tensor, Tensor]:
        """cos/sin for ``length`` positions at the RoPE base of ``base_len`` positions (a decode state keeps its own)."""
        if state is not None:
            if state.rope is None:
                base = rope_base_for(state.capacity, self.rope_base, self.rope_dims, self.rope_ntk_seq_len)
                state.rope = rotary_tables(state.capacity, self.rope_dims, base, device)
            return state.rope
        base = rope_base_for(base_len, self.rope_base, self.rope_dims, self.rope_ntk_seq_len)
        return rotary_tables(length, self.rope_dims, base, device)

    def decode_state(self, capacity: int) -> DecodeState:
        return DecodeState([KVCache(capacity) for _ in self.layer_order()], capacity)

    def decode(self, input_ids: Tensor, state: DecodeState) -> Tensor:
        """Logits of ``input_ids``' positions given everything ``state`` has seen (a prompt at an empty state,
        then one position per call)."""
        return self._project(self.hidden(input_ids, state), None)

    def _project(self, h: Tensor, head: nn.Module | None, lora: DocLoRA | None = None) -> Tensor:
        weight = (self.tok_emb.weight if self.lm_head is None else self.lm_head.weight) if head is None else head.weight
        z = F.linear(h, weight.to(h.dtype))
        if lora is not None and lora.head is not None:
            z = z + lora.head(h)
        return self.logit_softcap * torch.tanh(z / self.logit_softcap)

    def logits(self, input_ids: Tensor) -> Tensor:
        return self._project(self.hidden(input_ids), None)

    def forward(self, input_ids: Tensor, target_ids: Tensor, reduction: str = "mean",
                lora: DocLoRA | None = None) -> Tensor:
        """Cross-entropy (nats) of ``target_ids`` given ``input_ids``; ``reduction='none'`` gives per-token.
        ``lora``: each row's test-time adapters (golf.models.lora)."""
        h = self.hidden(input_ids, lora=lora)
        if reduction == "mean" and self.ce_mode != "torch" and h.is_cuda and lora is None:
            weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
            z = F.linear(h, weight.to(h.dtype))
            loss = softcap_ce.loss(z.flatten(0, 1), target_ids.flatten(), self.logit_softcap, self.ce_mode)
        else:
            loss = F.cross_entropy(self._project(h, None, lora).float().flatten(0, 1), target_ids.flatten(),
                                   reduction=reduction)
        if reduction == "none":
            return loss.view_as(target_ids)
        if self.training and len(self.mtp_heads) and self.mtp_loss_weight > 0:
            extra = [F.cross_entropy(self._project(h[:, : -(k + 1)], head).float().flatten(0, 1),
                                     target_ids[:, k + 1 :].flatten())
                     for k, head in enumerate(self.mtp_heads) if h.size(1) > k + 1]
            if extra:
                loss = loss + self.mtp_loss_weight * torch.stack(extra).mean()
        return loss
