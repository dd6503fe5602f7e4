"""golf's Triton kernels at the #1019 shapes: each (tile, warps) setting's forward and backward time and
bandwidth, beside inductor's compiled form of the PyTorch reference, forward+backward. One GPU:

    python scripts/bench_kernels.py [--tiles 2048,4096,8192] [--warps 2,4,8] [--compare-qk old_qk_norm_rope_triton.py]
    python scripts/bench_kernels.py --mlp   # the MLP with quack's fused epilogues against cuBLAS + inductor
    python scripts/bench_kernels.py --attention   # causal attention: every kernel model.attn_kernel can choose
    python scripts/bench_kernels.py --qkv [--compare-qk other.py]   # the fused projection's op, grouped and wide K/V
    python scripts/bench_kernels.py --ce [--record R/train_gpt.py]   # softcapped cross-entropy: golf, Liger, a record's

q is [48, 2048, 8, 64] with the query gain, k is [48, 2048, 4, 64] without; RoPE on 16 of 64 channels. The
bandwidth counts the bytes a kernel must move (forward: x in, y out; backward: x and dy in, dx out). XSA: y is
attention's output [48, 2048, 8, 64] (token-major, as cuDNN returns it for token-major q), v [48, 2048, 4, 64]
(forward: y, v in, o out; backward: do, y, v in, dy, dv out).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(fn, reps: int = 40) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def bench_tensor(name: str, heads: int, gain: bool, tiles: list[int], warps: list[int], k=None, form: str = "triton",
                 reference_row: bool = True) -> None:
    """One table row per (tile, warps) of the kernels of module ``k`` (golf's by default), then inductor's compiled
    reference."""
    if k is None:
        from golf.kernels import qk_norm_rope_triton as k
    from golf.kernels.qk_norm_rope import reference
    from golf.kernels.rotary import rotary_tables

    cos, sin = (t.bfloat16() for t in rotary_tables(2048, 16, 22082.0, torch.device("cuda")))
    x = torch.randn(48, 2048, heads, 64, device="cuda", dtype=torch.bfloat16)
    g = torch.rand(heads, device="cuda", dtype=torch.bfloat16) + 0.5 if gain else None
    dy_head = torch.randn(48, heads, 2048, 64, device="cuda", dtype=torch.bfloat16)  # attention's old layout
    dy_tok = dy_head.transpose(1, 2).contiguous()
    dy = dy_tok if hasattr(k, "supported") else dy_head  # 1c94bb0's kernel took attention's head-major gradient
    nbytes = x.numel() * 2
    for tile in tiles:
        for w in warps:
            k.TILE, k.WARPS = tile, w  # a module with one setting for both directions
            k.FWD = k.BWD = (tile, w)
            f = median_ms(lambda: k.norm_rope(x, cos, sin, g))
            b = median_ms(lambda: k.norm_rope_backward(dy, x, cos, sin, g))
            print(f"| {name} | {form} | {tile} | {w} | {f:.3f} | {2 * nbytes / f / 1e6:,.0f} | {b:.3f} | "
                  f"{3 * nbytes / b / 1e6:,.0f} | {f + b:.3f} |", flush=True)
    if not reference_row:
        return
    xr = x.clone().requires_grad_()
    gr = g.clone().requires_grad_() if gain else None
    ref = torch.compile(lambda x_, g_: reference(x_, cos, sin, g_))
    inputs = [xr] + ([gr] if gain else [])
    ms = median_ms(lambda: torch.autograd.grad(ref(xr, gr), inputs, dy_tok))
    print(f"| {name} | inductor (reference) | - | - | - | - | - | - | {ms:.3f} |", flush=True)


def bench_qkv(tiles: list[int], warps: list[int], k=None, form: str = "triton") -> None:
    """The fused projection's op at the #1019 micro-batch (qkv [48, 2048, 16, 64]: 8 query heads, 4 KV heads), as
    grouped K/V (``qkv_norm_rope``) and at the query heads with v also at its own (``qkv_norm_rope_wide``), forward
    and backward, each (tile, warps) setting; GB/s by the bytes each must move."""
    if k is None:
        from golf.kernels import qk_norm_rope_triton as k
    from golf.kernels.rotary import rotary_tables

    B, T, H, J, D = 48, 2048, 8, 4, 64
    cos, sin = (t.bfloat16() for t in rotary_tables(T, 16, 22082.0, torch.device("cuda")))
    x = torch.randn(B, T, H + 2 * J, D, device="cuda", dtype=torch.bfloat16)
    g = torch.rand(H, device="cuda", dtype=torch.bfloat16) + 0.5
    unit = B * T * D * 2  # bytes of one head for every token
    d_narrow = [torch.randn(B, T, n, D, device="cuda", dtype=torch.bfloat16) for n in (H, J, J)]
    d_wide = [torch.randn(B, T, n, D, device="cuda", dtype=torch.bfloat16) for n in (H, H, H, J)]
    forms = {"grouped": (lambda: k.qkv_norm_rope(x, cos, sin, g, H, J),
                         lambda: k.qkv_norm_rope_backward(*d_narrow, x, cos, sin, g, H, J),
                         2 * (H + 2 * J) * unit, (3 * H + 5 * J) * unit),
             "wide": (lambda: k.qkv_norm_rope_wide(x, cos, sin, g, None, H, J, True),
                      lambda: k.qkv_norm_rope_wide_backward(*d_wide, x, cos, sin, g, None, H, J),
                      (4 * H + 3 * J) * unit, (5 * H + 4 * J) * unit)}
    for tile in tiles:
        for w in warps:
            k.FWD = k.BWD = (tile, w)
            for label, (fwd, bwd, fb, bb) in forms.items():
                f, b = median_ms(fwd), median_ms(bwd)
                print(f"| qkv {label} | {form} | {tile} | {w} | {f:.3f} | {fb / f / 1e6:,.0f} | {b:.3f} | "
                      f"{bb / b / 1e6:,.0f} | {f + b:.3f} |", flush=True)


def bench_xsa(tiles: list[int], warps: list[int]) -> None:
    from golf.kernels import xsa_triton as k
    from golf.kernels.xsa import reference

    y = torch.randn(48, 2048, 8, 64, device="cuda", dtype=torch.bfloat16)  # cuDNN's output, token-major like q
    v = torch.randn(48, 2048, 4, 64, device="cuda", dtype=torch.bfloat16)
    do = torch.randn(48, 2048, 8, 64, device="cuda", dtype=torch.bfloat16)
    fwd_bytes, bwd_bytes = (2 * y.numel() + v.numel()) * 2, (3 * y.numel() + 2 * v.numel()) * 2
    for tile in tiles:
        for w in warps:
            k.TILE, k.WARPS = tile, w
            f = median_ms(lambda: k.xsa(y, v))
            b = median_ms(lambda: k.xsa_backward(do, y, v))
            print(f"| xsa | triton | {tile} | {w} | {f:.3f} | {fwd_bytes / f / 1e6:,.0f} | {b:.3f} | "
                  f"{bwd_bytes / b / 1e6:,.0f} | {f + b:.3f} |", flush=True)
    yr, vr = y.detach().requires_grad_(), v.clone().requires_grad_()
    ref = torch.compile(reference)
    ms = median_ms(lambda: torch.autograd.grad(ref(yr, vr), [yr, vr], do))
    print(f"| xsa | inductor (reference) | - | - | - | - | - | - | {ms:.3f} |", flush=True)


def _fused_form(x, w_fc, w_proj, slope, act):
    from golf.kernels import fused_mlp as fm

    return fm.fused_mlp(x, w_fc, w_proj, act)


def bench_mlp() -> None:
    """The MLP forward+backward at both presets' micro-batch shapes: inductor's compiled reference (cuBLAS GEMMs,
    inductor's activation kernels) against quack's epilogue-fused GEMMs (golf.kernels.fused_mlp), each also
    inside torch.compile; and the fused form's largest relative error against fp32, beside the reference's."""
    from golf.kernels import fused_mlp as fm

    print("\n| shape M x dim x hidden | slope | form | fwd+bwd ms | max rel. error vs fp32 (y, dx, dw_fc, dw_proj) |"
          "\n|---|---|---|---|---|")
    for M, dim, hidden, slope in ((98304, 512, 1536, 0.5), (65536, 512, 1024, None)):
        act = fm.activation_name(slope)
        fused = functools.partial(_fused_form, act=act)
        forms = {"inductor (reference)": torch.compile(fm.reference), "quack fused": fused,
                 "quack fused, compiled": torch.compile(fused)}
        for form, fn in forms.items():
            (x, w_fc, w_proj, dy), errors = fm.errors_vs_fp32(fn, M, dim, hidden, slope)
            inputs = [x, w_fc, w_proj]
            ms = median_ms(lambda f=fn, a=inputs, s=slope, d=dy: torch.autograd.grad(f(*a, s), a, d), reps=20)
            err = ", ".join(f"{e:.2e}" for e in errors)
            print(f"| {M} x {dim} x {hidden} | {slope} | {form} | {ms:.3f} | {err} |", flush=True)


def bench_attention() -> None:
    """Causal attention forward and forward+backward at the #1019 micro-batch (q [48, 2048, 8, 64], grouped k, v
    [48, 2048, 4, 64]) and the baseline's (q [32, 1024, 8, 64], k, v 4 heads), through each kernel that runs
    here, with TFLOP/s by the causal count (half of 4 B T^2 H D forward, 2.5x that forward+backward)."""
    from golf.models.attention import KERNELS, attend, check_kernel

    warm = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(100):  # about a second of GEMMs: the first form timed no longer pays for the clocks' ramp
        warm @ warm
    torch.cuda.synchronize()
    print("\n| q shape | kernel | forward ms | TFLOP/s | fwd+bwd ms | TFLOP/s |\n|---|---|---|---|---|---|")
    for B, T, H, Hkv, D in ((48, 2048, 8, 4, 64), (32, 1024, 8, 4, 64)):
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(B, T, H, D, device="cuda", generator=g).bfloat16().requires_grad_()
        k, v = (torch.randn(B, T, Hkv, D, device="cuda", generator=g).bfloat16().requires_grad_() for _ in range(2))
        dy = torch.randn_like(q)
        flops = 2 * B * T * T * H * D  # causal: half of the 4 B T^2 H D of QK^T and PV
        for kernel in [k_ for k_ in KERNELS if k_ not in ("auto", "math")]:
            try:
                check_kernel(kernel)
            except ValueError as e:
                print(f"| {list(q.shape)} | {kernel} | not here: {e} | | | |")
                continue
            # grouped K/V make the FA backward accumulate dK, dV in fp32, then convert them: the same attention
            # on K/V repeated to the query heads, once with the repeat timed and once without it
            wide = [t.detach().repeat_interleave(H // Hkv, dim=2).requires_grad_() for t in (k, v)]
            forms = {kernel: (lambda a, b, c, kk=kernel: attend(a, b, c, kk), (q, k, v)),
                     f"{kernel}, K/V repeated": (lambda a, b, c, kk=kernel, g=H // Hkv: attend(
                         a, b.repeat_interleave(g, dim=2), c.repeat_interleave(g, dim=2), kk), (q, k, v)),
                     f"{kernel}, K/V at the query heads (no repeat)": (
                         lambda a, b, c, kk=kernel: attend(a, b, c, kk), (q, *wide))}
            for label, (fn, qkv) in forms.items():
                fwd = median_ms(lambda f=fn, t=qkv: f(*t), reps=20)
                both = median_ms(lambda f=fn, t=qkv, d=dy: torch.autograd.grad(f(*t), t, d), reps=20)
                print(f"| {list(q.shape)} | {label} | {fwd:.3f} | {flops / fwd / 1e9:.0f} | {both:.3f} | "
                      f"{2.5 * flops / both / 1e9:.0f} |", flush=True)


def bench_ce(record: Path | None) -> None:
    """The training loss over softcapped logits (cap 30) at #1855's micro-batch, 98,304 tokens x vocab 8192 bf16,
    forward and forward+backward: golf's fused kernel, inductor's compiled PyTorch form, Liger's cross-entropy
    (``softcap``; where liger-kernel is installed) and, with ``record``, that record's own fused kernel (#1855's
    ``softcapped_cross_entropy``). The error is the loss's and the gradient's largest difference from the fp32
    PyTorch form (Liger returns its loss in the logits' dtype, bf16). Each form gets its own copy of the logits:
    Liger's forward overwrites its input with the gradient."""
    from golf.kernels import softcap_ce

    N, V, cap = 98_304, 8192, 30.0
    g = torch.Generator(device="cuda").manual_seed(0)
    z = (torch.randn(N, V, device="cuda", generator=g) * 8).bfloat16().requires_grad_()
    t = torch.randint(0, V, (N,), device="cuda", generator=g)
    forms = {"golf softcap_ce (Triton)": lambda x: softcap_ce.loss(x, t, cap, "triton"),
             "PyTorch, inductor-compiled": torch.compile(lambda x: softcap_ce.reference(x, t, cap))}
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy
        forms["Liger cross_entropy (softcap)"] = lambda x: liger_cross_entropy(x, t, softcap=cap)
    except ImportError as e:
        print(f"Liger: not here ({e}); pip install liger-kernel")
    if record is not None:
        src = record.read_text()
        head = src[: src.index("class Hyperparameters")]  # the kernels and their ops, not the model or main
        head = head.replace("from flash_attn_interface import", "if False: from flash_attn_interface import")
        path = Path(tempfile.mkdtemp()) / "record_ce.py"  # triton.jit reads its kernels' source from a file
        path.write_text(head)
        spec = importlib.util.spec_from_file_location("record_ce", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        forms[f"record's softcapped_cross_entropy ({record.name})"] = \
            lambda x: mod.softcapped_cross_entropy(x, t, cap)
    zf = z.detach().float().requires_grad_()
    ref_loss = softcap_ce.reference(zf, t, cap)
    (ref_grad,) = torch.autograd.grad(ref_loss, zf)
    nbytes = z.numel() * 2
    print(f"\n| logits {N} x {V} bf16, cap {cap:g} | forward ms | GB/s | fwd+bwd ms | loss error | grad error |\n"
          "|---|---|---|---|---|---|")
    for label, fn in forms.items():
        x = z.detach().clone().requires_grad_()  # Liger writes its gradient into its input: each form its own copy
        try:
            loss = fn(x)
            (grad,) = torch.autograd.grad(loss, x)
        except Exception as e:  # a form that fails here is a row saying so, not the end of the table
            print(f"| {label} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | | | |", flush=True)
            continue
        fwd = median_ms(lambda f=fn, x=x: f(x), reps=20)
        both = median_ms(lambda f=fn, x=x: torch.autograd.grad(f(x), x), reps=20)
        err_l = abs(loss.float().item() - ref_loss.item())
        err_g = (grad.float() - ref_grad).abs().max().item()
        print(f"| {label} | {fwd:.3f} | {nbytes / fwd / 1e6:.0f} | {both:.3f} | {err_l:.2e} | {err_g:.2e} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiles", default="2048,4096,8192")
    p.add_argument("--warps", default="2,4,8")
    p.add_argument("--compare-qk", type=Path, help="another version of qk_norm_rope_triton.py (its ops renamed) to time "
                   "beside golf's at each --tiles and --warps setting")
    p.add_argument("--mlp", action="store_true", help="time the fused MLP (quack-kernels) instead of the Triton kernels")
    p.add_argument("--attention", action="store_true", help="time causal attention's kernels instead of the Triton kernels")
    p.add_argument("--qkv", action="store_true", help="time the fused projection's op, grouped and wide K/V, instead "
                   "(with --compare-qk, the other version's too)")
    p.add_argument("--ce", action="store_true", help="time the softcapped cross-entropy's forms instead")
    p.add_argument("--record", type=Path, help="with --ce: a record's train_gpt.py whose fused CE to time beside")
    a = p.parse_args(argv)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    if a.ce:
        return bench_ce(a.record)
    if a.mlp:
        return bench_mlp()
    if a.attention:
        return bench_attention()
    print("| tensor | form | tile | warps | forward ms | GB/s | backward ms | GB/s | fwd+bwd ms |\n|---|---|---|---|---|---|---|---|---|")
    tiles, warps = [int(t) for t in a.tiles.split(",")], [int(w) for w in a.warps.split(",")]
    other = None
    if a.compare_qk:
        spec = importlib.util.spec_from_file_location("qk_compared", a.compare_qk)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
    if a.qkv:
        if other is not None:
            bench_qkv(tiles, warps, other, f"triton ({a.compare_qk.name})")
        return bench_qkv(tiles, warps)
    for name, heads, gain in (("q", 8, True), ("k", 4, False)):
        if other is not None:
            bench_tensor(name, heads, gain, tiles, warps, other, f"triton ({a.compare_qk.name})", reference_row=False)
        bench_tensor(name, heads, gain, tiles, warps)
    bench_xsa(tiles, warps)


if __name__ == "__main__":
    main()
