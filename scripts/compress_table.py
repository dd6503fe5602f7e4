"""Every codec golf has on one artifact's payload: bytes, compress and decompress seconds, each round trip checked
bit-exact. The payload is the artifact's own (decoded from ``model.golf``), so the codecs are compared on the same
quantized state the run shipped, with no GPU and no retraining:

    python scripts/compress_table.py runs/<date>/<time>/model.golf [--codecs zlib,lzma,brotli,brotli+shuffle,pergroup]
    python scripts/compress_table.py runs/<date>/<time>            # a run directory: its model.golf

``pergroup`` uses lrzip (ZPAQ) for each group when ``lrzip`` is on PATH, else the smaller of lzma and brotli; the
table says which. ``--json FILE`` writes the rows too, rewritten as each one finishes. ``--jobs N`` measures N codecs
at once (the codecs release the GIL; on a machine with cores to spare the seconds stay each codec's own).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from golf.compress.artifact import split_artifact  # noqa: E402
from golf.compress.codecs import decompress  # noqa: E402
from golf.run_state import ARTIFACT_NAME  # noqa: E402

CODECS = {  # name -> (the compressor group's target, its arguments)
    "zlib": ("golf.compress.codecs.Zlib", {"level": 9}),
    "zstd": ("golf.compress.codecs.Zstd", {"level": 22}),
    "lzma": ("golf.compress.codecs.Lzma", {"preset": 9}),
    "lzma+shuffle": ("golf.compress.codecs.Lzma", {"preset": 9, "shuffle": 2}),
    "brotli": ("golf.compress.codecs.Brotli", {"quality": 11}),
    "brotli+shuffle": ("golf.compress.codecs.Brotli", {"quality": 11, "shuffle": 2}),
    "pergroup": ("golf.compress.pergroup.PerGroup", {}),
}


def payload_of(path: Path) -> tuple[bytes, str, int]:
    """The uncompressed payload of an artifact (or a run directory's), its codec and its file size."""
    if path.is_dir():
        path = path / ARTIFACT_NAME
    if not path.is_file():
        raise SystemExit(f"{path}: no such artifact (give a model.golf file or the run directory holding it)")
    blob = path.read_bytes()
    try:
        codec, compressed = split_artifact(blob, str(path))
        return decompress(codec, compressed), codec, len(blob)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def build_check(name: str) -> None:
    if name not in CODECS:
        raise SystemExit(f"--codecs: unknown codec {name!r}; choose from {', '.join(CODECS)}")


def build(name: str):
    import importlib

    build_check(name)
    target, kw = CODECS[name]
    module, _, cls = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)(**kw)
    except ImportError as e:
        return e


def measure(name: str, payload: bytes) -> dict:
    codec = build(name)
    if isinstance(codec, ImportError):
        return {"name": name, "codec": name, "error": f"not installed ({codec.name})"}
    t0 = time.perf_counter()
    blob = codec.compress(payload)
    comp = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = codec.decompress(blob)
    dec = time.perf_counter() - t0
    if back != payload:
        raise SystemExit(f"{name}: the round trip changed the payload ({len(back)} bytes back of {len(payload)})")
    return {"name": name, "codec": codec.name, "bytes": len(blob), "compress_s": round(comp, 2), "decompress_s": round(dec, 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", type=Path, help="a model.golf file or the run directory holding it")
    p.add_argument("--codecs", default="zlib,zstd,lzma,brotli,brotli+shuffle,pergroup")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--jobs", type=int, default=1, help="codecs measured at once (default 1)")
    a = p.parse_args(argv)
    payload, shipped, size = payload_of(a.artifact)
    lrzip = shutil.which("lrzip")
    print(f"{a.artifact}: {size:,} bytes as shipped ({shipped}); payload {len(payload):,} bytes; lrzip "
          f"{'at ' + lrzip if lrzip else 'not on PATH (pergroup takes the smaller of lzma and brotli per group)'}")
    print("as each finishes:\n| codec | bytes | vs smallest | compress s | decompress s |\n|---|---|---|---|---|")
    names = a.codecs.split(",")
    for name in names:
        build_check(name)
    info = {"artifact": str(a.artifact), "shipped_codec": shipped, "shipped_bytes": size, "payload_bytes": len(payload),
            "lrzip": lrzip}
    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for fut in as_completed([pool.submit(measure, name, payload) for name in names]):
            rows.append(r := fut.result())
            cells = f"{r['error']} | | | " if "error" in r else f"{r['bytes']:,} | | {r['compress_s']:.2f} | {r['decompress_s']:.2f} "
            print(f"| {r['codec']} | {cells}|", flush=True)
            if a.json:
                a.json.write_text(json.dumps({**info, "rows": rows}, indent=1))
    rows.sort(key=lambda r: names.index(r["name"]))
    best = min((r["bytes"] for r in rows if "bytes" in r), default=None)
    print("\nall codecs, in the order asked:\n| codec | bytes | vs smallest | compress s | decompress s |\n|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['codec']} | {r['error']} | | | |")
        else:
            print(f"| {r['codec']} | {r['bytes']:,} | {r['bytes'] - best:+,} | {r['compress_s']:.2f} | {r['decompress_s']:.2f} |")
    if a.json:
        a.json.write_text(json.dumps({**info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
