"""Check a golf model against a record's own ``train_gpt.py``: same seed -> the same initial weights, the
same loss and the same gradients on the same batch (fp32, CPU or GPU); with ``--train-steps N``, the same
losses over N training steps of the record's own optimizer against golf's trainer (the #549-#1019 line:
banks + Parallel Muon + two AdamWs, set up as the record's main() sets them up; warm-up and restore included).

    python scripts/compare_record.py --record path/to/train_gpt.py --golf "model=xsa_all" \
        --env BIGRAM_VOCAB_SIZE=3072 --env BIGRAM_DIM=112

The record file is imported, never copied: its ``Hyperparameters`` (read from the environment, so pass the
record's command-line settings with ``--env``) and its ``GPT`` build the reference. Banked records' 3-D
banks are compared slice by slice with golf's per-layer matrices. Without FlashAttention-3 a stand-in
``flash_attn_interface`` (SDPA, K/V repeated to the query heads) is put on the path first. Exit status 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import os
import shlex
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.vs_record import FA3_STAND_IN  # noqa: E402

BANKS = {"qo_bank": ("attn.c_q", "attn.proj"), "kv_bank": ("attn.c_k", "attn.c_v"),
         "mlp_up_bank": ("mlp.fc",), "mlp_down_bank": ("mlp.proj",)}
RENAMES = (("ve_shared.", "ve."),)
# the April records (#1394 on): their names for what golf keeps per block or in its own modules
FRONTIER_RENAMES = (("smear_gate.weight", "smear.weight"), ("smear_lambda", "smear.lam"))
LANES = {"parallel_resid_lambdas": "lane_resid", "parallel_post_lambdas": "lane_post"}


def import_record(path: Path, env: dict[str, str]):
    os.environ.update(env)
    stand_in = False
    try:
        import flash_attn_interface  # noqa: F401
    except ImportError:
        stub = Path(tempfile.mkdtemp()) / "flash_attn_interface.py"
        stub.write_text(FA3_STAND_IN)
        sys.path.insert(0, str(stub.parent))
        stand_in = True
    spec = importlib.util.spec_from_file_location("record_train_gpt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.GOLF_FA3_STAND_IN = stand_in  # the record's attention runs SDPA flash with K/V repeated, not FA3
    if getattr(mod, "BOS_ID", 1) is None:  # the April records set it when their loader first reads a shard
        mod.BOS_ID = 1
    return mod


def record_model(mod, seed: int) -> torch.nn.Module:
    """The record's GPT, built from its Hyperparameters the way its main() does (kwargs by name; the April
    records take the Hyperparameters object itself). Depth recurrence on, as their evals run; their Triton MLP
    off on the CPU."""
    args = mod.Hyperparameters()
    if list(inspect.signature(mod.GPT).parameters) == ["h"]:
        torch.manual_seed(seed)
        model = mod.GPT(args)
        if hasattr(model, "looping_active"):
            model.looping_active = True
        for m in model.modules():
            if hasattr(m, "use_fused") and not torch.cuda.is_available():
                m.use_fused = False
        return model
    kw = {}
    for name, p in inspect.signature(mod.GPT).parameters.items():
        for attr in (name, f"{name}_enabled", f"use_{name}"):
            if hasattr(args, attr):
                kw[name] = getattr(args, attr)
                break
        else:
            if p.default is inspect.Parameter.empty:
                raise SystemExit(f"cannot find a Hyperparameters value for the record's GPT argument {name!r}")
    torch.manual_seed(seed)
    return mod.GPT(**kw)


def golf_model(overrides: list[str], seed: int) -> torch.nn.Module:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import golf.train  # noqa: F401  (registers resolvers)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    torch.manual_seed(seed)
    return instantiate(cfg.model, _convert_="all")()


def golf_name(k: str, engram: bool) -> str:
    """A record's (non-bank, non-lane) parameter name as golf calls it."""
    k = k.replace(".attn.attn_gate_w", ".attn.gate_w")
    for a, b in FRONTIER_RENAMES:
        k = b if k == a else k
    for a, b in RENAMES + ((("bigram.", "engram."),) if engram else ()):
        k = k.replace(a, b) if k.startswith(a) else k
    return k


def record_parts(k: str, v: torch.Tensor, engram: bool) -> list[tuple[str, torch.Tensor]]:
    """(golf name, view of ``v``) for each part of the record's tensor ``k``: banks split into per-layer matrices,
    the April records' lane factors (allocated for every layer) into each layer's."""
    if k in LANES:
        return [(f"blocks.{i}.{LANES[k]}", v[i]) for i in range(v.shape[0])]
    if k in BANKS:
        names = BANKS[k]
        per = v.shape[0] // len(names)
        return [(f"blocks.{i}.{name}.weight", v[j * per + i]) for j, name in enumerate(names) for i in range(per)]
    return [(golf_name(k, engram), v)]


def record_as_golf(state: dict[str, torch.Tensor], num_layers: int, engram: bool,
                   golf_keys: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The record's state dict under golf's names (the lane factors kept for the layers golf runs as lanes)."""
    return {name: part for k, v in state.items() for name, part in record_parts(k, v, engram)
            if k not in LANES or golf_keys is None or name in golf_keys}


def golf_into_record(ref: torch.nn.Module, golf_state: dict[str, torch.Tensor], engram: bool) -> None:
    """Copy golf's weights into the record's model, in place (the inverse of ``record_as_golf``; lane factors of
    layers golf has no lanes in keep the record's values, which it never reads)."""
    with torch.no_grad():
        for k, v in ref.state_dict().items():
            for name, part in record_parts(k, v, engram):
                if name in golf_state:
                    part.copy_(golf_state[name].to(part.dtype))
                elif k not in LANES:
                    raise KeyError(f"golf's weights have no {name} (the record's {k})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", type=Path, required=True, help="a record's train_gpt.py")
    p.add_argument("--golf", default="", help='golf overrides, e.g. "model=xsa_all"')
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the record's Hyperparameters (repeatable)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--perturb", type=float, default=0.0,
                   help="add N(0, std^2) noise to every record weight first (zero-initialised projections and gates "
                        "would leave most gradients zero on both sides)")
    p.add_argument("--train-steps", type=int, default=0, help="also train N steps on both sides and compare losses")
    p.add_argument("--warmup", type=int, default=2, help="compile warm-up steps (then restored) before --train-steps")
    p.add_argument("--accum", type=int, default=2, help="micro-steps per optimizer step in --train-steps")
    p.add_argument("--ttt-docs", type=int, default=0,
                   help="also score N synthetic documents with the record's phased LoRA TTT (eval_val_ttt_phased; "
                        "its TTT_* / PHASED_TTT_* / GLOBAL_TTT_* settings from --env) and golf's eval=phased_ttt")
    p.add_argument("--ttt-data", type=Path, help="instead: time the record's phased TTT (its own ValidationData "
                   "reads this directory's val shards and sidecars) and golf's eval=phased_ttt on the same weights")
    p.add_argument("--golf-weights", type=Path, help="with --ttt-data: golf's exported weights (train.save_weights); "
                   "default: the record's seeded weights")
    a = p.parse_args(argv)
    env = dict(e.split("=", 1) for e in a.env)
    if a.ttt_data:  # the April records read these when their Hyperparameters class is defined (at import)
        env.update(DATA_PATH=str(a.ttt_data.resolve()), TOKENIZER_PATH=str((a.ttt_data / "tokenizer.model").resolve()))
    mod = import_record(a.record, env)
    device = torch.device(a.device)
    if a.ttt_data:
        return ttt_on_data(mod, a, device)
    ref = record_model(mod, a.seed).float().to(device)
    ours = golf_model(shlex.split(a.golf), a.seed).float().to(device)
    init_problems = initial_difference(ref, ours)
    perturb(ref, a.perturb, a.seed)
    engram = getattr(ours, "engram", None) is not None
    mine = {k: v for k, v in ours.state_dict().items()}
    mapped = record_as_golf(ref.state_dict(), len(ours.blocks), engram, set(mine))
    problems = init_problems
    x, record_kw = batch(mod, ours, a, device)
    ours.load_state_dict({k: mapped.get(k, v) for k, v in mine.items()})  # compare the forward on equal weights
    losses = []
    for m, kw in ((ref, record_kw), (ours, {})):
        m.train()
        m.zero_grad(set_to_none=True)
        loss = m(x[:, :-1], x[:, 1:], **kw)
        loss.backward()
        losses.append(float(loss.detach()))
    grads_ref = record_as_golf({n: q.grad for n, q in ref.named_parameters() if q.grad is not None}, len(ours.blocks),
                               engram, set(mine))
    gworst = max(((float((q.grad - grads_ref[n]).norm() / (grads_ref[n].norm() + 1e-30)), n)
                  for n, q in ours.named_parameters() if q.grad is not None and n in grads_ref), default=(0.0, ""))
    print(f"loss at init: record {losses[0]:.8f}, golf {losses[1]:.8f} (difference {abs(losses[0] - losses[1]):.2e})")
    print(f"gradients: largest relative difference {gworst[0]:.2e} ({gworst[1]})")
    tol = 1e-5 if device.type == "cpu" else 1e-3
    if abs(losses[0] - losses[1]) > tol * max(1.0, abs(losses[0])):
        problems.append("losses differ")
    if gworst[0] > 100 * tol:
        problems.append(f"gradients differ ({gworst[1]})")
    if a.train_steps:
        problems += compare_training(mod, a, device)
    if a.ttt_docs:
        problems += compare_ttt(mod, ref, ours, a, device)
    print("MATCH" if not problems else "MISMATCH: " + "; ".join(problems))
    return 1 if problems else 0


def perturb(model: torch.nn.Module, std: float, seed: int) -> None:
    """Add N(0, std^2) to every weight (``--perturb``; 0: none), drawn from a generator of ``seed``."""
    if not std:
        return
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for q in model.parameters():
            q.add_(torch.randn(q.shape, generator=gen).to(q.device) * std)


def initial_difference(ref, ours) -> list[str]:
    """Whether the record and golf, built from the same seed, start from the same weights (printed)."""
    mine = dict(ours.state_dict())
    mapped = record_as_golf(ref.state_dict(), len(ours.blocks), getattr(ours, "engram", None) is not None, set(mine))
    problems = [f"only in the record: {sorted(set(mapped) - set(mine))[:6]}"] if set(mapped) - set(mine) else []
    if set(mine) - set(mapped):
        problems.append(f"only in golf: {sorted(set(mine) - set(mapped))[:6]}")
    worst = max(((float((mine[k] - mapped[k]).abs().max()), k) for k in set(mine) & set(mapped)), default=(0.0, ""))
    print(f"parameters: record {sum(t.numel() for t in ref.parameters()):,}, golf {sum(t.numel() for t in ours.parameters()):,}")
    print(f"initial weights: largest difference {worst[0]:.3g} ({worst[1]})")
    return problems + ([f"initial weights differ ({worst[1]}: {worst[0]:.3g})"] if worst[0] > 0 else [])


def batch(mod, ours, a, device) -> tuple[torch.Tensor, dict]:
    """The tokens both models see, and what the record's forward takes besides. A document-masked golf model
    (``model.doc_mask``) gets one packed row of documents (a BOS every 20-120 tokens) and the record its
    ``cu_seqlens`` built by its own ``_build_cu_seqlens`` (cut every train_seq_len, padded to 64)."""
    g = torch.Generator().manual_seed(a.seed)
    if not getattr(ours, "doc_mask", False):
        return torch.randint(0, ours.vocab_size, (a.batch, a.seq_len + 1), generator=g).to(device), {}
    n = a.batch * a.seq_len + 1
    x = torch.randint(2, ours.vocab_size, (1, n), generator=g)
    pos = 0
    while pos < n:
        x[0, pos] = ours.bos_id
        pos += int(torch.randint(20, 120, (1,), generator=g))
    x = x.to(device)
    h = mod.Hyperparameters()
    bos = (x[0, :-1] == ours.bos_id).nonzero().flatten().tolist()
    cu, _ = mod._build_cu_seqlens(bos, n - 1, device, h.train_seq_len, 64)
    return x, {"cu_seqlens": cu, "max_seqlen": h.train_seq_len}


def _step(model, opts, momentum: float, scale: float, clip: float) -> None:
    """The records' step after the backward: Muon's momentum, every group's LR, the global clip, then the
    token AdamW, the scalar AdamW and Muon (``opts`` in the order tok, Muon, scalar)."""
    opt_tok, muon, opt_scalar = opts
    for g in muon.param_groups:
        g["momentum"] = momentum
    for o in opts:
        for g in o.param_groups:
            g["lr"] = g["base_lr"] * scale
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt_tok.step()
    opt_scalar.step()
    muon.step()


def record_losses(mod, model, batches, steps: int, warmup: int) -> list[float]:
    """The record's optimizers and loop (its main(), one process): banks on its Muon, token tables and
    scalars on AdamW, the iteration warmdown, momentum warm-up, global clip, warm-up steps then restore."""
    args = mod.Hyperparameters()
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    banks = [model.qo_bank, model.kv_bank, model.mlp_up_bank, model.mlp_down_bank]
    scalars = [q for n, q in model.blocks.named_parameters() if q.ndim < 2 or any(t in n for t in pats)]
    scalars += [model.skip_weights, model.smear.gate]
    tok = [{"params": [model.tok_emb.weight], "lr": args.tied_embed_lr, "base_lr": args.tied_embed_lr}]
    for extra in (model.bigram, model.ve_shared):
        if extra is not None:
            tok.append({"params": [extra.embed.weight], "lr": args.tied_embed_lr, "base_lr": args.tied_embed_lr})
            scalars += [extra.proj.weight, extra.scale] if extra.proj is not None else [extra.scale]
    scalars += list(model.ve_layer_scales)
    kw = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, weight_decay=args.adam_wd)
    opt_tok = torch.optim.AdamW(tok, **kw)
    opt_scalar = torch.optim.AdamW([{"params": scalars, "lr": args.scalar_lr, "base_lr": args.scalar_lr}], **kw)
    muon = mod.Muon(banks, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps,
                    weight_decay=args.muon_wd)
    for g in muon.param_groups:
        g["base_lr"] = args.matrix_lr
    opts = [opt_tok, muon, opt_scalar]

    def one(step: int, batch) -> float:
        scale = 1.0
        if args.warmdown_iters > 0 and max(steps - args.warmdown_iters, 0) <= step < steps:
            scale = max((steps - step) / args.warmdown_iters, 0.0)
        for o in opts:
            o.zero_grad(set_to_none=True)
        total = 0.0
        for x, y in batch:
            loss = model(x, y)
            (loss / len(batch)).backward()
            total += float(loss.detach()) / len(batch)
        frac = min(step / args.muon_momentum_warmup_steps, 1.0)
        _step(model, opts, (1 - frac) * args.muon_momentum_warmup_start + frac * args.muon_momentum, scale,
              args.grad_clip_norm)
        return total

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved = [copy.deepcopy(o.state_dict()) for o in opts]
    for i in range(warmup):
        one(0, batches[i])
    model.load_state_dict(state)
    for o, st in zip(opts, saved):
        o.load_state_dict(st)
    return [one(i, batches[i]) for i in range(steps)]


def frontier_losses(mod, model, batches, steps: int, warmup: int) -> list[float]:
    """An April record's optimizers and loop (its Optimizers and step_fn, one process, no CUDA streams): the
    banks on its Muon (MuonEq-R as its Hyperparameters say), the tied embedding on AdamW with EMBED_WD, the
    scalars on AdamW with ADAM_WD; LR by warmdown fraction with MIN_LR, momentum warm-up, global clip, the loop
    switched on at ENABLE_LOOPING_AT; warm-up steps (plain and looped), then restore."""
    h = mod.Hyperparameters()
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    if hasattr(model, "qo_bank"):
        banks = [model.qo_bank, model.kv_bank, model.mlp_up_bank, model.mlp_down_bank]
    else:  # #1394, #1493: the block matrices as linears
        banks = [q for n, q in model.blocks.named_parameters() if q.ndim == 2 and not any(t in n for t in pats)]
    scalars = [q for n, q in model.blocks.named_parameters() if q.ndim < 2 or any(t in n for t in pats)]
    scalars += [q for q in (model.skip_weights, model.skip_gates, getattr(model, "parallel_post_lambdas", None),
                            getattr(model, "parallel_resid_lambdas", None)) if q is not None]
    if getattr(model, "smear_gate_enabled", False):
        scalars += [model.smear_gate.weight, model.smear_lambda]
    kw = dict(betas=(h.beta1, h.beta2), eps=h.adam_eps)
    opt_tok = torch.optim.AdamW([{"params": [model.tok_emb.weight], "lr": h.tied_embed_lr, "base_lr": h.tied_embed_lr}],
                                weight_decay=h.embed_wd, **kw)
    opt_scalar = torch.optim.AdamW([{"params": scalars, "lr": h.scalar_lr, "base_lr": h.scalar_lr}],
                                   weight_decay=h.adam_wd, **kw)
    muon = mod.Muon(banks, lr=h.matrix_lr, momentum=h.muon_momentum, backend_steps=h.muon_backend_steps,
                    weight_decay=h.muon_wd, row_normalize=h.muon_row_normalize)
    for g in muon.param_groups:
        g["base_lr"] = h.matrix_lr
    opts = [opt_tok, muon, opt_scalar]

    def one(step: int, batch) -> float:
        frac = step / steps
        if not model.looping_active and h.num_loops > 0 and frac >= h.enable_looping_at:
            model.looping_active = True
        scale = max((1.0 - frac) / h.warmdown_frac, h.min_lr) if frac >= 1.0 - h.warmdown_frac else 1.0
        for o in opts:
            o.zero_grad(set_to_none=True)
        total = 0.0
        for x, y, kw in batch:
            loss = model(x, y, **kw)
            (loss / len(batch)).backward()
            total += float(loss.detach()) / len(batch)
        mf = min(step / h.muon_momentum_warmup_steps, 1.0) if h.muon_momentum_warmup_steps > 0 else 1.0
        _step(model, opts, (1 - mf) * h.muon_momentum_warmup_start + mf * h.muon_momentum, scale, h.grad_clip_norm)
        return total

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved = [copy.deepcopy(o.state_dict()) for o in opts]
    for looped in (False, True):
        model.looping_active = looped
        for i in range(warmup):
            one(0, batches[i])
    model.looping_active = False
    model.load_state_dict(state)
    for o, st in zip(opts, saved):
        o.load_state_dict(st)
    return [one(i, batches[i]) for i in range(steps)]


def frontier_overrides(mod) -> list[str]:
    """golf's optimizer and schedule set to an April record's Hyperparameters."""
    h = mod.Hyperparameters()
    schedule = "polar_express_1787" if hasattr(mod, "_PE_COEFFS") else "quintic"
    return ["schedule.warmdown_iters=0", f"schedule.warmdown_fraction={h.warmdown_frac}", f"schedule.lr_floor={h.min_lr}",
            f"schedule.momentum_start={h.muon_momentum_warmup_start}", f"schedule.momentum_end={h.muon_momentum}",
            f"schedule.momentum_warmup_steps={h.muon_momentum_warmup_steps}", f"optimizer.matrix_lr={h.matrix_lr}",
            f"optimizer.embed_lr={h.tied_embed_lr}", f"optimizer.scalar_lr={h.scalar_lr}",
            f"optimizer.adam_betas=[{h.beta1},{h.beta2}]", f"optimizer.adam_eps={h.adam_eps}",
            f"optimizer.muon_weight_decay={h.muon_wd}", f"optimizer.adam_weight_decay={h.adam_wd}",
            f"optimizer.embed_weight_decay={h.embed_wd}", f"optimizer.grad_clip_norm={h.grad_clip_norm}",
            f"optimizer.orthogonalize.schedule={schedule}", f"optimizer.orthogonalize.steps={h.muon_backend_steps}",
            f"optimizer.orthogonalize.pre_norm={'row' if h.muon_row_normalize else 'none'}",
            "optimizer.muon_momentum_dtype=bfloat16", f"model.loop_from={h.enable_looping_at}"]


class _Batches:
    """Serves the same list of micro-batches to golf's trainer (restartable, like the record's loader)."""

    def __init__(self, batches):
        self.flat, self.i = [mb for b in batches for mb in b], 0

    def next_batch(self, *_):
        self.i += 1
        return self.flat[self.i - 1]

    def prefetch(self, *_):  # the batches are on the device already
        pass

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, s):
        self.i = s["i"]


def compare_training(mod, a, device) -> list[str]:
    from golf.build import components
    from golf.dist import DistInfo
    from golf.logging import NullBackend
    from golf.trainer import train

    args = mod.Hyperparameters()
    frontier = list(inspect.signature(mod.GPT).parameters) == ["h"]
    common = [f"train.iterations={a.train_steps}", f"train.warmup_steps={a.warmup}", "train.max_wallclock_seconds=0",
              f"train.seq_len={a.seq_len}", "train.compile=false", "train.device=" + device.type, "train.precision=fp32"]
    if frontier:  # one packed row per micro-step, as the records' loader gives
        overrides = shlex.split(a.golf) + frontier_overrides(mod) + common + [
            f"train.batch_tokens={a.accum * a.batch * a.seq_len}", f"train.max_micro_batch_tokens={a.batch * a.seq_len}"]
    else:
        overrides = shlex.split(a.golf) + [
            "optimizer=parallel_muon", "schedule=warmdown_3500", f"schedule.warmdown_iters={args.warmdown_iters}",
            f"train.batch_tokens={a.accum * a.batch * a.seq_len}", f"train.max_micro_batch_tokens={a.batch * a.seq_len}"
        ] + common
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    parts = components(OmegaConf.to_container(cfg, resolve=True))
    torch.manual_seed(a.seed)
    ours_model = parts["model_factory"]().to(device)
    batches = []
    for s in range(max(a.train_steps, a.warmup)):
        step = []
        for k in range(a.accum):
            x, kw = batch(mod, ours_model, argparse.Namespace(**{**vars(a), "seed": a.seed + 1 + s * a.accum + k}), device)
            step.append((x[:, :-1], x[:, 1:], kw))
        batches.append(step)
    ref = record_model(mod, a.seed).float().to(device)
    if hasattr(ref, "looping_active"):
        ref.looping_active = False  # training starts without the loop; the loss is the record's
    losses = frontier_losses if frontier else record_losses
    theirs = losses(mod, ref, [[b if frontier else b[:2] for b in st] for st in batches], a.train_steps, a.warmup)
    out = train(model=ours_model, train_model=ours_model, optimizer=parts["optimizer_factory"](ours_model),
                schedule=parts["schedule"], loader=_Batches([[b[:2] for b in st] for st in batches]),
                cfg=parts["train_cfg"], dist_info=DistInfo(0, 1, 0, device), log=lambda *_: None, metrics=NullBackend(),
                autocast_dtype=None)
    worst = max(abs(r - o) / abs(r) for r, o in zip(theirs, out.losses))
    print(f"training, {a.train_steps} steps after {a.warmup} warm-up steps (restored), grad accum {a.accum}:")
    print("| step | record loss | golf loss |\n|---|---|---|")
    for i, (r, o) in enumerate(zip(theirs, out.losses), start=1):
        print(f"| {i} | {r:.6f} | {o:.6f} |")
    print(f"largest relative loss difference {worst:.2e}")
    return [f"training losses differ ({worst:.2e})"] if worst > 2e-3 else []



def golf_ttt(mod, h, bos_id: int, seed: int = 0, compile: bool | str = "auto"):
    """golf's PhasedTTTEvaluator set to a record's Hyperparameters (and its class-level LoRA alpha / warm start)."""
    from golf.eval.phased_ttt import PhasedTTTEvaluator

    targets = ["q", "v", "head"] + [t for t, on in (("k", h.ttt_k_lora), ("o", h.ttt_o_lora), ("mlp", h.ttt_mlp_lora)) if on]
    return PhasedTTTEvaluator(chunk=h.ttt_chunk_size, window=h.ttt_eval_seq_len, batch_docs=h.ttt_batch_size,
                              rank=h.ttt_lora_rank, alpha=mod.BatchedLinearLoRA._ALPHA, targets=targets,
                              lr=h.ttt_lora_lr, betas=(h.ttt_beta1, h.ttt_beta2), weight_decay=h.ttt_weight_decay,
                              warm_start_a=mod.BatchedLinearLoRA._WARM_START_A, grad_steps=h.ttt_grad_steps,
                              prefix_docs=h.phased_ttt_prefix_docs, phases=h.phased_ttt_num_phases,
                              global_lr=h.global_ttt_lr, global_momentum=h.global_ttt_momentum,
                              global_epochs=h.global_ttt_epochs, global_chunk_tokens=h.global_ttt_chunk_tokens,
                              global_batch_seqs=h.global_ttt_batch_seqs, global_grad_clip=h.global_ttt_grad_clip,
                              bos_id=bos_id, seed=seed, compile=compile)


@contextmanager
def record_adapter_draws(mod, ref, h):
    """While active, golf's adapters take their A from the record's ``BatchedTTTLoRA`` built at that moment from the
    global RNG (golf creates them when the record does: each phase's start, each short batch), so with the global
    RNG seeded alike the two start every batch from the same adapters."""
    import golf.models.lora as lora_mod

    golf_for_model = lora_mod.DocLoRA.for_model
    draw_from = copy.deepcopy(ref).cpu()

    def record_draws(model, rows, *, rank, alpha, targets, generator):
        r = mod.BatchedTTTLoRA(rows, draw_from, h.ttt_lora_rank, k_lora=h.ttt_k_lora, mlp_lora=h.ttt_mlp_lora,
                               o_lora=h.ttt_o_lora)
        mine = golf_for_model(model, rows, rank=rank, alpha=alpha, targets=targets, generator=generator)
        with torch.no_grad():
            for i, layer in enumerate(mine.layers):
                for t, name in (("q", "q_loras"), ("k", "k_loras"), ("v", "v_loras"), ("o", "o_loras"), ("mlp", "mlp_loras")):
                    if t in layer:
                        layer[t].A.copy_(getattr(r, name)[i].A)
            if mine.head is not None:
                mine.head.A.copy_(r.lm_head_lora.A)
        return mine

    lora_mod.DocLoRA.for_model = record_draws
    try:
        yield
    finally:
        lora_mod.DocLoRA.for_model = golf_for_model


def compare_ttt(mod, ref, ours, a, device) -> list[str]:
    """The record's phased TTT (``eval_val_ttt_phased``, global SGD phases included) against golf's
    ``PhasedTTTEvaluator`` set to the record's Hyperparameters, each on its own copy of the same weights, over the
    same documents (a BOS, then 30-400 random tokens) and the same per-token bytes. Golf draws its adapters' A from
    the record's ``BatchedTTTLoRA``, built from the same global RNG state at the same moments (each phase's start,
    each short batch), so the two start every batch from the same adapters."""
    from types import SimpleNamespace

    from golf.eval.bpb import TargetBytes

    h = mod.Hyperparameters()
    if h.ttt_eval_seq_len != h.eval_seq_len:
        return ["--ttt-docs needs TTT_EVAL_SEQ_LEN == EVAL_SEQ_LEN (golf's phases use the TTT window)"]
    g = torch.Generator().manual_seed(a.seed + 11)
    docs = [torch.cat((torch.tensor([ours.bos_id]), torch.randint(2, ours.vocab_size, (int(n),), generator=g)))
            for n in torch.randint(30, 400, (a.ttt_docs,), generator=g)]
    val = torch.cat(docs)
    base = torch.randint(1, 5, (ours.vocab_size,), generator=g).to(torch.int16)
    space, boundary = torch.arange(ours.vocab_size) % 3 == 0, torch.arange(ours.vocab_size) < 2
    per = (base[val[1:]].long() + (space[val[1:]] & ~boundary[val[:-1]]).long()).to(torch.int32)
    val_data = SimpleNamespace(val_tokens=val, base_bytes_lut=base.to(device), has_leading_space_lut=space.to(device),
                               is_boundary_token_lut=boundary.to(device), caseops_enabled=False, val_bytes=None)
    theirs_model = copy.deepcopy(ref)
    torch.manual_seed(a.seed + 13)
    loss_r, bpb_r = mod.eval_val_ttt_phased(h, theirs_model, device, val_data, forward_ttt_train=theirs_model.forward_ttt)
    ev = golf_ttt(mod, h, ours.bos_id, compile=False)
    mine_model = copy.deepcopy(ours)
    mine_model.doc_max_len = h.eval_seq_len  # the record cuts its global phases' documents there
    with record_adapter_draws(mod, ref, h):
        torch.manual_seed(a.seed + 13)
        r = ev.evaluate(mine_model, val.to(device), TargetBytes(torch.cat((torch.zeros(1, dtype=torch.int32), per)).to(device)))
    print(f"phased TTT on {a.ttt_docs} documents ({val.numel():,} tokens), batches of {h.ttt_batch_size}, "
          f"{h.phased_ttt_num_phases} phases over {h.phased_ttt_prefix_docs} documents:")
    print(f"| | val_loss | val_bpb |\n|---|---|---|\n| record | {loss_r:.8f} | {bpb_r:.8f} |\n"
          f"| golf | {r.val_loss:.8f} | {r.val_bpb:.8f} |")
    diff = abs(r.val_loss - loss_r) / abs(loss_r)
    print(f"relative val_loss difference {diff:.2e}; golf ran {r.phases_done} phases")
    return [f"phased TTT differs ({diff:.2e})"] if diff > 1e-5 else []



def ttt_on_data(mod, a, device) -> int:
    """The record's phased TTT (its ``eval_val_ttt_phased``, its forward compiled as its main() compiles it, after
    its own warm-up) and golf's ``PhasedTTTEvaluator`` on the same weights and validation data, golf's adapters drawn
    as the record's, each timed: the records report the TTT loop alone (``total_eval_time``), not the warm-up, so
    both are given."""
    import time

    from golf.eval.bpb import TargetBytes

    h = mod.Hyperparameters()
    ours = golf_model(shlex.split(a.golf), a.seed)
    if a.golf_weights:
        from safetensors.torch import load_file

        ours.load_export_state_dict(load_file(str(a.golf_weights)))
    ref = record_model(mod, a.seed)
    engram = getattr(ours, "engram", None) is not None
    if a.golf_weights:
        golf_into_record(ref, ours.state_dict(), engram)
    else:
        perturb(ref, a.perturb, a.seed)
        mine = ours.state_dict()
        mapped = record_as_golf(ref.state_dict(), len(ours.blocks), engram, set(mine))
        ours.load_state_dict({k: mapped.get(k, v) for k, v in mine.items()})
    before_ttt = {k: v.clone() for k, v in ours.state_dict().items()}  # the phases change the weights
    cuda = device.type == "cuda"
    ref = ref.to(device)
    if cuda:
        ref = ref.bfloat16()
        mod.restore_fp32_params(ref)
    ours = ours.to(device)
    val_data = mod.ValidationData(h, device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    fwd = ref.forward_ttt
    t0 = time.perf_counter()
    if cuda:  # as the record's train_and_eval: compiled with dynamic shapes, warmed up on random tokens
        fwd = torch.compile(lambda x, y, lora: ref.forward_ttt(x, y, lora=lora), dynamic=True)
        lora = mod.BatchedTTTLoRA(h.ttt_batch_size, ref, h.ttt_lora_rank, k_lora=h.ttt_k_lora,
                                  mlp_lora=h.ttt_mlp_lora, o_lora=h.ttt_o_lora).to(device)
        for ctx_len in (h.ttt_chunk_size, h.ttt_eval_seq_len):
            xw = torch.randint(0, h.vocab_size, (h.ttt_batch_size, ctx_len), device=device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                fwd(xw, xw, lora).mean().backward()
        del lora
    sync()
    warm = time.perf_counter() - t0
    draws = record_adapter_draws(mod, ref, h)  # before the record's TTT changes its weights (only shapes are read)
    torch.manual_seed(a.seed + 13)
    t0 = time.perf_counter()
    loss_r, bpb_r = mod.eval_val_ttt_phased(h, ref, device, val_data, forward_ttt_train=fwd)
    sync()
    rec_s = time.perf_counter() - t0

    ev = golf_ttt(mod, h, ours.bos_id, a.seed)
    ours.doc_max_len = h.eval_seq_len
    tokens = val_data.val_tokens.to(device)
    if getattr(val_data, "caseops_enabled", False) and val_data.val_bytes is not None:
        per = val_data.val_bytes[: tokens.numel()].to(torch.int32).clone()
    else:
        nxt, prev = tokens[1:].long(), tokens[:-1].long()
        per = torch.cat((torch.zeros(1, dtype=torch.int32, device=device), (
            val_data.base_bytes_lut[nxt].long()
            + (val_data.has_leading_space_lut[nxt] & ~val_data.is_boundary_token_lut[prev]).long()).to(torch.int32)))
    per[0] = 0
    target_bytes = TargetBytes(per.to(device))
    torch.manual_seed(a.seed + 13)
    t0 = time.perf_counter()
    with draws:  # golf's adapters start from the record's draws
        r = ev.evaluate(ours, tokens, target_bytes, autocast_dtype=torch.bfloat16 if cuda else None)
    sync()
    golf_s = time.perf_counter() - t0
    # the gain: the same chunks and windows scored with no update at all (no adapter step, no phase)
    ours.load_state_dict(before_ttt)
    still = golf_ttt(mod, h, ours.bos_id, a.seed)
    still.grad_steps, still.prefix_docs = 0, 0
    t0 = time.perf_counter()
    r0 = still.evaluate(ours, tokens, target_bytes, autocast_dtype=torch.bfloat16 if cuda else None)
    sync()
    still_s = time.perf_counter() - t0
    print(f"phased TTT on {a.ttt_data} ({tokens.numel() - 1:,} targets, {r.docs} documents), {device}:")
    print("| | val_loss | val_bpb | warm-up (s) | TTT eval (s) |\n|---|---|---|---|---|")
    print(f"| record | {loss_r:.6f} | {bpb_r:.6f} | {warm:.1f} | {rec_s:.1f} |")
    print(f"| golf | {r.val_loss:.6f} | {r.val_bpb:.6f} | (compiles inside) | {golf_s:.1f} |")
    print(f"| golf, no update (the same chunks, no adapter step, no phase) | {r0.val_loss:.6f} | {r0.val_bpb:.6f} | | "
          f"{still_s:.1f} |")
    print(f"TTT gain (golf): {r.val_bpb - r0.val_bpb:+.5f} bpb")
    print(f"val_bpb difference {r.val_bpb - bpb_r:+.5f}; golf {rec_s / golf_s:.2f}x the record's speed without its "
          f"warm-up, {(rec_s + warm) / golf_s:.2f}x with it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
