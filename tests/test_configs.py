"""Every config option composes and every ``_target_`` node instantiates; the baseline experiment has the
naive baseline record's numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from golf.compress import codecs
from golf.data.sources import DataPaths, ShardData, SmokeData
from golf.eval.bpb import Evaluator
from golf.launch import LocalLauncher, TorchrunLauncher
from golf.logging import NullBackend, WandbBackend
from golf.models.gpt import GPT
from golf.optim.muon import Muon
from golf.optim.muon_adam import MuonAdam
from golf.optim.schedule import WarmdownSchedule
from golf.quant.format import dequantize_state
from golf.quant.int8 import Int8PerRow
from golf.quant.none import NoQuant
from golf.trainer import TrainConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
CONFIG_GROUPS = ("data", "model", "optimizer", "schedule", "quant", "compressor", "eval", "logger", "launcher")
# Every node of a composed config that has a ``_target_``.
TARGET_NODES = ("data", "model", "optimizer", "schedule", "train", "quant", "compressor", "eval", "logger", "launcher")
GROUP_OPTIONS = [(g, p.stem) for g in CONFIG_GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
EXPERIMENTS = [p.stem for p in sorted((CONF_DIR / "experiment").glob("*.yaml"))]

# The class each known option must build (options added later fall back to their own _target_).
EXPECTED = {
    ("data", "fineweb_sp1024"): ShardData,
    ("data", "enwiki_sp1024"): ShardData,
    ("data", "smoke"): SmokeData,
    ("optimizer", "muon_adam"): MuonAdam,
    ("schedule", "warmdown"): WarmdownSchedule,
    ("quant", "int8"): Int8PerRow,
    ("quant", "none"): NoQuant,
    ("compressor", "zlib"): codecs.Zlib,
    ("compressor", "zstd"): codecs.Zstd,
    ("compressor", "lzma"): codecs.Lzma,
    ("compressor", "raw"): codecs.Raw,
    ("eval", "standard"): Evaluator,
    ("logger", "wandb"): WandbBackend,
    ("logger", "none"): NullBackend,
    ("launcher", "local"): LocalLauncher,
    ("launcher", "torchrun"): TorchrunLauncher,
}
# Classes of the nodes whose option a test did not choose (the defaults, or whatever an option sets).
NODE_BASE = {
    "data": (ShardData, SmokeData),
    "optimizer": (MuonAdam,),
    "schedule": (WarmdownSchedule,),
    "train": (TrainConfig,),
    "quant": (Int8PerRow, NoQuant),
    "compressor": (codecs.Zlib, codecs.Zstd, codecs.Lzma, codecs.Raw),
    "eval": (Evaluator,),
    "logger": (WandbBackend, NullBackend),
    "launcher": (LocalLauncher, TorchrunLauncher),
}


def test_every_group_has_options():
    groups = {g for g, _ in GROUP_OPTIONS}
    assert groups == set(CONFIG_GROUPS), f"groups without any option: {set(CONFIG_GROUPS) - groups}"
    assert {"baseline", "smoke"} <= set(EXPERIMENTS)


def _check_and_instantiate(cfg, tiny_gpt) -> dict:
    """Instantiate every target node; call the partials; check each type and return the objects."""
    built = {}
    for node in TARGET_NODES:
        assert node in cfg and "_target_" in cfg[node], f"config has no instantiable {node!r} node"
        obj = instantiate(cfg[node], _convert_="all")
        if node == "model":
            assert callable(obj), "model node must be a partial (built after seeding)"
            obj = obj()
            assert isinstance(obj, GPT)
            assert obj.tok_emb.num_embeddings == cfg.data.vocab_size == cfg.model.vocab_size
            assert not any(p.is_cuda for p in obj.parameters())
        elif node == "optimizer":
            assert callable(obj), "optimizer node must be a partial (called with the model)"
            obj = obj(tiny_gpt())
            assert isinstance(obj, MuonAdam)
        else:
            assert isinstance(obj, NODE_BASE[node]), f"{node}: got {type(obj).__name__}"
            assert isinstance(obj, get_class(cfg[node]._target_))
        built[node] = obj
    return built


def _exercise(node: str, obj, cfg) -> None:
    """A cheap behavioural check of one instantiated node (never touches real data)."""
    if node == "compressor":
        data = bytes(range(256)) * 40
        assert obj.decompress(obj.compress(data)) == data
        assert codecs.decompress(obj.name, obj.compress(data)) == data
    elif node == "quant":
        state = {"w": torch.randn(300, 300), "attn_scale": torch.rand(8), "step": torch.tensor([3])}
        q = obj.quantize(state)
        out = dequantize_state(q.tensors, q.meta)
        assert set(out) == set(state)
        for k, v in state.items():
            assert out[k].shape == v.shape and out[k].dtype == v.dtype
            assert (out[k].float() - v.float()).abs().max() <= 0.05 * max(v.float().abs().max(), 1)
    elif node == "schedule":
        assert obj.lr_multiplier(0, 0.0, None, None) == 1.0
        assert obj.muon_momentum(0) == pytest.approx(cfg.schedule.momentum_start)
    elif node == "train":
        assert obj.grad_accum(1) >= 1
        assert obj.batch_tokens % obj.seq_len == 0
    elif node == "eval":
        assert obj.seq_len == cfg.train.seq_len
    elif node == "launcher" and isinstance(obj, TorchrunLauncher):
        cmd = obj.command(CONF_DIR / "x.yaml")
        assert f"--nproc_per_node={cfg.launcher.nproc_per_node}" in cmd
        assert cmd[-3:] == ["-m", "golf.worker", str(CONF_DIR / "x.yaml")]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_group_option_instantiates(compose, tiny_gpt, group, option):
    cfg = compose([f"{group}={option}"])
    built = _check_and_instantiate(cfg, tiny_gpt)
    chosen = built[group]
    if (group, option) in EXPECTED:
        assert type(chosen) is EXPECTED[(group, option)]
    if group == "compressor":
        assert chosen.name == option
    if group == "data":
        # Instantiation only: prepare() would need the data (or build the smoke set in the user's cache).
        assert chosen.vocab_size == cfg.data.vocab_size
        if isinstance(chosen, ShardData):
            assert chosen.path == Path(cfg.data.path) and chosen.make_hint == cfg.data.make_hint
            assert chosen.tokenizer == Path(cfg.data.tokenizer)
        if option == "enwiki_sp1024":
            assert chosen.tokenizer == Path("data/enwiki_sp1024/tokenizer.model")  # ${.path} interpolation
    for node, obj in built.items():
        _exercise(node, obj, cfg)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_instantiates(compose, tiny_gpt, name):
    cfg = compose([f"experiment={name}"])
    assert cfg.name == name
    built = _check_and_instantiate(cfg, tiny_gpt)
    for node, obj in built.items():
        _exercise(node, obj, cfg)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # fully resolvable


def test_baseline_experiment_numbers(compose):
    cfg = compose(["experiment=baseline"])
    c = OmegaConf.to_container(cfg, resolve=True)
    m, o, s, t = c["model"], c["optimizer"], c["schedule"], c["train"]
    assert (m["num_layers"], m["model_dim"], m["num_heads"], m["num_kv_heads"], m["mlp_mult"]) == (9, 512, 8, 4, 2)
    assert m["vocab_size"] == c["data"]["vocab_size"] == 1024
    assert m["tie_embeddings"] is True and m["logit_softcap"] == 30.0 and m["rope_base"] == 10000.0
    assert m["tied_embed_init_std"] == 0.005 and m["qk_gain_init"] == 1.5
    assert (o["matrix_lr"], o["embed_lr"], o["scalar_lr"], o["head_lr"]) == (0.04, 0.05, 0.04, 0.008)
    assert o["ns_steps"] == 5 and o["nesterov"] is True and list(o["adam_betas"]) == [0.9, 0.95]
    assert s["warmdown_iters"] == 1200
    assert (s["momentum_start"], s["momentum_end"], s["momentum_warmup_steps"]) == (0.85, 0.95, 500)
    assert (t["batch_tokens"], t["seq_len"], t["max_wallclock_seconds"], t["warmup_steps"]) == (524288, 1024, 600, 20)
    assert c["eval"]["seq_len"] == 1024
    assert c["quant"]["clip_percentile"] == 0.9999984 and c["quant"]["keep_float_max_numel"] == 65536
    assert cfg.compressor._target_.endswith("Zlib") and c["compressor"]["level"] == 9
    assert c["budget"]["artifact_bytes"] == 16_000_000
    # The records' accumulation on 8 GPUs: one micro-step of 64 sequences per rank.
    assert instantiate(cfg.train, _convert_="all").grad_accum(8) == 1


def test_smoke_experiment_numbers(compose):
    cfg = compose(["experiment=smoke"])
    assert cfg.data._target_.endswith("SmokeData") and cfg.model.num_layers == 4 and cfg.model.model_dim == 128
    assert cfg.model.vocab_size == 512
    train = instantiate(cfg.train, _convert_="all")
    assert (train.batch_tokens, train.seq_len, train.device, train.compile) == (8192, 256, "cpu", False)
    assert train.grad_accum(1) == 1


def test_smoke_data_prepare_uses_given_cache(compose, smoke_dir):
    cfg = compose(["experiment=smoke", f"data.cache_dir={smoke_dir.parent}"])
    paths = instantiate(cfg.data, _convert_="all").prepare()
    assert isinstance(paths, DataPaths) and paths.vocab_size == 512
    assert paths.tokenizer == smoke_dir / "tokenizer.model" and paths.tokenizer.is_file()
    assert paths.train_pattern == str(smoke_dir / "fineweb_train_*.bin")
    assert paths.val_pattern == str(smoke_dir / "fineweb_val_*.bin")


def test_unknown_option_lists_available(compose):
    with pytest.raises(MissingConfigException) as info:
        compose(["model=nope"])
    msg = str(info.value)
    assert "model/nope" in msg
    available = msg.split("Available options", 1)[1]
    for option in ("baseline", "tiny"):
        assert option in available


def test_baseline_parameter_count(compose):
    """The naive baseline record logs model_params:17059912."""
    model = instantiate(compose(["experiment=baseline"]).model, _convert_="all")()
    assert sum(p.numel() for p in model.parameters()) == 17_059_912


def test_optimizer_partial_routes_tiny_model(compose, tiny_gpt):
    cfg = compose(["model=tiny"])
    model = instantiate(cfg.model, _convert_="all")()
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    opt = instantiate(cfg.optimizer, _convert_="all")(model)
    assert isinstance(opt.muon, Muon)
    assert math.isclose(opt.muon.param_groups[0]["lr"], cfg.optimizer.matrix_lr)
