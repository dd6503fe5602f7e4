"""Summarize a sweep: mean ± std per group, Welch's t-test against a baseline group, a table and a plot.

    python scripts/summarize.py multirun/2026-11-22/10-00-00 --baseline experiment=baseline

Groups are the runs' W&B groups: the override string without the seed. Writes summary.md and summary.png into
the sweep directory (or --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golf.summary import load_results, write_summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path, help="a multirun directory (searched recursively for results.json)")
    p.add_argument("--baseline", help="the group to test against (its override string, e.g. experiment=baseline)")
    p.add_argument("--out", type=Path, help="where to write summary.md / summary.png (default: sweep_dir)")
    p.add_argument("--no-plot", action="store_true")
    a = p.parse_args(argv)
    if not a.sweep_dir.is_dir():
        print(f"summarize: no such directory: {a.sweep_dir}", file=sys.stderr)
        return 2
    groups, problems = load_results(a.sweep_dir)
    if not groups:
        print(f"summarize: no finished runs (results.json with status ok) under {a.sweep_dir}", file=sys.stderr)
        return 1
    out = a.out or a.sweep_dir
    try:
        md = write_summary(out, groups, problems, a.baseline, make_plot=not a.no_plot)
    except KeyError as e:
        print(f"summarize: {e.args[0]}", file=sys.stderr)
        return 2
    print(md)
    if not a.no_plot:
        print(f"plot: {out / 'summary.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
