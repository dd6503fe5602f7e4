"""Read an offline W&B run back from its ``run-<id>.wandb`` file, for tests.

The file is a LevelDB-style log (as W&B's own datastore writes it): a 7-byte header (``:W&B``, magic 0xBEE1,
version 0), then 32 KiB blocks of chunks, each ``crc32 (4) | length (2, LE) | type (1) | payload``, type 1 a
whole record and 2/3/4 the first/middle/last piece of one split across blocks. Each record is a
``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            out.append(rec)
            pending = b""
    return out


@dataclass
class OfflineRun:
    group: str = ""
    job_type: str = ""
    name: str = ""
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def read_run(run_dir: Path) -> OfflineRun:
    """The run under ``run_dir`` (an ``offline-run-*`` directory)."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    run = OfflineRun()

    def items(update) -> dict:
        return {"/".join(i.nested_key) if i.nested_key else i.key: json.loads(i.value_json) for i in update}

    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.group, run.job_type, run.name = rec.run.run_group, rec.run.job_type, rec.run.display_name
            run.config.update({k: v.get("value", v) if isinstance(v, dict) else v for k, v in items(rec.run.config.update).items()})
        elif kind == "config":
            run.config.update({k: v.get("value", v) if isinstance(v, dict) else v for k, v in items(rec.config.update).items()})
        elif kind == "history":
            run.history.append(items(rec.history.item))
        elif kind == "summary":
            run.summary.update(items(rec.summary.update))
    return run
