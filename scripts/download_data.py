#!/usr/bin/env python
"""Download the challenge's official FineWeb export (token shards and tokenizer) from the
Hugging Face Hub, laid out as the challenge's ``data/cached_challenge_fineweb.py`` lays it out:

    OUTPUT/manifest.json
    OUTPUT/datasets/fineweb10B_<variant>/fineweb_{val,train}_NNNNNN.bin
    OUTPUT/tokenizers/<tokenizer files>

The hub's ``manifest.json`` says how many val and train shards each variant has and which
tokenizer files belong to it. All val shards are fetched, and the first ``--train-shards`` train
shards. Files already present are kept, so a second run only fetches what is missing. Without
network access the script stops with a one-line error (exit code 2) instead of a traceback.

sp1024 and byte260 come from the official repository; sp4096 and sp8192 from the one the April records name
(kevclark/parameter-golf), and sp8192_caseops, with a byte sidecar per val shard, from romeerp's. The
repository and its root folder can be overridden with the environment variables MATCHED_FINEWEB_REPO_ID and
MATCHED_FINEWEB_REMOTE_ROOT_PREFIX, as upstream.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from huggingface_hub import hf_hub_download

try:
    import golf  # noqa: F401
except ImportError:  # run as `python scripts/download_data.py` from a checkout without installing golf
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golf.data.shards import read_header

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
DEFAULT_REMOTE_ROOT = "datasets"
DEFAULT_TRAIN_SHARDS = 80
DEFAULT_OUTPUT = "data"
NETWORK_EXIT_CODE = 2
DOCS_FILES = ("docs_selected.jsonl", "docs_selected.source_manifest.json")


class DownloadError(RuntimeError):
    """A request the hub or the manifest cannot satisfy (unknown variant, too many shards, ...)."""


class NetworkUnavailable(DownloadError):
    """The hub could not be reached."""


# Where the records got each export (their READMEs): the official repo holds sp1024 and byte260; the sp4096 and
# sp8192 exports of the April records live in kevclark/parameter-golf, CaseOps' in romeerp/parameter-golf-caseops-v1.
VARIANT_REPOS = {"sp4096": "kevclark/parameter-golf", "sp8192": "kevclark/parameter-golf",
                 "sp8192_caseops": "romeerp/parameter-golf-caseops-v1"}
CASEOPS_DATASETS = {"sp8192_caseops": "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"}
_variant = {"name": "sp1024"}  # the variant being fetched (its repository when none is set in the environment)


def repo_id() -> str:
    return os.environ.get("MATCHED_FINEWEB_REPO_ID") or VARIANT_REPOS.get(_variant["name"], DEFAULT_REPO_ID)


def remote_root() -> str:
    return os.environ.get("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", DEFAULT_REMOTE_ROOT)


def dataset_dir_for_variant(variant: str) -> str:
    """``sp1024`` -> ``fineweb10B_sp1024``; also ``byte260``, any ``sp<N>`` and ``sp8192_caseops``."""
    if variant in CASEOPS_DATASETS:
        return CASEOPS_DATASETS[variant]
    if variant == "byte260" or (variant.startswith("sp") and variant[2:].isdigit()):
        return f"fineweb10B_{variant}"
    raise DownloadError(f"unknown variant {variant!r}: expected byte260, sp<VOCAB_SIZE> (e.g. sp1024, sp8192) or "
                        f"{', '.join(CASEOPS_DATASETS)}")


def local_path_for_remote(remote_path: str, output: str | os.PathLike, root: str | None = None) -> Path:
    """Where a file of the hub repo lands under ``output``: the remote root prefix is dropped, so
    ``datasets/datasets/X/f.bin`` -> ``output/datasets/X/f.bin``, ``datasets/tokenizers/t.model``
    -> ``output/tokenizers/t.model`` and ``datasets/manifest.json`` -> ``output/manifest.json``."""
    root = remote_root() if root is None else root
    parts = PurePosixPath(remote_path).parts
    if root and parts[:1] == (root,):
        parts = parts[1:]
    if not parts:
        raise DownloadError(f"{remote_path!r} names no file")
    return Path(output).joinpath(*parts)


def _is_network_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    # huggingface_hub reports "could not connect and the file is not cached" as
    # LocalEntryNotFoundError, and wraps transport errors of whichever HTTP client it uses.
    network_types = (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError, socket.gaierror)
    network_names = {"ConnectError", "ConnectTimeout", "NetworkError", "TransportError", "Timeout", "ConnectionError"}
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, network_types) or any(cls.__name__ in network_names for cls in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def fetch(remote_path: str, output: str | os.PathLike) -> Path:
    """Materialize one repo file under ``output`` (a hard link to, or copy of, the hub cache
    entry); kept as is when already there. Returns the local path."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    destination = local_path_for_remote(remote_path, output)
    if destination.exists():
        return destination
    if destination.is_symlink():  # a dangling link left by an earlier tool
        destination.unlink()
    remote = PurePosixPath(remote_path)
    subfolder = remote.parent.as_posix()
    try:
        cached = hf_hub_download(
            repo_id=repo_id(),
            filename=remote.name,
            subfolder=None if subfolder == "." else subfolder,
            repo_type="dataset",
        )
    except Exception as exc:
        if _is_network_error(exc):
            raise NetworkUnavailable(
                f"cannot reach the Hugging Face Hub to download {remote_path} from dataset repo {repo_id()}: "
                f"this script needs network access ({type(exc).__name__})"
            ) from exc
        if isinstance(exc, (EntryNotFoundError, RepositoryNotFoundError)):
            raise DownloadError(f"{remote_path} not found in dataset repo {repo_id()}") from exc
        raise
    _materialize(Path(cached).resolve(strict=True), destination)
    if destination.suffix == ".bin":
        read_header(destination)  # a truncated transfer fails here, naming the file
    return destination


def _materialize(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(destination.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, destination)


def load_manifest(output: str | os.PathLike, skip_download: bool = False) -> dict:
    """The hub's manifest, fetched into ``output/manifest.json`` unless it is already there."""
    remote = f"{remote_root()}/manifest.json" if remote_root() else "manifest.json"
    path = local_path_for_remote(remote, output)
    if not path.is_file():
        if skip_download:
            raise DownloadError(f"--skip-manifest given but there is no manifest at {path}")
        fetch(remote, output)
    return json.loads(path.read_text(encoding="utf-8"))


def plan(manifest: dict, variant: str, train_shards: int, with_docs: bool = False) -> list[str]:
    """The repo paths to fetch, in order: docs (if asked), val shards, train shards, tokenizer."""
    if train_shards < 0:
        raise DownloadError(f"--train-shards must be >= 0, got {train_shards}")
    name = dataset_dir_for_variant(variant)
    dataset = _find(manifest, "datasets", name)
    stats = dataset.get("stats") or {}
    n_train, n_val = int(stats.get("files_train", 0)), int(stats.get("files_val", 0))
    if train_shards > n_train:
        raise DownloadError(f"{variant} has {n_train} training shards on {repo_id()}, {train_shards} were requested")
    tokenizer = _find(manifest, "tokenizers", dataset.get("tokenizer_name"))
    artifacts = [str(tokenizer[key]) for key in ("model_path", "vocab_path", "path") if tokenizer.get(key)]
    if not artifacts:
        raise DownloadError(f"manifest entry of tokenizer {tokenizer.get('name')!r} lists no files")

    prefix = f"{remote_root()}/" if remote_root() else ""
    paths = [prefix + f for f in DOCS_FILES] if with_docs else []
    paths += [f"{prefix}datasets/{name}/fineweb_val_{i:06d}.bin" for i in range(n_val)]
    if variant in CASEOPS_DATASETS:  # each val shard's byte sidecar: val_bpb counts the original text's bytes
        paths += [f"{prefix}datasets/{name}/fineweb_val_bytes_{i:06d}.bin" for i in range(n_val)]
    paths += [f"{prefix}datasets/{name}/fineweb_train_{i:06d}.bin" for i in range(train_shards)]
    paths += [prefix + a for a in artifacts]
    return paths


def _find(manifest: dict, section: str, name: str | None) -> dict:
    entry = next((e for e in manifest.get(section, []) if e.get("name") == name), None)
    if entry is None:
        raise DownloadError(f"{section[:-1]} {name!r} is not in the manifest of {repo_id()}")
    return entry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=f"Download the challenge's FineWeb shards and tokenizer from the Hugging Face Hub "
        f"(dataset repo {repo_id()}; override with MATCHED_FINEWEB_REPO_ID).",
    )
    parser.add_argument("train_shards_positional", nargs="?", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--variant", default="sp1024",
        help="tokenizer family: sp1024 (default), sp4096, sp8192, sp8192_caseops (with its byte sidecars), byte260"
    )
    parser.add_argument(
        "--train-shards",
        type=int,
        default=DEFAULT_TRAIN_SHARDS,
        metavar="N",
        help="number of training shards (100M tokens each) to fetch; all val shards are always fetched "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help="where datasets/, tokenizers/ and manifest.json go (default: %(default)s)",
    )
    parser.add_argument(
        "--skip-manifest", action="store_true", help="use the manifest.json already in DIR instead of fetching it"
    )
    parser.add_argument(
        "--with-docs",
        action="store_true",
        help="also fetch docs_selected.jsonl and its source manifest (raw documents for re-tokenizing)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train_shards = args.train_shards if args.train_shards_positional is None else args.train_shards_positional
    _variant["name"] = args.variant
    try:
        dataset_dir_for_variant(args.variant)
        print(f"fetching {args.variant} from dataset repo {repo_id()} into {args.output}", flush=True)
        manifest = load_manifest(args.output, skip_download=args.skip_manifest)
        paths = plan(manifest, args.variant, train_shards, args.with_docs)
        for i, remote in enumerate(paths, start=1):
            local = fetch(remote, args.output)
            print(f"[{i}/{len(paths)}] {local}", flush=True)
    except NetworkUnavailable as exc:
        print(f"download_data: error: {exc}", file=sys.stderr)
        return NETWORK_EXIT_CODE
    except (DownloadError, OSError, ValueError) as exc:
        print(f"download_data: error: {exc}", file=sys.stderr)
        return 1
    print(f"done: {args.variant} with {train_shards} train shards under {Path(args.output) / 'datasets'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
