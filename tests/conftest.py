"""Shared fixtures for golf's tests: the reference data, the smoke dataset, Hydra composition, and the
``gpu`` marker (skipped without CUDA)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seeded_rng() -> None:
    """Every test starts from the same global torch seed, so a random draw does not depend on which
    tests ran before it (a subset, a reordering or CI's full run all see the same numbers)."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data directory (/work/shared/data next to the project), or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def testvector(shared_data) -> Callable[[str], dict]:
    """``testvector("quantizers")``: the arrays of ``testvectors/<name>.npz`` (skip if absent)."""
    import numpy as np

    def load(name: str) -> dict:
        path = shared_data / "testvectors" / f"{name}.npz"
        if not path.is_file():
            pytest.skip(f"test vector file not found: {path}")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    return load


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """The embedded smoke dataset (vocab 512), built once per session in a temporary cache root."""
    from golf.data.smoke import build_smoke_dataset

    return build_smoke_dataset(tmp_path_factory.mktemp("smoke"), vocab_size=512)


def compose_config(overrides: list[str]):
    """Compose ``conf/config.yaml`` with ``overrides`` as ``python -m golf.train`` would (no run dir): the
    experiment's overlay laid on, interpolations left for the caller."""
    from hydra import compose, initialize_config_dir

    from golf.train import apply_overlay

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    apply_overlay(cfg, list(overrides))
    return cfg


@pytest.fixture
def compose() -> Callable[[list[str]], object]:
    return compose_config


def _tiny_gpt(**overrides):
    from golf.models.gpt import GPT

    kw = dict(vocab_size=96, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2)
    kw.update(overrides)
    return GPT(**kw)


@pytest.fixture
def tiny_gpt() -> Callable[..., torch.nn.Module]:
    """Factory of small GPTs of the baseline's design (fast on CPU); keyword arguments override sizes."""
    return _tiny_gpt
