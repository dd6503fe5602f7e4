"""Autoregressive self-generation with a KV cache (#1019's calibration data, techniques.md §5).

Each sequence starts from one uniform random token; then ``seq_len - 1`` tokens are sampled from
softmax(logits / temperature). Sequences come in batches, batch b sampled from a generator seeded with
(seed, b): the tokens of a batch do not depend on which rank makes it or how many ranks share the work. A
rank decodes all of its batches in one loop (one model call per position, not one per batch).
#1019 recomputed the whole prefix at every step (197 s on 8xH100); the cache makes each step one position.
RoPE uses the base of the full ``seq_len`` throughout (the length the model trained at); the record's
recomputation used the base of the current prefix, which above 1024 positions changes with every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _generator(seed: int, batch_index: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + batch_index)
    return g


@torch.inference_mode()
def generate(model: nn.Module, shares: list[tuple[int, int]], seq_len: int, temperature: float, seed: int,
             device: torch.device, autocast_dtype: torch.dtype | None = None) -> Tensor:
    """[sum n, seq_len] token ids for ``shares`` [(batch index, n), ...]: one decoding loop for all of them,
    each batch sampled from its own generator (so a batch's tokens do not depend on what it is decoded with)."""
    if temperature <= 0:
        raise ValueError(f"calibration.temperature must be > 0, got {temperature}")
    gens = [_generator(seed, b, device) for b, _ in shares]
    bounds = [0]
    for _, n in shares:
        bounds.append(bounds[-1] + n)
    tokens = torch.empty(bounds[-1], seq_len, dtype=torch.long, device=device)
    for g, lo, hi in zip(gens, bounds, bounds[1:]):
        tokens[lo:hi, 0] = torch.randint(0, model.vocab_size, (hi - lo,), generator=g, device=device)
    state = model.decode_state(seq_len)
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else torch.autocast(device.type, enabled=False)
    was_training = model.training
    model.eval()
    with ctx:
        for t in range(seq_len - 1):
            probs = torch.softmax(model.decode(tokens[:, t : t + 1], state)[:, -1].float() / temperature, dim=-1)
            for g, lo, hi in zip(gens, bounds, bounds[1:]):
                tokens[lo:hi, t + 1] = torch.multinomial(probs[lo:hi], 1, generator=g).squeeze(1)
    model.train(was_training)
    return tokens


def generate_batch(model: nn.Module, batch: int, seq_len: int, temperature: float, seed: int, batch_index: int,
                   device: torch.device, autocast_dtype: torch.dtype | None = None) -> Tensor:
    """[batch, seq_len] sampled token ids of one batch (see the module docstring)."""
    return generate(model, [(batch_index, batch)], seq_len, temperature, seed, device, autocast_dtype)


@torch.inference_mode()
def generate_by_recomputation(model: nn.Module, batch: int, seq_len: int, temperature: float, seed: int,
                              batch_index: int, device: torch.device) -> Tensor:
    """The same sampling, recomputing the whole prefix at every step (the records' way; for checking)."""
    g = _generator(seed, batch_index, device)
    tokens = torch.empty(batch, seq_len, dtype=torch.long, device=device)
    tokens[:, 0] = torch.randint(0, model.vocab_size, (batch,), generator=g, device=device)
    was_training = model.training
    model.eval()
    for t in range(seq_len - 1):
        logits = model._project(model.hidden(tokens[:, : t + 1], rope_len=seq_len), None)[:, -1].float()
        tokens[:, t + 1] = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=g).squeeze(1)
    model.train(was_training)
    return tokens
