"""One run as a list of stages: build -> train -> average -> calibrate -> eval_prequant -> quantize ->
compress -> load_artifact -> eval_roundtrip -> eval_sliding -> eval_ttt -> account (``golf.stages``).

Each stage is a plain function of the run's state (``golf.run_state.Run``); ``run`` times every stage, stores
the time in ``results["stages_s"]`` and rewrites ``results.json`` atomically after each, so a failure keeps
what was done. A new stage is one function and one entry in ``STAGES``. The score is always that of the model
loaded back from the compressed artifact.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import golf
from golf.calibration.sources import Calibration, NoCalibration
from golf.dist import cleanup, init_distributed
from golf.logging import NullBackend, RunLog
from golf.results import new_results, provenance
from golf.run_state import ARTIFACT_NAME, Budget, Parts, Run, VocabMismatch  # noqa: F401  (re-exported)
from golf.stages.export import calibrate, compress, load_artifact, quantize
from golf.stages.scoring import account, eval_prequant, eval_roundtrip, eval_sliding, eval_ttt
from golf.stages.training import average, build, configure_backends, train_stage  # noqa: F401  (re-exported)
from golf.trainer import TrainConfig

STAGES: tuple[tuple[str, Callable[[Run], None]], ...] = (
    ("build", build), ("train", train_stage), ("average", average), ("calibrate", calibrate),
    ("eval_prequant", eval_prequant), ("quantize", quantize),
    ("compress", compress), ("load_artifact", load_artifact), ("eval_roundtrip", eval_roundtrip), ("eval_sliding", eval_sliding),
    ("eval_ttt", eval_ttt), ("account", account),
)


def run(*, run_dir, seed: int, data, model_factory, optimizer_factory, schedule, train_cfg: TrainConfig, evaluator,
        quantizer, compressor, metrics=None, budget: Budget | None = None, info: dict[str, Any] | None = None,
        calibration: Calibration | None = None) -> dict:
    """Run every stage in this process (one rank of a torchrun job, or alone); returns the results dict."""
    run_dir = Path(run_dir)
    info = dict(info or {})
    dist_info = init_distributed(train_cfg.device)
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    parts = Parts(data, model_factory, optimizer_factory, schedule, train_cfg, evaluator, quantizer, compressor,
                  budget or Budget(), calibration or NoCalibration())
    state = Run(run_dir=run_dir, seed=seed, parts=parts, dist=dist_info,
                log=RunLog(run_dir / "train.log", enabled=dist_info.is_main),
                metrics=metrics if (metrics is not None and dist_info.is_main) else NullBackend(),
                results=new_results(info=info, seed=seed, run_dir=run_dir, world_size=dist_info.world_size))
    try:
        state.results["env"] = env = provenance(dist_info.device)
        state.save()
        state.metrics.start(config=info.get("config", {}), run_dir=run_dir, name=info.get("name") or run_dir.name,
                            group=info.get("group"), job_type=info.get("job_type", "train"))
        state.log(f"golf {golf.__version__} | run {run_dir} | device {env['device']} x{dist_info.world_size} | "
                  f"git {env['git_sha'] and env['git_sha'][:10]}{' (dirty)' if env['git_dirty'] else ''}")
        for name, stage in STAGES:
            t0 = time.perf_counter()
            stage(state)
            if name != "account":
                state.results["stages_s"][name] = round(time.perf_counter() - t0, 3)
            state.save()
            if state.stop:
                break
        return state.results
    except BaseException as e:
        state.exit_code = 1
        state.results.update(status="failed", error=f"{type(e).__name__}: {e}")
        state.log(f"FAILED: {state.results['error']}\n{traceback.format_exc()}", console=False)
        state.save()
        raise
    finally:
        state.metrics.finish(state.exit_code)
        state.log.close()
        cleanup()
