"""A resolved run config (plain dicts and lists) into the run's components, without Hydra.

``instantiate`` reads the ``_target_`` convention the YAML files use (``_partial_: true`` for the model and the
optimizer, built later); nested ``_target_`` nodes are built first, and every other value passes as plain
Python. Hydra composes the config (``golf.train``); the worker, the exported submission script and
``golf.score`` build from the resolved result with this module alone, so a submission runs where Hydra is absent.
``submission_main`` is the submission script's entry: its packed config, with the records' environment overrides.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from golf import submission
from golf.pipeline import Budget, run

COMPONENTS = {"data": "data", "loader_factory": "loader", "model_factory": "model", "optimizer_factory": "optimizer",
              "schedule": "schedule", "train_cfg": "train", "evaluator": "eval", "quantizer": "quant",
              "compressor": "compressor", "metrics": "logger", "calibration": "calibration"}
EXIT_CODES = {"ok": 0, "over_budget": 0, "partial_eval": 0, "diverged": 3}  # failed: 1; interrupted: 128 + signal


def locate(path: str) -> Any:
    """The object a dotted ``_target_`` names (module, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"_target_ {path!r} names no importable module")


def instantiate(node: Any) -> Any:
    """Build a config node: a mapping with ``_target_`` becomes a call (a partial with ``_partial_: true``),
    children first; anything else is returned as plain values."""
    if isinstance(node, Mapping):
        kwargs = {k: instantiate(v) for k, v in node.items() if k not in ("_target_", "_partial_")}
        if "_target_" not in node:
            return kwargs
        target = locate(node["_target_"])
        try:
            return functools.partial(target, **kwargs) if node.get("_partial_") else target(**kwargs)
        except TypeError as e:
            raise TypeError(f"{node['_target_']}: {e}") from None
    if isinstance(node, (list, tuple)):
        return [instantiate(v) for v in node]
    return node


def components(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every component of a resolved config, as ``golf.pipeline.run`` takes them."""
    built = {arg: instantiate(cfg[key]) for arg, key in COMPONENTS.items() if key in cfg}
    built["budget"] = Budget(**cfg.get("budget", {}))
    return built


def run_config(cfg: Mapping[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Run a resolved config in this process; the results dict. A component that cannot be built fails the
    run like any stage does: results.json says so, and train.log holds the traceback."""
    meta = cfg.get("run") or {}
    requantize = bool(cfg["train"].get("load_weights")) and int(cfg["train"]["iterations"]) == 0
    info = {"name": meta.get("name") or cfg.get("name"), "group": meta.get("group"),
            "overrides": list(meta.get("overrides", [])), "config": dict(cfg),
            "job_type": "requantize" if requantize else "train"}
    return run(run_dir=Path(run_dir), seed=int(cfg["seed"]), info=info, build=lambda: components(cfg))


def with_environment(config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The records' environment overrides: SEED (default 1337), DATA_PATH and TOKENIZER_PATH."""
    cfg = copy.deepcopy(config)
    cfg["seed"] = int(env.get("SEED") or submission.DEFAULT_SEED)
    for var, key in (("DATA_PATH", "path"), ("TOKENIZER_PATH", "tokenizer")):
        if env.get(var):
            if key not in cfg["data"]:
                raise SystemExit(f"{submission.SCRIPT_NAME}: {var} is set but this submission's data ({cfg['data']['_target_']}) "
                                 f"has no {key}")
            cfg["data"][key] = env[var]
    return cfg


def submission_main(config: dict[str, Any] | None = None) -> None:
    """Run ``config`` (default: the one packed in the script): what a submission script's last line calls."""
    submission.RUNNING = Path(sys.argv[0]).resolve()
    config = importlib.import_module(submission.CONFIG_MODULE).CONFIG if config is None else config
    cfg = with_environment(config, dict(os.environ))
    run_dir = Path(os.environ.get("RUN_DIR") or ".")
    try:
        results = run_config(cfg, run_dir)
    except KeyboardInterrupt as e:
        sys.exit(getattr(e, "exit_code", 130))
    except Exception as e:  # noqa: BLE001 - one line; the traceback is in train.log
        sys.exit(f"{submission.SCRIPT_NAME}: {type(e).__name__}: {e} (traceback in {run_dir / 'train.log'})")
    sys.exit(EXIT_CODES.get(results["status"], 1))
