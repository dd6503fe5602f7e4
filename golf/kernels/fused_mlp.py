"""The MLP's activation inside GEMM epilogues, through quack-kernels (Tri Dao's CuTe-DSL GEMMs for SM90+).

Why: unfused, fc's GEMM writes h, inductor reads h and writes act(h), and in the backward reads h and the
gradient of act(h) to write h's gradient: two bandwidth-bound passes over [tokens, hidden] per layer and micro-batch,
43.7 ms of the #1019 step on one H100 (docs/benchmarks.md). Fused, fc's GEMM writes h and act(h) from its
accumulator, and proj's input-gradient GEMM multiplies by act'(h) in its epilogue. act(h), which fc's GEMM writes
anyway, is kept for proj's weight gradient: quack's own ``gemm_dact`` would recompute and write it again, a third
[tokens, hidden] tensor in a GEMM bound by its memory traffic, so the backward runs golf's epilogue
(``_dact_epilogue``: h's gradient only) through quack's ``gemm_epilogue``. The other four GEMMs stay cuBLAS's.

Activations: relu² is quack's ``relu_sq``; LeakyReLU(s)² for 0 < s <= 1 is registered here, branch-free:
with b = max(x, s² x), act(x) = x b and act'(x) = 2 b. The epilogue works on the fp32
accumulator, so act(h) is rounded once where the reference rounds h, then act(h).

``model.kernels``: ``auto`` runs it on CUDA tensors when quack imports and the GPU is SM90 or newer; listing
``mlp`` requires both (an error says what is missing); otherwise, and on CPU, ``reference`` runs. The model uses
it in training only (golf.models.block.MLP): evaluation, generation and calibration run the reference.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from golf.kernels import cute_dsl_problem


def reference(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float | None) -> Tensor:
    """proj(act(fc(x))) with act = relu² (``slope`` None) or LeakyReLU(slope)²."""
    h = F.linear(x, w_fc)
    h = torch.relu(h) if slope is None else F.leaky_relu(h, negative_slope=slope)
    return F.linear(h.square(), w_proj)


def errors_vs_fp32(fn, M: int, dim: int, hidden: int, slope: float | None, seed: int = 0,
                   device: str = "cuda") -> tuple[list[Tensor], list[float]]:
    """For the GPU tests and scripts/bench_kernels.py: random bf16 (x, w_fc, w_proj) and output gradient, and
    fn(x, w_fc, w_proj, slope)'s largest relative errors (y, dx, dw_fc, dw_proj) against fp32 math.
    Returns ([x, w_fc, w_proj, dy], errors)."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(M, dim, device=device, generator=g).bfloat16().requires_grad_()
    w_fc = (torch.randn(hidden, dim, device=device, generator=g) / dim**0.5).bfloat16().requires_grad_()
    w_proj = (torch.randn(dim, hidden, device=device, generator=g) / hidden**0.5).bfloat16().requires_grad_()
    dy = torch.randn(M, dim, device=device, generator=g).bfloat16()
    inputs = [x, w_fc, w_proj]
    f32 = [t.detach().float().requires_grad_() for t in inputs]
    exact = [reference(*f32, slope)]
    exact += torch.autograd.grad(exact[0], f32, dy.float())
    out = [fn(x, w_fc, w_proj, slope)]
    out += torch.autograd.grad(out[0], inputs, dy)
    return [*inputs, dy], [((a.float() - e).abs().max() / e.abs().max()).item() for a, e in zip(out, exact)]


@functools.cache
def quack_problem() -> str | None:
    """Why quack's fused MLP cannot run here, or None when it can."""
    return cute_dsl_problem("quack.gemm_interface", "quack-kernels", range(9, 100),
                            "quack's GEMMs need SM90 or newer, this GPU is {sm}", "pip install -e '.[gpu]'")


def plan(mode: str, slope: float | None) -> tuple[str | None, str | None]:
    """(quack's activation name, why the fused MLP cannot run here), settled when the model is built: the
    activation must be registered before torch.compile traces the model, and nothing here should be traced."""
    if mode == "torch":
        return None, "model.kernels leaves the MLP to PyTorch"
    problem = quack_problem()
    if problem is None and slope is not None and not 0.0 <= slope <= 1.0:
        problem = f"the fused MLP takes LeakyReLU slopes in [0, 1], got {slope}"
    return (activation_name(slope) if problem is None else None), problem


def use_quack(mode: str, x: Tensor, problem: str | None) -> bool:
    """Whether ``mode`` (``auto``/``triton``, ``required`` or ``torch``) runs the fused MLP on x, given ``plan``'s
    problem; a listed (required) mlp that cannot run on a CUDA tensor is an error."""
    if mode == "torch" or not x.is_cuda:
        return False
    if problem is None and x.dtype != torch.bfloat16:
        problem = f"the fused MLP takes bf16 inputs, got {x.dtype}"
    if problem is not None and mode == "required":
        raise RuntimeError(f"model.kernels lists mlp, but {problem}; drop mlp from model.kernels or use auto")
    return problem is None


class _LeakyReluSq:
    """LeakyReLU(slope)² for quack's epilogues, on fp32 scalars or pairs: act(x) = x b, and with ``grad`` the pair
    (act'(x) dout, act(x)) = (2 b dout, x b), where b = max(x, s² x) = s² x + (1 - s²) relu(x). quack keys its
    compiled kernels (in memory and on disk) by ``__quack_semantic_key__``, so each slope compiles its own."""

    def __init__(self, slope: float, grad: bool):
        self.slope, self.grad = float(slope), grad

    def __quack_semantic_key__(self) -> tuple:
        return ("golf.leaky_relu_sq", self.slope, self.grad)

    def __call__(self, x, dout=None):
        if isinstance(x, tuple):
            parts = [self(xi, None if dout is None else di) for xi, di in zip(x, dout or (None,) * len(x))]
            return tuple(zip(*parts)) if self.grad else tuple(parts)
        from quack.activation import relu

        s2 = self.slope**2
        b = s2 * x + (1.0 - s2) * relu(x)
        return (2.0 * (dout * b), x * b) if self.grad else x * b


@functools.cache
def activation_name(slope: float | None) -> str:
    """quack's name for the activation, registering LeakyReLU(slope)² (0 < slope <= 1) on first use."""
    if slope is None or slope == 0.0:
        return "relu_sq"
    from quack import activation, gemm_interface

    name = "golf_leaky_relu_sq_" + repr(slope).replace(".", "p")
    activation.act_fn_map[name] = _LeakyReluSq(slope, grad=False)
    activation.dact_fn_map[name] = _LeakyReluSq(slope, grad=True)
    gemm_interface.act_to_pytorch_fn_map[name] = lambda t: F.leaky_relu(t, negative_slope=slope).square()
    return name


@functools.cache
def _dact_epilogue(act: str):
    """quack's epilogue D = act'(C) * acc for the GEMM dy @ w_proj with C = h: h's gradient, and (unlike quack's
    ``gemm_dact``) nothing else stored. Keyed by quack through ``act``'s derivative (``__quack_semantic_key__`` for
    golf's LeakyReLU²)."""
    from quack.activation import dact_fn_map
    from quack.epilogue import gemm_epilogue

    dact = dact_fn_map[act]

    def golf_dact_epi(acc, c):
        dh, _ = dact(c, acc)
        return {"D": dh}

    return gemm_epilogue()(golf_dact_epi)


# explicit schemas: the shipped artifact's minifier drops the annotations custom_op would infer them from
@torch.library.custom_op("golf::fused_mlp", mutates_args=(),
                         schema="(Tensor x, Tensor w_fc, Tensor w_proj, str act) -> (Tensor, Tensor, Tensor)")
def _forward(x: Tensor, w_fc: Tensor, w_proj: Tensor, act: str) -> tuple[Tensor, Tensor, Tensor]:
    """(y, h, act(h)) for x [M, dim], w_fc [hidden, dim], w_proj [dim, hidden], all bf16. One opaque op to inductor
    that returns fresh tensors (inside torch.compile quack's own ops write into preallocated outputs, which
    functionalization has to track), checked by torch.library.opcheck in the GPU tests."""
    from quack.gemm_interface import gemm_act

    h, a = gemm_act(x, w_fc.T, activation=act, tuned=False)
    return torch.mm(a, w_proj.T), h, a


@_forward.register_fake
def _(x: Tensor, w_fc: Tensor, w_proj: Tensor, act: str) -> tuple[Tensor, Tensor, Tensor]:
    h = x.new_empty(x.size(0), w_fc.size(0))
    return x.new_empty(x.size(0), w_proj.size(0)), h, torch.empty_like(h)


@torch.library.custom_op("golf::fused_mlp_backward", mutates_args=(),
                         schema="(Tensor dy, Tensor x, Tensor w_fc, Tensor w_proj, Tensor h, Tensor a, str act) "
                                "-> (Tensor, Tensor, Tensor)")
def _backward(dy: Tensor, x: Tensor, w_fc: Tensor, w_proj: Tensor, h: Tensor, a: Tensor,
              act: str) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dw_fc, dw_proj): proj's input-gradient GEMM applies act'(h) in its epilogue; a = act(h) is the forward's."""
    dy = dy.contiguous()
    dh = _dact_epilogue(act)(dy, w_proj, h, tuned=False, dynamic_scheduler=True)["D"]
    return torch.mm(dh, w_fc), torch.mm(dh.T, x), torch.mm(dy.T, a)


@_backward.register_fake
def _(dy: Tensor, x: Tensor, w_fc: Tensor, w_proj: Tensor, h: Tensor, a: Tensor,
      act: str) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(x), torch.empty_like(w_fc), torch.empty_like(w_proj)


def _setup_context(ctx, inputs, output) -> None:
    x, w_fc, w_proj, act = inputs
    ctx.act = act
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, w_fc, w_proj, output[1], output[2])


def _grad(ctx, dy: Tensor, _dh: Tensor | None, _da: Tensor | None):
    dx, dw_fc, dw_proj = _backward(dy, *ctx.saved_tensors, ctx.act)
    return dx, dw_fc, dw_proj, None


_forward.register_autograd(_grad, setup_context=_setup_context)


def fused_mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor, act: str) -> Tensor:
    """``reference`` through quack's epilogues; x [..., dim] in the weights' dtype (bf16), ``act`` from ``plan``."""
    y, _, _ = _forward(x.reshape(-1, x.size(-1)), w_fc, w_proj, act)
    return y.view(*x.shape[:-1], y.size(-1))


def mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor, slope: float | None, mode: str, act: str | None,
        problem: str | None) -> Tensor:
    """The MLP as ``mode`` and ``plan``'s (act, problem) choose (see the module docstring)."""
    if use_quack(mode, x, problem):
        return fused_mlp(x, w_fc, w_proj, act)
    return reference(x, w_fc, w_proj, slope)
