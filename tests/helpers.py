"""Test doubles importable by ``_target_`` (tests.helpers.*)."""

from __future__ import annotations

import torch

from golf.models.gpt import GPT


class DivergingGPT(GPT):
    """A GPT whose training loss becomes NaN from the ``nan_after``-th forward call on."""

    def __init__(self, *, nan_after: int = 3, **kw):
        super().__init__(**kw)
        self.nan_after = nan_after
        self.calls = 0

    def forward(self, input_ids, target_ids, reduction: str = "mean"):
        loss = super().forward(input_ids, target_ids, reduction)
        if self.training:
            self.calls += 1
            if self.calls >= self.nan_after:
                loss = loss * torch.tensor(float("nan"))
        return loss


class RandomTokens:
    """A loader double: uniform random token batches from a seeded generator, on ``device``, with the
    loader's prefetch/state_dict protocol (the state is the generator's)."""

    def __init__(self, vocab: int = 64, device: str | torch.device = "cpu"):
        self.vocab, self.device = vocab, torch.device(device)
        self.gen = torch.Generator().manual_seed(0)

    def next_batch(self, batch_tokens: int, seq_len: int, accum: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(0, self.vocab, (batch_tokens // (accum * seq_len), seq_len + 1), generator=self.gen)
        t = t.to(self.device)
        return t[:, :-1], t[:, 1:]

    def prefetch(self, *_) -> None:
        pass

    def state_dict(self) -> dict:
        return {"g": self.gen.get_state()}

    def load_state_dict(self, s: dict) -> None:
        self.gen.set_state(s["g"])


def free_port() -> int:
    """A free TCP port on localhost, for a gloo process group of spawned test ranks."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def profiled_compiled_step(model: torch.nn.Module, ids: torch.Tensor) -> tuple[float, set[str]]:
    """Two bf16-autocast forward+backward steps of ``torch.compile(model)`` on CUDA (ids as inputs and targets); the
    second one's loss and the names of the CUDA kernels it ran (the first compiles)."""
    step = torch.compile(model, fullgraph=True)
    for _ in range(2):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step(ids, ids)
            model.zero_grad()
            loss.backward()
            torch.cuda.synchronize()
    return loss.item(), {e.key for e in prof.key_averages()}
