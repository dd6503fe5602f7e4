"""golf's artifact file: pickle-free, self-describing, so loading it runs no code.

Layout: b"GOLF" | u8 format version | u8 codec-name length | codec name (ASCII) | codec(payload), where
payload is a safetensors file whose metadata entry "golf" is the JSON of the quantization metadata
(``golf.quant.format``). Also here: how the code half of the 16,000,000-byte budget is counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from golf.compress.codecs import decompress

MAGIC = b"GOLF"
FORMAT_VERSION = 1


def artifact_payload(tensors: dict[str, Tensor], meta: dict) -> bytes:
    """The uncompressed payload: a safetensors file whose metadata entry "golf" holds ``meta``."""
    return st_save({k: v.contiguous() for k, v in tensors.items()}, metadata={"golf": json.dumps(meta, sort_keys=True)})


def encode_payload(payload: bytes, compressor) -> bytes:
    """The artifact of an uncompressed payload: the header naming the codec, then the compressed payload."""
    name = compressor.name.encode("ascii")
    return MAGIC + bytes([FORMAT_VERSION, len(name)]) + name + compressor.compress(payload)


def encode_artifact(tensors: dict[str, Tensor], meta: dict, compressor) -> bytes:
    return encode_payload(artifact_payload(tensors, meta), compressor)


def split_artifact(blob: bytes, source: str = "<bytes>") -> tuple[str, bytes]:
    """(codec name, compressed payload) of an encoded artifact, its header checked."""
    if blob[:4] != MAGIC:
        raise ValueError(f"{source}: not a golf artifact (bad magic {blob[:4]!r})")
    if len(blob) < 6 or len(blob) < 6 + blob[5]:
        raise ValueError(f"{source}: truncated golf artifact ({len(blob)} bytes)")
    if blob[4] != FORMAT_VERSION:
        raise ValueError(f"{source}: artifact format version {blob[4]}, this golf reads {FORMAT_VERSION}")
    n = blob[5]
    return blob[6 : 6 + n].decode("ascii", errors="replace"), blob[6 + n :]


def decode_artifact(blob: bytes, source: str = "<bytes>") -> tuple[dict[str, Tensor], dict]:
    codec, compressed = split_artifact(blob, source)
    try:
        payload = decompress(codec, compressed)
        tensors = st_load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        meta = json.loads(json.loads(payload[8 : 8 + header_len])["__metadata__"]["golf"])
    except ValueError as e:
        if "unknown codec" in str(e):
            raise ValueError(f"{source}: {e}") from e
        raise ValueError(f"{source}: corrupt {codec} payload ({type(e).__name__}: {e})") from e
    except Exception as e:  # noqa: BLE001 - codec and safetensors errors have many types; name the file
        raise ValueError(f"{source}: corrupt {codec} payload ({type(e).__name__}: {e})") from e
    return tensors, meta


def write_artifact(path: str | os.PathLike, blob: bytes) -> int:
    """Write an encoded artifact (``encode_artifact``) atomically; returns the file size in bytes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    return len(blob)


def read_artifact(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    path = Path(path)
    return decode_artifact(path.read_bytes(), str(path))


CODE_BYTES_METHOD = (
    "sum of the UTF-8 bytes of the golf source files the run executed (every golf module loaded, plus the "
    "submission entry golf/submission.py, less the front ends that read YAML or the command line: golf/train.py, "
    "golf/worker.py, golf/launch.py, golf/sweep.py, golf/summary.py, golf/score.py, golf/export.py), so the count "
    "is the same under any launcher; listed in code_files"
)
FRONT_END = ("train.py", "worker.py", "launch.py", "summary.py", "sweep.py", "score.py", "export.py")


def code_files() -> list[Path]:
    """The golf source files a run needs (see CODE_BYTES_METHOD)."""
    root = Path(__file__).resolve().parents[1]
    files = {root / "submission.py", root / "build.py"}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and f.endswith(".py"):
            p = Path(f).resolve()
            if root in p.parents:
                files.add(p)
    return sorted(p for p in files if p.relative_to(root).as_posix() not in FRONT_END)


def code_digest(files: list[Path] | None = None) -> str:
    """sha256 over the counted source files (path and content): identifies the code where git is absent."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in code_files() if files is None else files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def code_bytes(files: list[Path] | None = None) -> int:
    return sum(len(p.read_text(encoding="utf-8").encode("utf-8")) for p in (code_files() if files is None else files))
