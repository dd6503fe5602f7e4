"""The submission script: a golf run as one self-contained ``train_gpt.py``, and what runs inside it.

``account`` makes the script of this run: the golf modules this process loaded, minified and packed into one
self-extracting file (``golf.compress.code_size``) with the run's resolved config beside them, ending in a call
of ``golf.build.submission_main``. Its bytes are the code the byte budget counts, and every run leaves it beside its results
(``<run_dir>/train_gpt.py``); ``python -m golf.export`` ships it. Where golf is not installed it runs as

    torchrun --standalone --nproc_per_node=8 train_gpt.py     # or: python train_gpt.py

and trains, writes and scores the same artifact as the run it came from (on the same hardware, data and seed).
The records' environment overrides work: SEED (default 1337; the script is the same for every seed of a sweep),
DATA_PATH, TOKENIZER_PATH, and RUN_DIR (default: the current directory) for its model.golf, results.json and
train.log.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import golf
from golf.compress.artifact import code_bytes, code_digest, code_files
from golf.compress.code_size import CodeAccount, shipped_script

SCRIPT_NAME = "train_gpt.py"
RUNNING: Path | None = None  # the submission script this process runs as (set by golf.build.submission_main)
NOT_SHIPPED = ("run", "launcher", "hydra", "seed")  # how golf launched it; the seed comes from SEED, as the records'
DEFAULT_SEED = 1337                                  # the records' default SEED
CONFIG_MODULE = "golf.submitted_config"      # packed into the script beside the modules: CONFIG, the run's config
ENTRY = "import golf.build as b;b.submission_main()"


def submission_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config a submission script carries: the run's, less its launch details and its seed (one script serves
    every seed of a sweep), with no metrics backend."""
    out = {k: copy.deepcopy(v) for k, v in config.items() if k not in NOT_SHIPPED}
    out["logger"] = {"_target_": "golf.logging.NullBackend"}
    return out


def account(config: dict[str, Any]) -> CodeAccount:
    """The submission script of a run with this (resolved) config; inside one, the script itself."""
    if RUNNING is not None:
        return CodeAccount(RUNNING.read_text(encoding="utf-8"))
    files = code_files()
    packed_config = {CONFIG_MODULE: f"CONFIG={submission_config(config)!r}"}
    script = shipped_script(files, entry=ENTRY, extra=packed_config)
    root = Path(golf.__file__).resolve().parents[1]
    names = tuple(f.resolve().relative_to(root).as_posix() for f in files)
    return CodeAccount(script, names, code_bytes(files), code_digest(files))
