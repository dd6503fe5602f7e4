"""Autoregressive self-generation with a KV cache (#1019's calibration data, techniques.md §5).

Each sequence starts from one uniform random token; then ``seq_len - 1`` tokens are sampled from
softmax(logits / temperature). Sequences come in batches, batch b sampled from a generator seeded with
(seed, b): the tokens of a batch do not depend on which rank makes it or how many ranks share the work. A
rank decodes all of its batches in one loop (one model call per position, not one per batch).
#1019 recomputed the whole prefix at every step (197 s on 8xH100); the cache makes each step one position,
and on CUDA one step of fixed shapes is captured in a CUDA graph and replayed: eager decoding of 64 x 2048
tokens of the #1019 model spent 31-40 s on an H100 in Python dispatch and kernel launches, the graph 6.3 s
(benchmarks.md).
RoPE uses the base of the full ``seq_len`` throughout (the length the model trained at); the record's
recomputation used the base of the current prefix, which above 1024 positions changes with every step.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn


def _generator(seed: int, batch_index: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + batch_index)
    return g


DECODE_MODES = ("auto", "eager", "static", "graph")


def check_decode_mode(mode: str) -> str:
    if mode not in DECODE_MODES:
        raise ValueError(f"calibration.decode must be one of {DECODE_MODES}, got {mode!r}")
    return mode


def _sampler(tokens: Tensor, gens: list[torch.Generator], bounds: list[int], temperature: float):
    def sample(t: int, logits: Tensor) -> None:
        """Position t+1 of every sequence from position t's logits, each batch from its own generator:
        argmax(p / e), e ~ Exp(1), which is how ``torch.multinomial`` draws one sample (same generator calls,
        same tokens) without its two host-synchronising validity checks per call."""
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        e = torch.empty_like(probs)
        for g, lo, hi in zip(gens, bounds, bounds[1:]):
            e[lo:hi].exponential_(generator=g)
        tokens[:, t + 1] = (probs / e).argmax(dim=-1)
    return sample


@torch.inference_mode()
def generate(model: nn.Module, shares: list[tuple[int, int]], seq_len: int, temperature: float, seed: int,
             device: torch.device, autocast_dtype: torch.dtype | None = None, mode: str = "auto") -> Tensor:
    """[sum n, seq_len] token ids for ``shares`` [(batch index, n), ...]: one decoding loop for all of them,
    each batch sampled from its own generator (so a batch's tokens do not depend on what it is decoded with).

    ``mode``: ``eager`` decodes one position per model call over the filled part of the cache; ``static``
    (after two eager positions) keeps every shape fixed, the cache masked; ``graph`` replays one static step
    captured in a CUDA graph, so a position costs no Python dispatch or kernel launches; ``auto`` is graph on
    CUDA, else eager."""
    if temperature <= 0:
        raise ValueError(f"calibration.temperature must be > 0, got {temperature}")
    if check_decode_mode(mode) == "graph" and device.type != "cuda":
        raise ValueError(f"calibration.decode=graph needs a CUDA device, not {device}; use auto, eager or static")
    mode = ("graph" if device.type == "cuda" else "eager") if mode == "auto" else mode
    gens = [_generator(seed, b, device) for b, _ in shares]
    bounds = [0]
    for _, n in shares:
        bounds.append(bounds[-1] + n)
    tokens = torch.empty(bounds[-1], seq_len, dtype=torch.long, device=device)
    for g, lo, hi in zip(gens, bounds, bounds[1:]):
        tokens[lo:hi, 0] = torch.randint(0, model.vocab_size, (hi - lo,), generator=g, device=device)
    sample = _sampler(tokens, gens, bounds, temperature)
    state = model.decode_state(seq_len)
    # No autocast weight cache: a captured graph must not hold casts made outside it.
    ctx = torch.autocast(device.type, **({"dtype": autocast_dtype} if autocast_dtype else {}),
                         enabled=autocast_dtype is not None, cache_enabled=False)
    was_training = model.training
    model.eval()
    with ctx:
        eager_steps = seq_len - 1 if mode == "eager" else min(2, seq_len - 1)
        for t in range(eager_steps):
            sample(t, model.decode(tokens[:, t : t + 1], state)[:, -1])
        if eager_steps < seq_len - 1:
            _decode_static(model, state, tokens, eager_steps, sample, graph=mode == "graph")
    model.train(was_training)
    return tokens


def _decode_static(model: nn.Module, state, tokens: Tensor, first: int, sample, graph: bool) -> None:
    """Positions first+1 .. end, the state in static mode; with ``graph`` the step after the first is captured
    (the first, run eagerly on a side stream, is the capture's warm-up) and replayed for the rest."""
    pos = state.make_static()
    inp = tokens[:, first : first + 1].clone()

    def step() -> Tensor:
        return model.decode(inp, state)[:, -1]

    def advance(t: int) -> None:
        pos.add_(1)
        inp.copy_(tokens[:, t + 1 : t + 2])

    side = torch.cuda.Stream() if graph else None
    if side is not None:
        side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
        sample(first, step())
        advance(first)
    rest = range(first + 1, tokens.size(1) - 1)
    if not graph:
        for t in rest:
            sample(t, step())
            advance(t)
        return
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = step()
    for t in rest:
        g.replay()
        sample(t, out)
        advance(t)


def generate_batch(model: nn.Module, batch: int, seq_len: int, temperature: float, seed: int, batch_index: int,
                   device: torch.device, autocast_dtype: torch.dtype | None = None, mode: str = "auto") -> Tensor:
    """[batch, seq_len] sampled token ids of one batch (see the module docstring)."""
    return generate(model, [(batch_index, batch)], seq_len, temperature, seed, device, autocast_dtype, mode)


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
