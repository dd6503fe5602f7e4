"""One run as a list of stages: build -> train -> average -> calibrate -> eval_prequant -> quantize ->
compress -> load_artifact -> eval_roundtrip -> eval_sliding -> eval_ttt -> account (``golf.stages``).

Each stage is a plain function of the run's state (``golf.run_state.Run``); ``run`` times every stage, stores
the time in ``results["stages_s"]`` and rewrites ``results.json`` atomically after each, so a failure keeps
what was done. A new stage is one function and one entry in ``STAGES``. The score is always that of the model
loaded back from the compressed artifact.

Every ending leaves an honest results.json and a train.log: ``ok`` (or ``over_budget``, ``partial_eval``,
``diverged``) from the stages, ``failed`` with the error (a component that cannot be built included), and
``interrupted`` on SIGINT or SIGTERM, which ``run`` turns into ``Interrupted`` (exit code 128 + signal).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import golf
from golf.calibration.sources import NoCalibration
from golf.dist import cleanup, init_distributed
from golf.logging import NullBackend, RunLog
from golf.results import new_results, provenance, write_json_atomic
from golf.run_state import ARTIFACT_NAME, Budget, Parts, Run, RunFiles, VocabMismatch  # noqa: F401  (re-exported)
from golf.stages.export import calibrate, compress, load_artifact, quantize
from golf.stages.scoring import account, eval_prequant, eval_roundtrip, eval_sliding, eval_ttt
from golf.stages.training import average, build, configure_backends, prepare, train_stage  # noqa: F401  (re-exported)

Stages = tuple[tuple[str, Callable[[Run], None]], ...]
STAGES: Stages = (
    ("build", build), ("train", train_stage), ("average", average), ("calibrate", calibrate),
    ("eval_prequant", eval_prequant), ("quantize", quantize),
    ("compress", compress), ("load_artifact", load_artifact), ("eval_roundtrip", eval_roundtrip), ("eval_sliding", eval_sliding),
    ("eval_ttt", eval_ttt),
)
# Scoring an artifact alone (``golf.score``): the data, then the stages after compress.
SCORING: Stages = (("prepare", prepare), ("load_artifact", load_artifact), ("eval_roundtrip", eval_roundtrip),
                   ("eval_sliding", eval_sliding), ("eval_ttt", eval_ttt))


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached a run; the process should exit with ``exit_code`` (128 + the signal)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.exit_code = signum, 128 + signum


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM raises ``Interrupted`` as SIGINT does (main thread only: elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001 - the signal API's signature
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run(*, run_dir, seed: int, build: Callable[[], dict[str, Any]], info: dict[str, Any] | None = None,
        stages: Stages = STAGES, close: Callable[[Run], None] = account, files: RunFiles | None = None) -> dict:
    """Run ``stages`` in this process (one rank of a torchrun job, or alone), then ``close`` (the status, the
    bytes and the closing lines, untimed) unless a stage stopped the run; returns the results dict.
    ``build`` makes the components (``golf.build.components``): a config error fails the run on the record.
    ``files``: where the record goes (default: results.json and train.log in ``run_dir``)."""
    run_dir, info = Path(run_dir), dict(info or {})
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    files = files or RunFiles.of(run_dir)
    if rank == 0:
        files.results.parent.mkdir(parents=True, exist_ok=True)
    results = new_results(info=info, seed=seed, run_dir=run_dir, world_size=world)
    log = RunLog(files.log, enabled=rank == 0)
    state: Run | None = None
    try:
        with signals_interrupt():
            if rank == 0:
                write_json_atomic(files.results, results)
            state = _start(run_dir, seed, build(), info, results, log, files)
            for name, stage in stages:
                t0 = time.perf_counter()
                stage(state)
                results["stages_s"][name] = round(time.perf_counter() - t0, 3)
                state.save()
                if state.stop:
                    break
            if not state.stop:
                close(state)
                state.save()
        return results
    except BaseException as e:
        _record_failure(e, results, log, state, stages, files)
        if rank == 0:
            write_json_atomic(files.results, results)
        raise
    finally:
        if state is not None:
            state.metrics.finish(state.exit_code)
        log.close()
        cleanup()


def _start(run_dir: Path, seed: int, parts: dict[str, Any], info: dict, results: dict, log: RunLog,
           files: RunFiles) -> Run:
    """The run state once its components exist: the process group joined, the metrics started, the header line."""
    metrics = parts.pop("metrics", None)
    parts.setdefault("calibration", NoCalibration())
    parts.setdefault("budget", Budget())
    dist_info = init_distributed(parts["train_cfg"].device)
    state = Run(run_dir=run_dir, seed=seed, parts=Parts(**parts), dist=dist_info, log=log,
                metrics=metrics if (metrics is not None and dist_info.is_main) else NullBackend(), results=results,
                config=dict(info.get("config") or {}), files=files)
    results["env"] = env = provenance(dist_info.device)
    state.save()
    state.metrics.start(config=info.get("config", {}), run_dir=run_dir, name=info.get("name") or run_dir.name,
                        group=info.get("group"), job_type=info.get("job_type", "train"))
    log(f"golf {golf.__version__} | run {run_dir} | device {env['device']} x{dist_info.world_size} | "
        + (f"git {env['git_sha'][:10]}{' (dirty)' if env['git_dirty'] else ''}" if env["git_sha"] else "no git checkout"))
    return state


def _record_failure(e: BaseException, results: dict, log: RunLog, state: Run | None, stages: Stages,
                    files: RunFiles) -> None:
    stage = next((k for k, _ in stages if k not in results["stages_s"]), "the closing account")
    where = f" in stage {stage}" if state is not None and stage else " before the run started"
    if isinstance(e, KeyboardInterrupt):
        name = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
        results.update(status="interrupted", error=f"interrupted by {name}{where}")
        log(f"interrupted by {name}{where}: what was done is in {files.results}")
    else:
        results.update(status="failed", error=f"{type(e).__name__}: {e}")
        log(f"FAILED{where}: {results['error']}\n{traceback.format_exc()}", console=False)
    if state is not None:
        state.exit_code = getattr(e, "exit_code", 130) if isinstance(e, KeyboardInterrupt) else 1
