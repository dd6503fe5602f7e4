"""Hand-written GPU kernels, each beside the PyTorch reference it is tested against, chosen by ``model.kernels``:
``torch`` (the references everywhere), ``triton`` (the kernels on CUDA tensors; an error where triton does not
import) or ``auto`` (the kernels when triton imports). On CPU tensors every mode runs the reference."""

from __future__ import annotations

MODES = ("auto", "triton", "torch")


def _triton_imports() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


TRITON = _triton_imports()


def triton_available() -> bool:
    return TRITON


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"model.kernels must be one of {MODES}, got {mode!r}")
    if mode == "triton" and not TRITON:
        raise ValueError("model.kernels=triton but triton does not import; choose auto or torch")
    return mode


def use_triton(mode: str, *tensors) -> bool:
    """Whether ``mode`` runs the Triton kernel on these tensors (all on CUDA)."""
    return TRITON and mode in ("auto", "triton") and all(t.is_cuda for t in tensors)
