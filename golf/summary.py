"""Sweep summaries: mean ± std per group of seeds, and Welch's t-test against a baseline group.

The challenge's bar for a new record: an improvement of at least 0.005 nats of val_loss at p < 0.01.
``welch`` reports the two-sided p-value of any difference, and the one-sided p-value of
H0: mean_base - mean_new <= margin (rejecting it means "better by more than the margin").
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

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


def load_results(root: str | Path) -> tuple[dict[str, Group], list[tuple[Path, str]]]:
    """Every results.json under ``root``, grouped by its ``group``; also (path, status) of runs that did not finish ok."""
    groups: dict[str, Group] = {}
    problems = []
    for path in sorted(Path(root).rglob("results.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            problems.append((path, f"unreadable ({e})"))
            continue
        if r.get("status") not in ("ok", "over_budget"):
            problems.append((path, f"{r.get('status')}: {r.get('error')}"))
            continue
        name = r.get("group") or r.get("name") or path.parent.parent.name
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


def table(groups: dict[str, Group], baseline: str | None = None) -> str:
    """A markdown table: per group n, mean ± std of val_bpb and val_loss, steps, bytes; Welch vs ``baseline``."""
    head = "| group | n | val_bpb | val_loss (nats) | steps | total bytes |"
    sep = "|---|---|---|---|---|---|"
    if baseline:
        head += " Δ nats vs baseline | p (two-sided) | p (Δ > 0.005) |"
        sep += "---|---|---|"
    rows = [head, sep]
    baseline = find_group(groups, baseline) if baseline else None
    base = groups.get(baseline) if baseline else None
    for name in sorted(groups):
        g = groups[name]
        bpb, loss = g.values("val_bpb"), g.values("val_loss")
        steps, total = g.values("steps"), g.values("bytes.total")
        row = (f"| {name} | {len(g.runs)} | {_ms(bpb, 5)} | {_ms(loss, 5)} | {_mean(steps, 0)} | {_mean(total, 0)} |")
        if baseline:
            if base is None or name == baseline:
                row += " — | — | — |"
            else:
                try:
                    w = welch(loss, base.values("val_loss"))
                    row += f" {w.diff:+.5f} | {w.p_two_sided:.3g} | {w.p_margin:.3g} |"
                except ValueError:
                    row += " n<2 | — | — |"
        rows.append(row)
    return "\n".join(rows)


def write_summary(out_dir: str | Path, groups: dict[str, Group], problems: list[tuple[Path, str]],
                  baseline: str | None = None, make_plot: bool = True) -> str:
    """Write summary.md (the table, then the runs left out) and summary.png into ``out_dir``; return the markdown.
    Raises KeyError, before writing anything, when ``baseline`` names no single group."""
    md = table(groups, baseline) if groups else "no finished runs"
    if problems:
        md += "\n\nRuns left out:\n" + "\n".join(f"- {path}: {why}" for path, why in problems)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(md + "\n")
    if make_plot and groups:
        plot(groups, out_dir / "summary.png")
    return md


def _ms(v: list[float], nd: int) -> str:
    if not v:
        return "—"
    return f"{statistics.fmean(v):.{nd}f} ± {statistics.stdev(v):.{nd}f}" if len(v) > 1 else f"{v[0]:.{nd}f}"


def _mean(v: list[float], nd: int) -> str:
    return f"{statistics.fmean(v):,.{nd}f}" if v else "—"


def plot(groups: dict[str, Group], path: str | Path, metric: str = "val_bpb") -> Path:
    """One point per seed and the group mean, per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(groups)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 3.5))
    for i, n in enumerate(names):
        vals = groups[n].values(metric)
        ax.scatter([i] * len(vals), vals, s=18, alpha=0.7)
        if vals:
            ax.hlines(statistics.fmean(vals), i - 0.25, i + 0.25, color="k")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
