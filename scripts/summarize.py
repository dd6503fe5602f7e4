"""Summarize sweeps: per group n, mean ± std of the headline val_bpb, val_loss, bytes, step time and eval
seconds; Welch's t-test of each group against a baseline with the challenge's bar; markdown, JSON and a plot.

    python scripts/summarize.py multirun/2026-11-22/10-00-00 --baseline experiment=pr1019
    python scripts/summarize.py multirun/a multirun/b copied_from_cluster/ --out reports/xsa --baseline model.xsa_last_n=4

Groups are the runs' W&B groups: the override string without the seed. Several directories are read as one
(results copied from other machines included); the same group and seed found twice keeps the newer run.
Writes summary.md, summary.json and summary.png into the directory (or --out, required with several).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golf.summary import load_results, write_summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                   help="sweep directories or any folders holding results.json files (searched recursively)")
    p.add_argument("--baseline", help="the group to test against: its override string, or a part of it that "
                                      "names one group (e.g. experiment=pr1019)")
    p.add_argument("--out", type=Path, help="where to write summary.md/.json/.png (default: the one DIR)")
    p.add_argument("--no-plot", action="store_true")
    a = p.parse_args(argv)
    missing = [str(d) for d in a.dirs if not d.is_dir()]
    if missing:
        print(f"summarize: no such directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    if len(a.dirs) > 1 and a.out is None:
        print("summarize: several directories: say where the summary goes with --out DIR", file=sys.stderr)
        return 2
    groups, problems = load_results(*a.dirs)
    if not groups:
        where = ", ".join(map(str, a.dirs))
        print(f"summarize: no finished runs (results.json with status ok or over_budget) under {where}",
              file=sys.stderr)
        for path, why in problems:
            print(f"  {path}: {why}", file=sys.stderr)
        return 1
    out = a.out or a.dirs[0]
    try:
        md = write_summary(out, groups, problems, a.baseline, make_plot=not a.no_plot)
    except KeyError as e:
        print(f"summarize: {e.args[0]}", file=sys.stderr)
        return 2
    print(md)
    print(f"written: {out / 'summary.md'}, {out / 'summary.json'}" + ("" if a.no_plot else f", {out / 'summary.png'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
