"""Hand-written GPU kernels, each beside the PyTorch reference it is tested against, chosen by ``model.kernels``:
``torch`` (the references everywhere), ``triton`` (golf's Triton kernels on CUDA tensors, an error where triton does
not import; the MLP as under ``auto``), ``auto`` (the Triton kernels when triton imports, the fused MLP when
quack-kernels imports on an SM90+ GPU), or a list of kernel names (the Triton ones as ``auto``, ``mlp`` then
required; the others' references: ``model.kernels=[qk_norm_rope]`` measures what the XSA kernel brings). On CPU
tensors every mode runs the reference. The names: ``qk_norm_rope`` (q/k RMSNorm, RoPE and query gain in one pass),
``qkv`` (one GEMM for c_q, c_k and c_v, whose q and k that kernel prepares: without it, three GEMMs), ``wide_kv``
(with ``qkv`` under FlashAttention-3 or -4: that kernel writes K and V repeated to the query heads, so attention's
backward skips the fp32 accumulation of grouped dK, dV), ``xsa`` (exclusive self-attention), ``mlp`` (the
activation in quack's GEMM epilogues) and ``softcap_ce`` (the training loss over softcapped logits in one pass; only
where listed, e.g. ``model.kernels=[qk_norm_rope,qkv,wide_kv,xsa,softcap_ce]``, until it is measured on a GPU)."""

from __future__ import annotations

from collections.abc import Sequence

MODES = ("auto", "triton", "torch")
NAMES = ("qk_norm_rope", "qkv", "wide_kv", "xsa", "mlp", "softcap_ce")


def _triton_imports() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


TRITON = _triton_imports()


def triton_available() -> bool:
    return TRITON


def cute_dsl_problem(module: str, package: str, majors: Sequence[int], arch_error: str, install: str) -> str | None:
    """Why a CuTe-DSL package (``package``, imported as ``module``) cannot run here, or None when it can: no CUDA
    device; a GPU whose compute-capability major is not in ``majors`` (``arch_error``, formatted with ``sm``); or
    a failed import (an ImportError, or the CUTLASS DSL failing to load its libraries), with ``install`` as the fix."""
    import importlib

    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    major, minor = torch.cuda.get_device_capability()
    if major not in majors:
        return arch_error.format(sm=f"SM{major}{minor}")
    try:
        importlib.import_module(module)
    except Exception as e:
        return f"{package} does not import ({type(e).__name__}: {e}); {install}"
    return None


def check_mode(mode: str | Sequence[str]) -> str | tuple[str, ...]:
    if not isinstance(mode, str):
        names = tuple(str(n) for n in mode)
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"model.kernels lists unknown kernels {unknown}; the kernels are {NAMES}")
        return names
    if mode not in MODES:
        raise ValueError(f"model.kernels must be one of {MODES}, got {mode!r}")
    if mode == "triton" and not TRITON:
        raise ValueError("model.kernels=triton but triton does not import; choose auto or torch")
    return mode


OPT_IN = ("softcap_ce",)  # run only where listed: not yet measured on a GPU against the reference's step


def mode_for(kernels: str | tuple[str, ...], name: str) -> str:
    """The mode kernel ``name`` runs in under ``model.kernels`` (checked by ``check_mode``): a listed ``mlp`` is
    ``required`` (quack must import), a listed Triton kernel ``auto``, an unlisted one ``torch``; an ``OPT_IN``
    kernel runs only where listed."""
    if isinstance(kernels, str):
        return "torch" if name in OPT_IN and kernels != "torch" else kernels
    return "torch" if name not in kernels else ("required" if name == "mlp" else "auto")


def use_triton(mode: str, *tensors) -> bool:
    """Whether ``mode`` runs the Triton kernel on these tensors (all on CUDA)."""
    return TRITON and mode in ("auto", "triton") and all(t.is_cuda for t in tensors)
