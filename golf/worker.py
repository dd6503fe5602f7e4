"""What every process of a run executes: read the resolved ``config.yaml``, build the components from their
``_target_`` entries and run the pipeline (``golf.build``). ``python -m golf.worker <run_dir>/config.yaml``;
torchrun starts one per rank. Exit status: 0 ok / over budget / partial eval, 3 diverged, 1 failed (one line
on stderr; the traceback in train.log), 130 / 143 interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

from golf.build import EXIT_CODES, run_config


class ConfigFileError(ValueError):
    """The resolved config file is missing or unreadable."""


def load_config(path: str | Path) -> dict:
    """A resolved run config (``config.yaml``) as plain dicts and lists."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"no resolved run config at {path} (python -m golf.train writes <run_dir>/config.yaml)")
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # noqa: BLE001 - YAML and OmegaConf errors have many types; name the file
        reason = " ".join(str(e).split())  # YAML's messages span lines
        raise ConfigFileError(f"{path}: not a readable run config ({type(e).__name__}: {reason})") from None


def run_file(config_path: str | Path) -> int:
    """Run a resolved config file; the exit status (raises on failure, as the run records it)."""
    path = Path(config_path)
    results = run_config(load_config(path), path.parent)
    return EXIT_CODES.get(results["status"], 1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m golf.worker <run_dir>/config.yaml")
    try:
        code = run_file(argv[0])
    except KeyboardInterrupt as e:
        code = getattr(e, "exit_code", 130)
    except ConfigFileError as e:
        sys.exit(f"golf.worker: {e}")
    except Exception as e:  # noqa: BLE001 - one line; the traceback is in train.log, beside results.json
        sys.exit(f"golf.worker: {type(e).__name__}: {e} (traceback in {Path(argv[0]).parent / 'train.log'})")
    sys.exit(code)


if __name__ == "__main__":
    main()
