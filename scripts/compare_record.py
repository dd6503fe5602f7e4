"""Check a golf model against a record's own ``train_gpt.py``: same seed -> the same initial weights, the
same loss and the same gradients on the same batch (fp32, CPU or GPU).

    python scripts/compare_record.py --record path/to/train_gpt.py --golf "model=xsa_all" \
        --env BIGRAM_VOCAB_SIZE=3072 --env BIGRAM_DIM=112

The record file is imported, never copied: its ``Hyperparameters`` (read from the environment, so pass the
record's command-line settings with ``--env``) and its ``GPT`` build the reference. Banked records' 3-D
banks are compared slice by slice with golf's per-layer matrices. Without FlashAttention-3 a stand-in
``flash_attn_interface`` (SDPA with grouped K/V) is put on the path first. Exit status 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import shlex
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FA3_STAND_IN = '''
import torch.nn.functional as F
def flash_attn_func(q, k, v, causal=True):
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                                       enable_gqa=k.size(2) != q.size(2))
    return o.transpose(1, 2)
'''
BANKS = {"qo_bank": ("attn.c_q", "attn.proj"), "kv_bank": ("attn.c_k", "attn.c_v"),
         "mlp_up_bank": ("mlp.fc",), "mlp_down_bank": ("mlp.proj",)}
RENAMES = (("ve_shared.", "ve."),)


def import_record(path: Path, env: dict[str, str]):
    os.environ.update(env)
    try:
        import flash_attn_interface  # noqa: F401
    except ImportError:
        stub = Path(tempfile.mkdtemp()) / "flash_attn_interface.py"
        stub.write_text(FA3_STAND_IN)
        sys.path.insert(0, str(stub.parent))
    spec = importlib.util.spec_from_file_location("record_train_gpt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def record_model(mod, seed: int) -> torch.nn.Module:
    """The record's GPT, built from its Hyperparameters the way its main() does (kwargs by name)."""
    args = mod.Hyperparameters()
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


def record_as_golf(state: dict[str, torch.Tensor], num_layers: int, engram: bool) -> dict[str, torch.Tensor]:
    """The record's state dict under golf's names (banks split into per-layer matrices)."""
    out = {}
    for k, v in state.items():
        if k in BANKS:
            names = BANKS[k]
            per = v.shape[0] // len(names)
            for j, name in enumerate(names):
                for i in range(per):
                    out[f"blocks.{i}.{name}.weight"] = v[j * per + i]
            continue
        for a, b in RENAMES + ((("bigram.", "engram."),) if engram else ()):
            k = k.replace(a, b) if k.startswith(a) else k
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", type=Path, required=True, help="a record's train_gpt.py")
    p.add_argument("--golf", default="", help='golf overrides, e.g. "model=xsa_all"')
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the record's Hyperparameters (repeatable)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    mod = import_record(a.record, dict(e.split("=", 1) for e in a.env))
    device = torch.device(a.device)
    ref = record_model(mod, a.seed).float().to(device)
    ours = golf_model(shlex.split(a.golf), a.seed).float().to(device)
    engram = getattr(ours, "engram", None) is not None
    mapped = record_as_golf(ref.state_dict(), len(ours.blocks), engram)
    mine = {k: v for k, v in ours.state_dict().items()}
    problems = [f"only in the record: {sorted(set(mapped) - set(mine))[:6]}"] if set(mapped) - set(mine) else []
    if set(mine) - set(mapped):
        problems.append(f"only in golf: {sorted(set(mine) - set(mapped))[:6]}")
    worst = max(((float((mine[k] - mapped[k]).abs().max()), k) for k in set(mine) & set(mapped)), default=(0.0, ""))
    print(f"parameters: record {sum(t.numel() for t in ref.parameters()):,}, golf {sum(t.numel() for t in ours.parameters()):,}")
    print(f"initial weights: largest difference {worst[0]:.3g} ({worst[1]})")
    if worst[0] > 0:
        problems.append(f"initial weights differ ({worst[1]}: {worst[0]:.3g})")
    g = torch.Generator().manual_seed(a.seed)
    vocab = ours.vocab_size
    x = torch.randint(0, vocab, (a.batch, a.seq_len + 1), generator=g).to(device)
    ours.load_state_dict({k: mapped.get(k, v) for k, v in mine.items()})  # compare the forward on equal weights
    losses = []
    for m in (ref, ours):
        m.train()
        m.zero_grad(set_to_none=True)
        loss = m(x[:, :-1], x[:, 1:])
        loss.backward()
        losses.append(float(loss.detach()))
    grads_ref = record_as_golf({n: q.grad for n, q in ref.named_parameters() if q.grad is not None}, len(ours.blocks), engram)
    gworst = max(((float((q.grad - grads_ref[n]).norm() / (grads_ref[n].norm() + 1e-30)), n)
                  for n, q in ours.named_parameters() if q.grad is not None and n in grads_ref), default=(0.0, ""))
    print(f"loss at init: record {losses[0]:.8f}, golf {losses[1]:.8f} (difference {abs(losses[0] - losses[1]):.2e})")
    print(f"gradients: largest relative difference {gworst[0]:.2e} ({gworst[1]})")
    tol = 1e-5 if device.type == "cpu" else 1e-3
    if abs(losses[0] - losses[1]) > tol * max(1.0, abs(losses[0])):
        problems.append("losses differ")
    if gworst[0] > 100 * tol:
        problems.append(f"gradients differ ({gworst[1]})")
    print("MATCH" if not problems else "MISMATCH: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
