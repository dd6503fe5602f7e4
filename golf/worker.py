"""What every process of a run executes: read the resolved ``config.yaml``, build the components from
their ``_target_`` entries, run the pipeline. ``python -m golf.worker <run_dir>/config.yaml``; torchrun
starts one per rank. Exit status: 0 ok / over budget, 3 diverged, 1 failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.errors import record

from golf.pipeline import Budget, run

EXIT_CODES = {"ok": 0, "over_budget": 0, "partial_eval": 0, "diverged": 3}


def build(cfg: DictConfig) -> dict:
    """Instantiate every component of a resolved config (no Hydra runtime needed)."""
    build_one = lambda node: instantiate(node, _convert_="all")  # noqa: E731
    return dict(
        data=build_one(cfg.data), model_factory=build_one(cfg.model), optimizer_factory=build_one(cfg.optimizer),
        schedule=build_one(cfg.schedule), train_cfg=build_one(cfg.train), evaluator=build_one(cfg.eval),
        quantizer=build_one(cfg.quant), compressor=build_one(cfg.compressor), metrics=build_one(cfg.logger),
        calibration=build_one(cfg.calibration) if "calibration" in cfg else None,
        budget=Budget(**OmegaConf.to_container(cfg.budget)),
    )


def run_config(cfg: DictConfig, run_dir: Path) -> dict:
    meta = cfg.get("run", {}) or {}
    requantize = bool(cfg.train.get("load_weights")) and int(cfg.train.iterations) == 0
    info = {"name": meta.get("name"), "group": meta.get("group"), "overrides": list(meta.get("overrides", [])),
            "config": OmegaConf.to_container(cfg, resolve=True), "job_type": "requantize" if requantize else "train"}
    return run(run_dir=run_dir, seed=int(cfg.seed), info=info, **build(cfg))


def run_file(config_path: str | Path) -> int:
    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"resolved run config not found: {path}")
    results = run_config(OmegaConf.load(path), path.parent)
    return EXIT_CODES.get(results["status"], 1)


@record
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m golf.worker <run_dir>/config.yaml")
    sys.exit(run_file(argv[0]))


if __name__ == "__main__":
    main()
