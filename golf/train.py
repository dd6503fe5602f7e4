"""The entry point: ``python -m golf.train [group=option ...] [key=value ...]`` (``-m`` for sweeps).

Hydra composes the config here, and only here: it is resolved once, written to
``<run_dir>/config.yaml``, and handed to the launcher (this process, or torchrun ranks that read the file).
In a sweep a failed job is recorded in its results.json and the sweep goes on; a sweep started again skips
the jobs already finished (``golf.sweep``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from golf.results import record_failure
from golf.sweep import ConfigChanged, resume, summarize_sweep

if not OmegaConf.has_resolver("golf_group"):
    OmegaConf.register_new_resolver("golf_group", lambda s: s or "default")


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def command_line_keys(overrides: list[str]) -> set[str]:
    """The dotted keys whose values the command line sets (``model.num_layers=3`` -> ``model.num_layers``;
    ``+a.b=1`` -> ``a.b``); a group choice (``model=xsa_all``, ``hydra/launcher=...``) sets none."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return {k for k in keys if "/" not in k and not (CONF_DIR / k).is_dir()}


def _leaves(node: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in node.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def _when_target(cfg: DictConfig, node: dict, prefix: str = "") -> dict:
    """``node`` without its subtrees whose ``_when_target`` differs from the composed node's ``_target_``."""
    out = {}
    for k, v in node.items():
        if not isinstance(v, dict):
            out[k] = v
            continue
        want = v.get("_when_target")
        if want is not None:
            there = OmegaConf.select(cfg, f"{prefix}{k}")
            if not isinstance(there, DictConfig) or there.get("_target_") != want:
                continue
            v = {kk: vv for kk, vv in v.items() if kk != "_when_target"}
        out[k] = _when_target(cfg, v, f"{prefix}{k}.")
    return out


def apply_overlay(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """Lay the composed ``overlay`` and ``overlay_if_set`` nodes over the config, in place, and drop them; returns
    the keys they set.

    An experiment's ``overlay`` holds values for whichever group options end up composed: each applies where
    the chosen option has that key (``experiment=smoke`` shrinks ``model=xsa_all`` or ``calibration=ar`` alike;
    ``quant.prune_max_abs`` of ``experiment=pr1019`` means nothing to ``quant=none``), and a key the command line
    sets itself wins over it. ``overlay_if_set`` applies only where the option's value is not null: a 4-layer
    smoke model keeps depth recurrence or parallel lanes where the chosen model has them, and no other gets them.
    A node of either with a ``_when_target`` key applies only where the composed node's ``_target_`` is that
    class (#1493's chunk-TTT learning rate must not reach the phased TTT's ``lr``)."""
    with open_dict(cfg):
        nodes = [(cfg.pop("overlay", None), False), (cfg.pop("overlay_if_set", None), True)]
    user = command_line_keys(overrides)
    applied = []
    for overlay, only_set in nodes:
        if not overlay:
            continue
        for key, value in _leaves(_when_target(cfg, OmegaConf.to_container(overlay, resolve=False))):
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            taken = any(key == u or key.startswith(u + ".") or u.startswith(key + ".") for u in user)
            if not isinstance(parent, DictConfig) or leaf not in parent or taken:
                continue
            if only_set and OmegaConf.is_missing(parent, leaf) or only_set and parent[leaf] is None:
                continue
            parent[leaf] = value
            applied.append(key)
    return applied


def resolve_run_config(cfg: DictConfig, run_dir: Path, overrides: list[str], group: str) -> DictConfig:
    """The config every process will read: the experiment's overlay laid on (``apply_overlay``), fully resolved,
    plus the run's identity: its group (the overrides without the seed) and its name (the experiment, the other
    overrides, the seed)."""
    overlaid = apply_overlay(cfg, overrides)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    name = resolved.get("name") or (group if group else "run")
    extra = ",".join(p for p in group.split(",") if p and not p.startswith("experiment=")) if group else ""
    label = f"{name}/{extra}" if extra and extra != name else name
    resolved.run = {"dir": str(run_dir), "name": f"{label}/seed={resolved.seed}", "group": group or name,
                    "overrides": overrides, "overlay": overlaid}
    return resolved


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> int:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        resolved = resolve_run_config(cfg, run_dir, list(hc.overrides.task), hc.job.override_dirname)
    except Exception as e:  # noqa: BLE001 - an interpolation or a missing value: one line, on the record
        return _failed(run_dir, f"config: {type(e).__name__}: {e}", sweep, record=True)
    if sweep:
        try:
            done = resume(run_dir, resolved)
        except ConfigChanged as e:
            print(f"golf: {e}", file=sys.stderr)
            return 1
        if done:
            print(done)
            return 0
    config_path = run_dir / "config.yaml"
    OmegaConf.save(resolved, config_path)
    try:
        code = instantiate(resolved.launcher).launch(config_path)
    except KeyboardInterrupt as e:
        code = getattr(e, "exit_code", 130)
        if sweep:
            print(f"golf: sweep interrupted during {run_dir}; what finished:", file=sys.stderr)
            summarize_sweep(Path(hc.sweep.dir), resolved, baseline=(hc.callbacks.get("summary") or {}).get("baseline"))
        sys.exit(code)
    except Exception as e:  # noqa: BLE001 - reported here; the traceback is in train.log and results.json
        return _failed(run_dir, f"{type(e).__name__}: {e} (traceback in {run_dir / 'train.log'})", sweep)
    if code != 0:
        print(f"golf: run {run_dir} ended with exit status {code} (see {run_dir / 'results.json'})", file=sys.stderr)
        if not sweep:
            sys.exit(code)
    return code


def _failed(run_dir: Path, message: str, sweep: bool, record: bool = False) -> int:
    """One line on stderr; with ``record``, the failure written as the run's results.json (nothing else would)."""
    if record:
        record_failure(run_dir, message)
    where = f"job {run_dir} failed" if sweep else "failed"
    print(f"golf: {where}: {message}" + ("; the sweep continues" if sweep else ""), file=sys.stderr)
    if not sweep:
        sys.exit(1)
    return 1


if __name__ == "__main__":
    main()
