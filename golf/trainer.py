"""The training loop: compile warm-up with full state restore, wallclock-capped steps with gradient
accumulation, weight averaging and late QAT, periodic validation (excluded from the training clock),
progress lines and a non-finite-loss stop.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from golf.averaging import EXPORTS, EMAConfig, SWAConfig, WeightAverager
from golf.dist import DistInfo, reduce_step
from golf.late_qat import LateQAT, QATConfig
from golf.loop_switch import LoopSwitch

COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead")
CUDAGRAPH_MODES = ("max-autotune", "reduce-overhead")  # the modes in which inductor records CUDA graphs


@dataclass
class TrainConfig:
    """The ``train`` config node."""

    batch_tokens: int = 524_288          # global tokens per optimizer step
    seq_len: int = 1024
    max_micro_batch_tokens: int | None = None  # cap on per-rank tokens per micro-step; None: the records' 8 // world_size
    max_wallclock_seconds: float = 600.0  # 0 or None: no cap
    iterations: int = 20_000             # hard cap on optimizer steps
    warmup_steps: int = 20               # compile warm-up steps, undone afterwards
    val_every: int = 0                   # periodic validation every N steps (0: only at the end)
    log_every: int = 200
    compile: bool | str = "auto"         # auto: on CUDA only
    compile_mode: str = "default"        # torch.compile mode: default | max-autotune-no-cudagraphs | max-autotune | reduce-overhead
    inductor: dict | None = None         # torch._inductor.config settings, e.g. {coordinate_descent_tuning: true};
                                         # nested or dotted keys reach its sub-configs: {triton: {mix_order_reduction: false}}
    device: str = "auto"
    precision: str = "auto"              # bf16 | fp32 | auto (bf16 on CUDA, fp32 on CPU)
    tf32: bool = True
    ema: EMAConfig = field(default_factory=EMAConfig)
    swa: SWAConfig = field(default_factory=SWAConfig)
    export: str = "raw"                  # which weights are exported: raw | ema | swa | best (by val_bpb)
    qat: QATConfig = field(default_factory=QATConfig)
    save_weights: bool = False           # write the exported float weights to <run_dir>/weights.safetensors
    load_weights: str | None = None      # start from such a file (with iterations=0: no training, re-export only)

    def __post_init__(self) -> None:
        for name, cls in (("ema", EMAConfig), ("swa", SWAConfig), ("qat", QATConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**{k: v for k, v in value.items() if k != "_target_"}))
        if self.export not in EXPORTS:
            raise ValueError(f"train.export must be one of {EXPORTS}, got {self.export!r}")
        if self.export == "ema" and self.ema.decay <= 0:
            raise ValueError("train.export=ema needs train.ema.decay > 0 (the records: 0.997)")
        if self.export == "swa" and self.swa.every <= 0:
            raise ValueError("train.export=swa needs train.swa.every > 0 (the records: 50)")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"train.compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        self.inductor = _flatten(self.inductor or {})
        if self.inductor:  # inductor's config module is imported only when settings are given
            import torch._inductor.config as inductor_config

            unknown = [k for k in self.inductor if inductor_setting(inductor_config, k) is None]
            if unknown:
                raise ValueError(f"train.inductor: {unknown} are not torch._inductor.config settings (torch "
                                 f"{torch.__version__}); see torch/_inductor/config.py for the names")
        if self.iterations < 0 or (self.iterations == 0 and not self.load_weights):
            raise ValueError(f"train.iterations must be >= 1 (0 only with train.load_weights), got {self.iterations}")

    @property
    def cudagraphs(self) -> bool:
        """Whether ``compile_mode`` records CUDA graphs (on CUDA, when compiled)."""
        return self.compile_mode in CUDAGRAPH_MODES

    def grad_accum(self, world_size: int) -> int:
        """Micro-steps per optimizer step on each rank. The global batch is the same for any world size:
        the records' rule is 8 // world_size; with ``max_micro_batch_tokens`` it is the fewest micro-steps
        whose micro-batch (a whole number of sequences) fits under the cap."""
        per_rank, rem = divmod(self.batch_tokens, world_size * self.seq_len)
        if rem or per_rank == 0:
            raise ValueError(f"train.batch_tokens={self.batch_tokens} must be a positive multiple of "
                             f"world_size={world_size} x train.seq_len={self.seq_len}")
        if self.max_micro_batch_tokens is None:
            if 8 % world_size or per_rank % (8 // world_size):
                raise ValueError(f"world_size={world_size} does not fit the records' 8 // world_size accumulation "
                                 f"rule for train.batch_tokens={self.batch_tokens}; set train.max_micro_batch_tokens")
            return 8 // world_size
        cap = max(self.max_micro_batch_tokens // self.seq_len, 1)
        return next(a for a in range(1, per_rank + 1) if per_rank % a == 0 and per_rank // a <= cap)


def _flatten(settings: dict, prefix: str = "") -> dict:
    """{triton: {mix_order_reduction: false}} -> {"triton.mix_order_reduction": False} (nested, so that a
    command line can set one key: train.inductor.triton.mix_order_reduction=true)."""
    out = {}
    for key, value in dict(settings).items():
        if hasattr(value, "items"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def inductor_setting(config, key: str) -> tuple[object, str] | None:
    """The object and attribute a (dotted) ``train.inductor`` key names in ``torch._inductor.config``, or None."""
    *path, name = key.split(".")
    for part in path:
        config = getattr(config, part, None)
        if config is None:
            return None
    return (config, name) if hasattr(config, name) else None


@dataclass
class TrainOutcome:
    status: str = "ok"                   # ok | diverged
    steps: int = 0
    train_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_history: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    averager: WeightAverager | None = None
    qat: dict | None = None
    loop: dict | None = None            # depth recurrence: when it switched on (model.loop_from)
    cudagraph_skips: int | None = None   # with a CUDA-graph compile mode: graphs inductor ran without one

    @property
    def step_median_ms(self) -> float:
        tail = self.step_ms[10:] if len(self.step_ms) > 20 else self.step_ms
        return statistics.median(tail) if tail else float("nan")


def _fmt_tokens(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}K"


def graph_hooks(model: nn.Module, optimizer, cfg: TrainConfig, device: torch.device) -> tuple[Callable, Callable]:
    """(start of a micro-step, zero the gradients). Under a CUDA-graph compile mode a graph's outputs live in
    memory its next replay overwrites, so the gradients must not be them: they are kept as zeroed ``.grad``
    buffers that backward adds each micro-step's output into, and each micro-step starts a new graph step."""
    if not (cfg.cudagraphs and device.type == "cuda"):
        return (lambda: None), optimizer.zero_grad
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
    return torch.compiler.cudagraph_mark_step_begin, (lambda: optimizer.zero_grad(set_to_none=False))


def _cudagraph_skips() -> int:
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def _warm_up(*, model, optimizer, loader, cfg: TrainConfig, one_step, one_micro_step, zero_grad, late_qat: LateQAT,
             loop: LoopSwitch, sync, log) -> None:
    """Run ``cfg.warmup_steps`` real steps (compilation, autotuning; with QAT, its graph too), then restore
    the model, optimizer and loader, so training starts from the seeded state at token 0."""
    t0 = time.perf_counter()
    model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt_state = copy.deepcopy(optimizer.state_dict())
    loader_state = loader.state_dict()
    for _ in range(cfg.warmup_steps):
        one_step()
    late_qat.precompile(one_micro_step)
    loop.precompile(one_step)
    model.load_state_dict(model_state)
    optimizer.load_state_dict(opt_state)
    zero_grad()
    loader.load_state_dict(loader_state)
    sync()
    extra = f" + one with {cfg.qat.mode} QAT" if late_qat.enabled and cfg.qat.precompile else ""
    extra += " + one looped" if loop.enabled else ""
    log(f"warmup: {cfg.warmup_steps} steps{extra} (compile + autotune) in {time.perf_counter() - t0:.1f}s, state restored")


def train(
    *,
    model: nn.Module,
    train_model: nn.Module,
    optimizer,
    schedule,
    loader,
    cfg: TrainConfig,
    dist_info: DistInfo,
    log: Callable[[str], None],
    metrics,
    autocast_dtype: torch.dtype | None,
    validate: Callable[[], dict] | None = None,
) -> TrainOutcome:
    """Train ``model`` (stepped through ``train_model``, its compiled/DDP wrapper) until the wallclock cap,
    the iteration cap, or a non-finite loss."""
    device = dist_info.device
    accum = cfg.grad_accum(dist_info.world_size)
    cap_ms = 1000.0 * cfg.max_wallclock_seconds if cfg.max_wallclock_seconds else None
    ctx = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else nullcontext
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    late_qat = LateQAT(cfg.qat, getattr(model, "qat", None))
    loop = LoopSwitch(model)
    loop.begin()
    graphs = cfg.cudagraphs and device.type == "cuda"
    graph_step, zero_grad = graph_hooks(model, optimizer, cfg, device)
    skips_before = _cudagraph_skips() if graphs else 0

    one_step, one_micro_step = _step_functions(train_model, optimizer, loader, cfg, accum, ctx, graph_step, zero_grad,
                                               device)
    if cfg.warmup_steps > 0:
        _warm_up(model=model, optimizer=optimizer, loader=loader, cfg=cfg, one_step=one_step,
                 one_micro_step=one_micro_step, zero_grad=zero_grad, late_qat=late_qat, loop=loop, sync=sync, log=log)

    out = TrainOutcome(averager=WeightAverager(model, cfg.ema, cfg.swa))
    averager = out.averager if out.averager.active else None
    tokens_per_step = cfg.batch_tokens
    sync()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # the ranks' clocks start together; after each step they agree on the largest
    t_start = time.perf_counter()
    t_prev = t_start
    paused_ms = elapsed_ms = 0.0
    step = 0
    while True:
        if validate is not None and cfg.val_every > 0 and step > 0 and step % cfg.val_every == 0:
            paused_ms += _validate(validate, step, out, log, metrics, sync)
            t_prev = time.perf_counter()

        mult = schedule.lr_multiplier(step, elapsed_ms, cap_ms, cfg.iterations)
        optimizer.set_lr_multiplier(mult)
        optimizer.set_muon_momentum(schedule.muon_momentum(step))
        if hasattr(optimizer, "set_wd_multiplier") and hasattr(schedule, "wd_multiplier"):
            optimizer.set_wd_multiplier(schedule.wd_multiplier(step, elapsed_ms, cap_ms, cfg.iterations))
        late_qat.before_step(step, mult, elapsed_ms, cap_ms, cfg.iterations, log)
        loop.before_step(step, elapsed_ms, cap_ms, cfg.iterations, log)
        loss = one_step()
        step += 1
        if averager is not None:
            averager.update(step, mult)
        local_loss = float(loss.item())
        now = time.perf_counter()
        loss_value, (nonfinite,), elapsed_ms = reduce_step(local_loss, [not math.isfinite(local_loss)], device,
                                                           1000.0 * (now - t_start) - paused_ms)
        reached = (cap_ms is not None and elapsed_ms >= cap_ms) or step >= cfg.iterations
        out.step_ms.append(1000.0 * (now - t_prev))
        t_prev = now
        out.losses.append(loss_value)
        if step % cfg.log_every == 0 or step <= 5 or nonfinite or reached:
            _log_progress(log, metrics, step, loss_value, mult, elapsed_ms, cap_ms, cfg, tokens_per_step)
        if nonfinite:
            out.status, out.stop_reason = "diverged", f"non-finite loss {loss_value} at step {step}"
            log(f"STOP: {out.stop_reason}")
            break
        if reached:
            out.stop_reason = "wallclock cap" if step < cfg.iterations else "iteration cap"
            break
    sync()
    out.steps = step
    out.train_ms = 1000.0 * (time.perf_counter() - t_start) - paused_ms
    out.qat = late_qat.describe() if late_qat.enabled else None
    out.loop = loop.finish()
    if graphs:
        out.cudagraph_skips = _cudagraph_skips() - skips_before
        if out.cudagraph_skips:
            log(f"WARNING: train.compile_mode={cfg.compile_mode} ran {out.cudagraph_skips} compiled graph(s) without "
                f"CUDA graphs; torch's 'skipping cudagraphs due to ...' message above names the cause")
    return out


def _step_functions(train_model, optimizer, loader, cfg: TrainConfig, accum: int, ctx, graph_step, zero_grad,
                    device: torch.device) -> tuple[Callable[[], torch.Tensor], Callable[[], None]]:
    """(one optimizer step over ``accum`` micro-batches returning the mean loss, one micro-step alone)."""
    ddp = hasattr(train_model, "no_sync")

    def micro_step(last: bool) -> torch.Tensor:
        x, y = loader.next_batch(cfg.batch_tokens, cfg.seq_len, accum)
        graph_step()
        with train_model.no_sync() if ddp and not last else nullcontext():
            with ctx():
                loss = train_model(x, y)
            # the next micro-batch's read and copy, while the GPU still has this forward and backward queued
            loader.prefetch(cfg.batch_tokens, cfg.seq_len, accum)
            (loss / accum).backward()
        return loss.detach()

    def one_step() -> torch.Tensor:
        total = torch.zeros((), device=device)
        for micro in range(accum):
            total += micro_step(micro == accum - 1)
        optimizer.step()
        zero_grad()
        return total / accum

    def one_micro_step() -> None:
        micro_step(True)
        zero_grad()

    return one_step, one_micro_step


def _validate(validate: Callable[[], dict], step: int, out: TrainOutcome, log, metrics, sync) -> float:
    """A periodic validation, recorded and logged; the milliseconds it took (they pause the training clock)."""
    sync()
    tv = time.perf_counter()
    res = validate()
    res["step"] = step
    out.val_history.append(res)
    log(f"step {step} val_loss {res['val_loss']:.4f} val_bpb {res['val_bpb']:.4f}")
    metrics.log({"val/loss": res["val_loss"], "val/bpb": res["val_bpb"]}, step=step)
    return 1000.0 * (time.perf_counter() - tv)


def _log_progress(log, metrics, step: int, loss: float, mult: float, elapsed_ms: float, cap_ms: float | None,
                  cfg: TrainConfig, tokens_per_step: int) -> None:
    avg = elapsed_ms / step
    if cap_ms is not None:
        eta_s = min(max(cap_ms - elapsed_ms, 0.0), (cfg.iterations - step) * avg) / 1000
    else:
        eta_s = (cfg.iterations - step) * avg / 1000
    tok_s = tokens_per_step * step / (elapsed_ms / 1000)
    log(f"step {step} loss {loss:.4f} lr_mult {mult:.3f} step_avg {avg:.1f}ms "
        f"tok/s {_fmt_tokens(tok_s)} elapsed {elapsed_ms / 1000:.1f}s eta {eta_s:.0f}s")
    metrics.log({"train/loss": loss, "train/lr_mult": mult, "train/tokens_per_s": tok_s, "train/step_avg_ms": avg},
                step=step)
