"""Sweep summaries: mean ± std per group of seeds, and Welch's t-test against a baseline group.

The challenge's bar for a new record: an improvement of at least 0.005 nats of val_loss at p < 0.01.
``welch`` reports the two-sided p-value of any difference, and the one-sided p-value of
H0: mean_base - mean_new <= margin (rejecting it means "better by more than the margin"); ``seeds_needed``
the number of seeds per group at which the observed difference and spread would clear that bar.
The score compared is each run's headline (TTT, else sliding, else the round trip: what the records report).
Runs come from any number of directories (sweeps, results copied from other machines); the same (group, seed)
found twice keeps the newest and lists the other.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from golf.results import write_json_atomic

CHALLENGE_MARGIN_NATS = 0.005


@dataclass
class Group:
    name: str
    runs: list[dict] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [v for r in self.runs if (v := metric_of(r, metric)) is not None]


def metric_of(result: dict, metric: str) -> float | None:
    """``val_bpb`` / ``val_loss`` of the best available stage (ttt > sliding > roundtrip), or a dotted path."""
    if metric in ("val_bpb", "val_loss"):
        for stage in ("ttt", "sliding", "roundtrip"):
            v = (result.get("val") or {}).get(stage)
            if v and v.get(metric) is not None:
                return float(v[metric])
        return None
    node = result
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


FINISHED = ("ok", "over_budget")
WHY = {"running": "unfinished (killed, or still running)",
       "partial_eval": "its TTT score covers only part of the validation set (eval time guard)"}


def load_results(*roots: str | Path) -> tuple[dict[str, Group], list[tuple[Path, str]]]:
    """Every results.json under ``roots``, grouped by its ``group``; also (path, why) of the runs left out:
    unfinished, unreadable, or an older copy of a (group, seed) found again."""
    problems: list[tuple[Path, str]] = []
    latest: dict[tuple[str, object], tuple[float, Path, dict]] = {}
    for path in sorted({p.resolve() for root in roots for p in Path(root).rglob("results.json")}):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            problems.append((path, f"unreadable ({e})"))
            continue
        if r.get("status") not in FINISHED:
            problems.append((path, f"{r.get('status')}: {r.get('error') or WHY.get(r.get('status'), '')}"))
            continue
        name = r.get("group") or r.get("name") or path.parent.parent.name
        key, mtime = (name, r.get("seed")), path.stat().st_mtime
        if key in latest:
            older, newer = sorted([latest[key], (mtime, path, r)], key=lambda x: x[0])
            problems.append((older[1], f"duplicate of {newer[1]} (same group and seed; the newer is kept)"))
            latest[key] = newer
        else:
            latest[key] = (mtime, path, r)
    groups: dict[str, Group] = {}
    for (name, _), (_, path, r) in sorted(latest.items(), key=lambda kv: str(kv[1][1])):
        groups.setdefault(name, Group(name)).runs.append(r | {"_path": str(path)})
    return groups, problems


@dataclass(frozen=True)
class Welch:
    diff: float          # mean(base) - mean(new): positive = new is better (lower)
    t: float
    df: float
    p_two_sided: float
    p_margin: float      # one-sided p for diff > margin


def welch(new: list[float], base: list[float], margin: float = CHALLENGE_MARGIN_NATS) -> Welch:
    from scipy import stats

    if len(new) < 2 or len(base) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 runs per group, got {len(new)} and {len(base)}")
    mn, mb = statistics.fmean(new), statistics.fmean(base)
    vn, vb = statistics.variance(new) / len(new), statistics.variance(base) / len(base)
    se = math.sqrt(vn + vb)
    df = (vn + vb) ** 2 / (vn**2 / (len(new) - 1) + vb**2 / (len(base) - 1)) if se > 0 else float("inf")
    diff = mb - mn
    if se == 0:
        return Welch(diff, math.inf if diff else 0.0, df, 0.0 if diff else 1.0, 0.0 if diff > margin else 1.0)
    t = diff / se
    return Welch(diff, t, df, float(2 * stats.t.sf(abs(t), df)), float(stats.t.sf((diff - margin) / se, df)))


def seeds_needed(new: list[float], base: list[float], margin: float = CHALLENGE_MARGIN_NATS, alpha: float = 0.01,
                 most: int = 1000) -> int | None:
    """Seeds per group at which the observed mean difference and spreads give one-sided p < ``alpha`` for
    "better by more than ``margin``" (Welch); None when the observed difference is not above the margin."""
    from scipy import stats

    diff = statistics.fmean(base) - statistics.fmean(new)
    if diff <= margin or len(new) < 2 or len(base) < 2:
        return None
    vn, vb = statistics.variance(new), statistics.variance(base)
    for n in range(2, most + 1):
        se = math.sqrt((vn + vb) / n)
        if se == 0:
            return n
        df = (vn + vb) ** 2 / ((vn**2 + vb**2) / (n - 1)) if vn + vb > 0 else float("inf")
        if stats.t.sf((diff - margin) / se, df) < alpha:
            return n
    return None


def find_group(groups: dict[str, Group], spec: str) -> str:
    """The group named ``spec``, or the one group whose overrides include every ``key=value`` of ``spec``
    (so ``compressor=zlib`` picks ``compressor=zlib,experiment=smoke``)."""
    if spec in groups:
        return spec
    want = set(spec.split(","))
    hits = [g for g in groups if want <= set(g.split(","))]
    if len(hits) != 1:
        raise KeyError(f"baseline {spec!r} matches {len(hits)} groups {hits or ''}; groups: {sorted(groups)}")
    return hits[0]


COLUMNS = (("val_bpb", "headline val_bpb", 5), ("val_loss", "val_loss (nats)", 5), ("bytes.total", "total bytes", 0),
           ("step_avg_ms", "step ms", 1), ("eval_seconds", "eval s", 1))


def stats_of(groups: dict[str, Group], baseline: str | None = None) -> dict[str, dict]:
    """Per group: n, mean / std of every column, and against ``baseline`` Welch's test on val_loss (nats)."""
    baseline = find_group(groups, baseline) if baseline else None
    base = groups[baseline].values("val_loss") if baseline else None
    out = {}
    for name in sorted(groups):
        g, row = groups[name], {"n": len(groups[name].runs), "seeds": sorted(str(r.get("seed")) for r in groups[name].runs)}
        for metric, _, _ in COLUMNS:
            v = g.values(metric)
            row[metric] = {"mean": statistics.fmean(v) if v else None, "std": statistics.stdev(v) if len(v) > 1 else None,
                           "n": len(v)}
        if baseline and name != baseline:
            loss = g.values("val_loss")
            try:
                w = welch(loss, base)
                row["vs_baseline"] = {"baseline": baseline, "diff_nats": w.diff, "t": w.t, "df": w.df,
                                      "p_two_sided": w.p_two_sided, "p_beats_bar": w.p_margin,
                                      "clears_bar": w.diff > CHALLENGE_MARGIN_NATS and w.p_margin < 0.01,
                                      "seeds_needed": seeds_needed(loss, base)}
            except ValueError as e:
                row["vs_baseline"] = {"baseline": baseline, "error": str(e)}
        out[name] = row
    return out


def table(groups: dict[str, Group], baseline: str | None = None) -> str:
    """A markdown table: per group n and mean ± std of each column; Welch's test against ``baseline``."""
    st = stats_of(groups, baseline)
    head = "| group | n | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    sep = "|---|---|" + "---|" * len(COLUMNS)
    if baseline:
        head += " gain vs baseline (nats, + = better) | p (two-sided) | p (gain > 0.005) | seeds for the bar |"
        sep += "---|---|---|---|"
    rows = [head, sep]
    for name, row in st.items():
        cells = [_cell(row[m], nd, m == "bytes.total") for m, _, nd in COLUMNS]
        line = f"| {name} | {row['n']} | " + " | ".join(cells) + " |"
        if baseline:
            vb = row.get("vs_baseline")
            if vb is None:
                line += " (baseline) | — | — | — |"
            elif "error" in vb:
                line += " n<2 | — | — | — |"
            else:
                need = vb["seeds_needed"]
                line += (f" {vb['diff_nats']:+.5f} | {vb['p_two_sided']:.3g} | {vb['p_beats_bar']:.3g} | "
                         f"{need if need is not None else 'never (gain <= 0.005)'} |")
        rows.append(line)
    return "\n".join(rows)


def _cell(s: dict, nd: int, thousands: bool) -> str:
    if s["mean"] is None:
        return "—"
    fmt = f",.{nd}f" if thousands else f".{nd}f"
    return f"{s['mean']:{fmt}} ± {s['std']:{fmt}}" if s["std"] is not None else f"{s['mean']:{fmt}}"


def write_summary(out_dir: str | Path, groups: dict[str, Group], problems: list[tuple[Path, str]],
                  baseline: str | None = None, make_plot: bool = True) -> str:
    """Write summary.md (the table, then the runs left out), summary.json and summary.png into ``out_dir``;
    return the markdown. Raises KeyError, before writing anything, when ``baseline`` names no single group."""
    md = table(groups, baseline) if groups else "no finished runs"
    st = stats_of(groups, baseline) if groups else {}
    if problems:
        md += "\n\nRuns left out:\n" + "\n".join(f"- {path}: {why}" for path, why in problems)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(md + "\n")
    doc = {"groups": st, "baseline": baseline, "bar": {"nats": CHALLENGE_MARGIN_NATS, "p": 0.01},
           "left_out": [{"path": str(p), "why": w} for p, w in problems]}
    write_json_atomic(out_dir / "summary.json", doc)
    if make_plot and groups:
        plot(groups, out_dir / "summary.png")
    return md


def shared_overrides(names: list[str]) -> set[str]:
    """The overrides every group has (none when there is a single group: its label keeps them all)."""
    return set.intersection(*(set(n.split(",")) for n in names)) if len(names) > 1 else set()


def short_labels(names: list[str]) -> list[str]:
    """Each group's overrides that not every group shares, one per line (the shared ones go in the title)."""
    common = shared_overrides(names)
    return ["\n".join(p for p in n.split(",") if p not in common) or "(base)" for n in names]


def plot(groups: dict[str, Group], path: str | Path, metric: str = "val_bpb") -> Path:
    """One point per seed and the group mean, per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(groups)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 4.5))
    for i, n in enumerate(names):
        vals = groups[n].values(metric)
        ax.scatter([i] * len(vals), vals, s=18, alpha=0.7)
        if vals:
            ax.hlines(statistics.fmean(vals), i - 0.25, i + 0.25, color="k")
    ax.set_xticks(range(len(names)), short_labels(names), fontsize=8)
    ax.set_ylabel("headline val_bpb (TTT, else sliding, else round trip)" if metric == "val_bpb" else metric, fontsize=8)
    common = shared_overrides(names)
    if common:
        ax.set_title("all with " + ", ".join(sorted(common)), fontsize=7, wrap=True)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
