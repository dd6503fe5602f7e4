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

from golf.calibration import sources
from golf.compress import codecs
from golf.data.sources import DataPaths, ShardData, SmokeData
from golf.eval.bpb import Evaluator
from golf.launch import LocalLauncher, TorchrunLauncher
from golf.logging import NullBackend, WandbBackend
from golf.models.gpt import GPT
from golf.optim.muon import Muon
from golf.optim.muon_adam import MuonAdam
from golf.optim.orthogonalize import Orthogonalizer
from golf.optim.schedule import WarmdownSchedule
from golf.quant.format import dequantize_state
from golf.quant.none import NoQuant
from golf.quant.quantizer import Quantizer
from golf.trainer import TrainConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
CONFIG_GROUPS = ("data", "loader", "model", "optimizer", "schedule", "calibration", "quant", "compressor", "eval", "logger", "launcher")
# Every node of a composed config that has a ``_target_``.
TARGET_NODES = ("data", "loader", "model", "optimizer", "schedule", "train", "calibration", "quant", "compressor", "eval", "logger",
                "launcher")
GROUP_OPTIONS = [(g, p.stem) for g in CONFIG_GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
EXPERIMENTS = [p.stem for p in sorted((CONF_DIR / "experiment").glob("*.yaml"))]

# The class each known option must build (options added later fall back to their own _target_).
EXPECTED = {
    ("data", "fineweb_sp1024"): ShardData,
    ("data", "enwiki_sp1024"): ShardData,
    ("data", "smoke"): SmokeData,
    ("optimizer", "muon_adam"): MuonAdam,
    ("optimizer", "parallel_muon"): MuonAdam,
    ("optimizer", "turbo_muon"): MuonAdam,
    ("schedule", "warmdown"): WarmdownSchedule,
    ("schedule", "warmdown_3500"): WarmdownSchedule,
    ("schedule", "warmdown_floor"): WarmdownSchedule,
    ("calibration", "none"): sources.NoCalibration,
    ("calibration", "train"): sources.TrainBatches,
    ("calibration", "val"): sources.ValBatches,
    ("calibration", "ar"): sources.AutoRegressive,
    ("calibration", "random"): sources.RandomTokens,
    ("quant", "gptq"): Quantizer,
    ("quant", "gptq_ar"): Quantizer,
    ("quant", "mixed"): Quantizer,
    ("quant", "int8"): Quantizer,
    ("quant", "int6"): Quantizer,
    ("quant", "int6_gptq_lite"): Quantizer,
    ("quant", "none"): NoQuant,
    ("compressor", "zlib"): codecs.Zlib,
    ("compressor", "zstd"): codecs.Zstd,
    ("compressor", "lzma"): codecs.Lzma,
    ("compressor", "raw"): codecs.Raw,
    ("compressor", "brotli"): codecs.Brotli,
    ("eval", "standard"): Evaluator,
    ("eval", "sliding"): Evaluator,
    ("eval", "ttt"): Evaluator,
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
    "quant": (Quantizer, NoQuant),
    "calibration": (sources.Calibration,),
    "compressor": (codecs.Codec,),
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
        elif node == "loader":
            assert callable(obj), "loader node must be a partial (built with the shards, rank and device)"
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
        state = {"w": torch.randn(300, 300), "attn_scale": torch.rand(8), "step": torch.tensor([3]),
                 "blocks.0.mlp.fc.weight": torch.randn(300, 300)}
        q = obj.quantize(state, hessians={"blocks.0.mlp.fc.weight": torch.eye(300)})
        out = dequantize_state(q.tensors, q.meta)
        assert set(out) == set(state)
        for k, v in state.items():
            assert out[k].shape == v.shape and out[k].dtype == v.dtype
            # Within a couple of grid steps on average (GPTQ and percentile clips move single entries further).
            step = 1.0 / (2 ** (q.meta[k].get("bits", 8) - 1) - 1)
            err = (out[k].float() - v.float()).norm() / max(float(v.float().norm()), 1e-12)
            # SDClip's grid step is k sigma / qmax: on these Gaussian weights (no tail) an rms error ~ k / (3.5 qmax)
            sigmas = max((getattr(obj, "clip_sigmas", None) or {}).values(), default=0)
            assert err <= max(2 * step, 0.01, 0.5 * sigmas * step), (k, float(err))
    elif node == "schedule":
        assert obj.lr_multiplier(0, 0.0, None, None) == 1.0
        assert obj.muon_momentum(0) == pytest.approx(cfg.schedule.momentum_start)
    elif node == "train":
        assert obj.grad_accum(1) >= 1
        assert obj.batch_tokens % obj.seq_len == 0
    elif node == "calibration":
        assert obj.sequences >= 0 and obj.describe()["source"] == obj.name
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


PRODUCT_GROUPS = ("experiment", "loader", "model", "optimizer", "quant", "calibration", "compressor", "eval")


def pairwise_rows(factors: dict[str, list[str]]) -> list[dict[str, str]]:
    """Rows (one choice per factor) in which every pair of choices of two factors meets at least once: the
    greedy covering array (each new row takes, factor by factor, the choice that covers most new pairs)."""
    names = list(factors)
    todo = {(a, x, b, y) for i, a in enumerate(names) for b in names[i + 1:] for x in factors[a] for y in factors[b]}
    rows = []
    while todo:
        a, x, b, y = min(todo)
        row = {a: x, b: y}
        for f in names:
            if f not in row:
                row[f] = max(factors[f], key=lambda v: sum((g, row[g], f, v) in todo or (f, v, g, row[g]) in todo
                                                           for g in row))
        todo -= {(p, row[p], q, row[q]) for i, p in enumerate(names) for q in names[i + 1:]}
        rows.append(row)
    return rows


PRODUCT = pairwise_rows({g: [p.stem for p in sorted((CONF_DIR / g).glob("*.yaml"))] for g in PRODUCT_GROUPS})


def test_pairwise_rows_cover_every_pair():
    factors = {"a": ["1", "2", "3"], "b": ["x", "y"], "c": ["p", "q", "r", "s"]}
    rows = pairwise_rows(factors)
    for a, b in (("a", "b"), ("a", "c"), ("b", "c")):
        assert {(r[a], r[b]) for r in rows} == {(x, y) for x in factors[a] for y in factors[b]}
    assert len(rows) < 3 * 2 * 4 and len(PRODUCT) < 200  # about 0.6 s a row on the 2-core CI machine
    assert {r["experiment"] for r in PRODUCT} == set(EXPERIMENTS)


@pytest.mark.parametrize("row", PRODUCT, ids=[",".join(f"{k}={v}" for k, v in r.items()) for r in PRODUCT])
def test_every_preset_composes_with_every_option(compose, tiny_gpt, row):
    """Every experiment preset with every option of the model, optimizer, quant, calibration, compressor and
    eval groups, and every two options of those groups together (pairwise): each composes, resolves and
    instantiates, its model built on the meta device (no memory, no init cost)."""
    cfg = compose([f"{g}={o}" for g, o in row.items()])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    for node in TARGET_NODES:
        obj = instantiate(cfg[node], _convert_="all")
        if node == "model":
            with torch.device("meta"):
                assert isinstance(obj(), GPT)
        elif node == "optimizer":
            assert isinstance(obj(tiny_gpt()), MuonAdam)


def test_baseline_experiment_numbers(compose):
    cfg = compose(["experiment=baseline"])
    c = OmegaConf.to_container(cfg, resolve=True)
    m, o, s, t = c["model"], c["optimizer"], c["schedule"], c["train"]
    assert (m["num_layers"], m["model_dim"], m["num_heads"], m["num_kv_heads"], m["mlp_mult"]) == (9, 512, 8, 4, 2)
    assert m["vocab_size"] == c["data"]["vocab_size"] == 1024
    assert m["tie_embeddings"] is True and m["logit_softcap"] == 30.0 and m["rope_base"] == 10000.0
    assert m["tied_embed_init_std"] == 0.005 and m["qk_gain_init"] == 1.5
    assert (o["matrix_lr"], o["embed_lr"], o["scalar_lr"], o["head_lr"]) == (0.04, 0.05, 0.04, 0.008)
    assert o["orthogonalize"] == {"_target_": "golf.optim.orthogonalize.Orthogonalizer", "schedule": "quintic", "steps": 5,
                                  "precondition": "frobenius", "post_norm": "none", "safety": 1.0,
                                  "pre_norm": "none"}
    assert o["nesterov"] is True and list(o["adam_betas"]) == [0.9, 0.95] and o["parallel"] is False
    assert m["attn_kernel"] == "auto" and m["kernels"] == "auto"
    assert m["init"] == "default" and m["xsa_last_n"] == 0 and m["bigram_buckets"] == 0
    assert t["ema"]["decay"] == 0.0 and t["swa"]["every"] == 0 and t["qat"]["mode"] == "none" and t["export"] == "raw"
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


def test_smoke_keeps_recurrence_and_lanes_only_where_the_model_has_them(compose):
    """``overlay_if_set``: a 4-layer smoke model of pr1855 loops layers 1-2 and runs lanes from layer 3; the
    baseline stays without either; a key on the command line still wins."""
    frontier = compose(["experiment=smoke", "model=pr1855"])
    assert (frontier.model.num_layers, list(frontier.model.loop_layers), frontier.model.parallel_from) == (4, [1, 2], 3)
    plain = compose(["experiment=smoke"])
    assert plain.model.loop_layers is None and plain.model.parallel_from is None
    mine = compose(["experiment=smoke", "model=pr1855", "model.parallel_from=2"])
    assert mine.model.parallel_from == 2 and list(mine.model.loop_layers) == [1, 2]


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


# ------------------------------------------------------------------ the records' presets, numbers and training

def _built(cfg) -> GPT:
    with torch.device("meta"):
        return instantiate(cfg.model, _convert_="all")()


@pytest.mark.parametrize("layers", [11, 3, 1])
def test_all_layer_options_follow_the_depth(compose, layers):
    """model=xsa_all puts XSA on every layer at any depth, and the value embedding's layers count from the last
    (-2, -1: layers 9 and 10 of the records' 11)."""
    m = _built(compose(["model=xsa_all", f"model.num_layers={layers}"]))
    assert [b.attn.xsa for b in m.blocks] == [True] * layers
    assert m.ve_layers == sorted({layers - 2, layers - 1} & set(range(layers)))
    assert _built(compose(["model=xsa4"])).ve_layers == [9, 10]
    assert [b.attn.xsa for b in _built(compose(["model=xsa4"])).blocks] == [False] * 7 + [True] * 4
    with pytest.raises(ValueError, match="model.xsa_last_n must be a number of layers or 'all', got 'most'"):
        _built(compose(["model=xsa_all", "model.xsa_last_n=most"]))


def test_record_optimizer_and_schedule_presets_behave_as_the_records(compose):
    """The #414 line's schedule: Muon momentum 0.92 -> 0.99 linearly over 1500 steps, then the LR warmed down over
    the last 3500 steps' worth of the wallclock cap; #1089's Turbo-Muon orthogonalizes with AOL + Polar Express in
    4 steps and keeps the LR above 5% of its peak."""
    s = instantiate(compose(["schedule=warmdown_3500"]).schedule)
    assert [s.muon_momentum(k) for k in (0, 750, 1500, 9000)] == pytest.approx([0.92, 0.955, 0.99, 0.99])
    # 100 ms a step under a 600 s cap: constant until 3500 steps' worth (350 s) is left, then linear to 0.
    assert s.lr_multiplier(1000, 100_000.0, 600_000.0, None) == 1.0
    assert s.lr_multiplier(4250, 425_000.0, 600_000.0, None) == pytest.approx(0.5)
    floor = instantiate(compose(["schedule=warmdown_floor"]).schedule)
    assert floor.lr_multiplier(5990, 599_000.0, 600_000.0, None) == pytest.approx(0.05)
    ortho = instantiate(compose(["optimizer=turbo_muon"]).optimizer.orthogonalize)
    assert ortho == Orthogonalizer("polar_express_aol", 4, "aol", "row_col")
    from golf.optim.orthogonalize import orthogonalize

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 512, generator=g)
    before, after = torch.linalg.svdvals(x), torch.linalg.svdvals(orthogonalize(x, **ortho.kwargs()).float())
    assert before.max() / before.min() > 5 and after.max() / after.min() < 1.5  # the spectrum flattened


class _RandomTokens:
    """A loader of random tokens with the real loader's interface."""

    def __init__(self, vocab: int):
        self.vocab, self.gen = vocab, torch.Generator().manual_seed(0)

    def next_batch(self, batch_tokens: int, seq_len: int, accum: int):
        t = torch.randint(0, self.vocab, (batch_tokens // (accum * seq_len), seq_len + 1), generator=self.gen)
        return t[:, :-1], t[:, 1:]

    def prefetch(self, *_) -> None:  # batches are made on demand
        pass

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


# A tiny override of any preset: its own depth and features, 64 wide, head_dim 16 (rope_dims 16 fit).
TINY = ["model.model_dim=64", "model.num_heads=4", "model.num_kv_heads=2", "data=smoke", "train.batch_tokens=256",
        "train.seq_len=32", "train.max_micro_batch_tokens=128", "train.max_wallclock_seconds=0", "train.iterations=2",
        "train.warmup_steps=1", "train.compile=false", "train.device=cpu", "train.ema.decay=0.99",
        "train.swa.every=1", "train.swa.lr_below=1.01", "train.qat.mode=ste", "train.qat.lr_below=1.01",
        "schedule.warmdown_iters=1"]
MODELS = [p.stem for p in sorted((CONF_DIR / "model").glob("*.yaml"))]
OPTIMIZERS = [p.stem for p in sorted((CONF_DIR / "optimizer").glob("*.yaml"))]
SCHEDULES = [p.stem for p in sorted((CONF_DIR / "schedule").glob("*.yaml"))]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("model", MODELS)
def test_every_preset_trains_two_steps_of_a_tiny_override(compose, model, optimizer, schedule):
    from golf.dist import DistInfo
    from golf.logging import NullBackend
    from golf.trainer import train

    cfg = compose([f"model={model}", f"optimizer={optimizer}", f"schedule={schedule}", *TINY])
    torch.manual_seed(0)
    net = instantiate(cfg.model, _convert_="all")()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    tc = instantiate(cfg.train, _convert_="all")
    logs: list[str] = []
    out = train(model=net, train_model=net, optimizer=instantiate(cfg.optimizer, _convert_="all")(net),
                schedule=instantiate(cfg.schedule, _convert_="all"), loader=_RandomTokens(net.vocab_size), cfg=tc,
                dist_info=DistInfo(0, 1, 0, torch.device("cpu")), log=logs.append, metrics=NullBackend(),
                autocast_dtype=None)
    assert out.status == "ok" and out.steps == 2 and all(math.isfinite(x) for x in out.losses)
    assert out.qat["start_step"] == 0 and any("qat: ste int6 on at step 0" in m for m in logs)
    assert out.averager.swa_count == 2 and set(out.averager.candidates()) == {"raw", "ema", "swa"}
    moved = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    # (QAT from step 0 rounds the zero-initialised output projections to 0, so Q/K/V/MLP-up get no gradient.)
    assert {"blocks.0.attn.proj.weight", "blocks.1.mlp.proj.weight", "tok_emb.weight", "blocks.0.resid_mix"} <= set(moved)


def test_quant_presets_choose_their_calibration_and_codec(compose):
    """quant=gptq_ar selects calibration=ar by itself (an explicit calibration= still wins); quant=gptq
    calibrates inside the training budget; quant=mixed is #1089's export."""
    assert compose(["quant=gptq_ar"]).calibration._target_.endswith("AutoRegressive")
    assert compose(["quant=gptq_ar", "calibration=random"]).calibration._target_.endswith("RandomTokens")
    assert compose(["quant=gptq"]).calibration._target_.endswith("TrainBatches")
    assert compose(["quant=int6"]).calibration._target_.endswith("NoCalibration")
    ar = instantiate(compose(["quant=gptq_ar"]).calibration, _convert_="all")
    assert (ar.sequences, ar.seq_len, ar.temperature) == (64, 2048, 0.8)
    q = instantiate(compose(["quant=gptq_ar"]).quant, _convert_="all")
    assert (q.method, q.matrix_bits, q.search, q.class_bits["embed"]) == ("gptq", 6, "matrix", 8) and q.needs_hessians
    m = compose(["quant=mixed"])
    mq = instantiate(m.quant, _convert_="all")
    assert (mq.method, mq.matrix_bits, mq.search, mq.allocate_max_bits, mq.prune_max_abs) == ("gptq", 5, "row", 7, 2)
    assert mq.class_bits["embed"] == 0 and mq.class_bits["table"] == 8
    c = instantiate(m.compressor, _convert_="all")
    assert c.name == "brotli+shuffle" and c.quality == 11
    assert m.calibration._target_.endswith("TrainBatches")
    lite = instantiate(compose(["quant=int6_gptq_lite"]).quant, _convert_="all")
    assert (lite.method, lite.matrix_bits, lite.search, lite.keep_fp32_patterns) == ("lite", 6, "matrix", ())


def test_compile_mode_and_inductor_settings_are_checked_and_applied(compose):
    import torch._inductor.config as inductor_config

    from golf.stages.training import compile_model
    from golf.trainer import TrainConfig

    with pytest.raises(ValueError, match="train.compile_mode must be one of"):
        TrainConfig(compile_mode="fastest")
    with pytest.raises(ValueError, match=r"train.inductor: \['coordinate_descent_tunning'\] are not"):
        TrainConfig(inductor={"coordinate_descent_tunning": True})
    cfg = compose(["train.inductor={coordinate_descent_tuning:true}", "train.compile_mode=max-autotune"])
    assert instantiate(cfg.train).inductor == {"coordinate_descent_tuning": True}
    assert instantiate(compose([]).train).inductor == {}
    assert TrainConfig(inductor={"triton": {"mix_order_reduction": False}}).inductor == {"triton.mix_order_reduction": False}
    pr1019 = compose(["experiment=pr1019", "train.inductor.triton.mix_order_reduction=true"])
    assert instantiate(pr1019.train).inductor == {"triton.mix_order_reduction": True}
    assert instantiate(compose(["experiment=pr1019"]).train).inductor == {"triton.mix_order_reduction": False}
    with pytest.raises(ValueError, match=r"\['triton.persistent_reduction'\] are not"):
        TrainConfig(inductor={"triton.persistent_reduction": False})
    before = inductor_config.coordinate_descent_tuning, inductor_config.triton.persistent_reductions
    try:
        cfg = TrainConfig(compile_mode="max-autotune-no-cudagraphs", inductor={
            "coordinate_descent_tuning": not before[0], "triton.persistent_reductions": not before[1]})
        compiled = compile_model(torch.nn.Linear(2, 2), cfg)
        assert inductor_config.coordinate_descent_tuning is (not before[0])
        assert inductor_config.triton.persistent_reductions is (not before[1])
        assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    finally:
        inductor_config.coordinate_descent_tuning, inductor_config.triton.persistent_reductions = before


def test_frontier_models_have_the_records_parameter_counts(compose):
    """#1493's log prints model_params:35944536 (found with the library's search); the others differ from it by
    what frontier.md §3-7 says they add, less the two-lane factors the records allocate for all 11 layers but use
    on three (golf keeps those three: 18 of their 66)."""
    from golf.build import instantiate

    def count(name: str) -> int:
        cfg = compose([f"model={name}", "data=enwiki_sp8192"])
        with torch.device("meta"):
            model = instantiate(OmegaConf.to_container(cfg.model, resolve=True))()
        return sum(p.numel() for p in model.parameters())

    base = count("pr1493")
    assert base == 35_944_536
    assert count("pr1394") == base - 512 * 2            # 7 skip pairs over 15 virtual layers, not 8 over 17
    assert count("pr1530") == base + 3 * 6              # rho (2) + P (2x2) on layers 8-10
    assert count("pr1736") == base + 18 + 11 * 8 * 512  # dense gates W [8, 512]
    assert count("pr1855") == base + 18 + 11 * 8 * 12 + 12 + 1  # sparse gates W [8, 12]; smear W [1, 12] and lambda


def test_pr1855_preset_carries_the_records_logged_values(compose):
    """frontier.md §8 and §13 (the logged Hyperparameters, not the code's defaults)."""
    c = compose(["experiment=pr1855"])
    o, s, q, m = c.optimizer, c.schedule, c.quant, c.model
    assert (o.matrix_lr, o.embed_lr, o.scalar_lr, list(o.adam_betas)) == (0.026, 0.03, 0.02, [0.9, 0.99])
    assert (o.muon_weight_decay, o.adam_weight_decay, o.embed_weight_decay, o.grad_clip_norm) == (0.095, 0.02, 0.085, 0.3)
    assert (o.orthogonalize.schedule, o.orthogonalize.pre_norm) == ("polar_express_1787", "row")
    assert (s.warmdown_fraction, s.lr_floor, s.momentum_start, s.momentum_end, s.momentum_warmup_steps) == (
        0.85, 0.1, 0.92, 0.97, 1500)
    assert (c.train.batch_tokens, c.train.seq_len, c.train.ema.decay) == (786432, 2048, 0.9965)
    assert (m.loop_from, list(m.loop_layers), m.parallel_from, m.attn_gate_scale, m.smear_gate) == (0.35, [3, 5], 8, 0.5, "input")
    assert dict(q.clip_sigmas) == {"attn": 13.0, "mlp": 11.5, "embed": 14.0} and q.embed_bits == 7 and q.lqer.rank == 4
    assert c.loader._target_.endswith("PackedLoader") and c.data.byte_sidecar and c.compressor._target_.endswith("PerGroup")


def test_april_presets_carry_their_records_logged_settings():
    """The numbers each April preset takes from its record's log, after the overlay (golf.train.apply_overlay)."""
    from golf.train import apply_overlay
    from tests.conftest import compose_config

    def cfg(*ov):
        c = compose_config(list(ov))
        apply_overlay(c, list(ov))
        return c

    c = cfg("experiment=pr1394")
    assert (c.optimizer.matrix_lr, c.schedule.warmdown_fraction, c.schedule.momentum_end, c.train.ema.decay) == (0.02, 0.667, 0.99, 0.997)
    assert dict(c.quant.clip_sigmas) == {"attn": 12.85, "mlp": 12.85, "embed": 20.0} and c.quant.embed_bits == 8
    assert c.eval.ttt is None and c.eval.sliding.stride == 64 and c.calibration.reserve_seconds == 12.0
    c = cfg("experiment=pr1493")
    assert c.model.qk_gain_init == 5.25 and c.model.parallel_lanes == 1 and c.eval.ttt.lr == 0.005
    assert cfg("experiment=pr1493", "eval=phased_ttt").eval.ttt.lr == 1e-4  # chunk TTT's LR stays with chunk TTT
    c = cfg("experiment=pr1530")
    assert c.loader._target_.endswith("PackedLoader") and c.schedule.momentum_end == 0.97
    assert (c.eval.ttt.chunk, c.eval.ttt.rank, c.eval.ttt.alpha, c.eval.ttt.prefix_docs) == (32, 96, 96.0, 0)
    c = cfg("experiment=pr1736")
    assert "caseops" in c.data.path and c.model.attn_out_gate == "dense" and c.quant.gate_bits == 8
    assert (c.eval.ttt.chunk, c.eval.ttt.prefix_docs, c.eval.ttt.phases, c.calibration.sequences) == (48, 2000, 3, 768)
    c = cfg("experiment=pr1855")
    assert (c.eval.ttt.rank, c.eval.ttt.prefix_docs, c.eval.ttt.betas[1], c.eval.ttt.weight_decay) == (80, 2500, 0.99, 0.5)
    assert cfg("experiment=pr1394", "calibration=ar").calibration.sequences == 64  # TrainBatches' count only
