"""Sweep summaries: grouping of results.json files, Welch's t-test against scipy's, the table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from golf.summary import CHALLENGE_MARGIN_NATS, load_results, metric_of, seeds_needed, table, welch, write_summary


def write_run(root: Path, group: str, seed: int, loss: float, status: str = "ok", sliding: float | None = None,
              step_ms: float = 100.0) -> Path:
    d = root / group / f"seed={seed}"
    d.mkdir(parents=True, exist_ok=True)
    r = {"status": status, "group": group, "seed": seed, "steps": 100, "bytes": {"total": 15_000_000 + seed},
         "step_avg_ms": step_ms, "eval_seconds": 10.0 + seed,
         "val": {"prequant": {"val_loss": loss - 0.01, "val_bpb": 0.0},
                 "roundtrip": {"val_loss": loss, "val_bpb": loss / 1.7},
                 "sliding": None if sliding is None else {"val_loss": sliding, "val_bpb": sliding / 1.7}, "ttt": None},
         "error": None if status == "ok" else "boom"}
    (d / "results.json").write_text(json.dumps(r))
    return d / "results.json"


@pytest.fixture
def sweep(tmp_path) -> Path:
    for s, v in zip((1, 2, 3), (1.900, 1.902, 1.899)):
        write_run(tmp_path, "experiment=base", s, v)
    for s, v in zip((1, 2, 3), (1.880, 1.883, 1.881)):
        write_run(tmp_path, "experiment=new", s, v)
    write_run(tmp_path, "experiment=new", 4, 9.9, status="diverged")
    return tmp_path


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    new, base = list(rng.normal(1.88, 0.002, 3)), list(rng.normal(1.90, 0.004, 4))
    w = welch(new, base)
    ref = stats.ttest_ind(base, new, equal_var=False)
    assert w.t == pytest.approx(ref.statistic, rel=1e-12) and w.p_two_sided == pytest.approx(ref.pvalue, rel=1e-10)
    shifted = stats.ttest_ind(np.array(base) - CHALLENGE_MARGIN_NATS, new, equal_var=False, alternative="greater")
    assert w.p_margin == pytest.approx(shifted.pvalue, rel=1e-10)
    with pytest.raises(ValueError, match="at least 2 runs"):
        welch([1.0], base)


def test_grouping_skips_unfinished_runs_and_names_them(sweep):
    groups, problems = load_results(sweep)
    assert sorted(groups) == ["experiment=base", "experiment=new"]
    assert len(groups["experiment=new"].runs) == 3
    assert len(problems) == 1 and "diverged: boom" in problems[0][1]
    assert metric_of(groups["experiment=base"].runs[0], "val_loss") == pytest.approx(1.900)  # roundtrip, not prequant
    assert metric_of(groups["experiment=base"].runs[0], "bytes.total") == 15_000_001


def test_table_reports_mean_std_and_p_values(sweep):
    groups, _ = load_results(sweep)
    md = table(groups, "experiment=base")
    row = next(line for line in md.splitlines() if line.startswith("| experiment=new"))
    base = [1.900, 1.902, 1.899]
    new = [1.880, 1.883, 1.881]
    assert f"{np.mean(new):.5f} ± {np.std(new, ddof=1):.5f}" in row
    assert f"{np.mean(base) - np.mean(new):+.5f}" in row
    assert f"{stats.ttest_ind(base, new, equal_var=False).pvalue:.3g}" in row


def test_summarize_script_writes_table_and_plot(sweep, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("summarize", Path(__file__).resolve().parents[1] / "scripts/summarize.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(sweep), "--baseline", "experiment=base"]) == 0
    assert (sweep / "summary.md").read_text().startswith("| group |")
    assert (sweep / "summary.png").stat().st_size > 1000
    assert "Runs left out" in capsys.readouterr().out
    assert mod.main([str(sweep), "--baseline", "experiment=nope"]) == 2


def test_baseline_can_be_named_by_a_subset_of_its_overrides(tmp_path):
    from golf.summary import find_group

    for s in (1, 2):
        write_run(tmp_path, "compressor=zlib,experiment=smoke", s, 2.0 + s / 1000)
        write_run(tmp_path, "compressor=zstd,experiment=smoke", s, 2.0 + s / 1000)
    groups, _ = load_results(tmp_path)
    assert find_group(groups, "compressor=zlib") == "compressor=zlib,experiment=smoke"
    with pytest.raises(KeyError, match="matches 2 groups"):
        find_group(groups, "experiment=smoke")


def test_headline_is_sliding_when_present_and_json_means_equal_the_files(tmp_path):

    losses = {1: (2.00, 1.95), 2: (2.01, 1.97), 3: (2.03, 1.96)}
    for seed, (rt, sl) in losses.items():
        write_run(tmp_path, "eval=sliding", seed, rt, sliding=sl, step_ms=90.0 + seed)
    groups, _ = load_results(tmp_path)
    write_summary(tmp_path, groups, [], make_plot=False)
    doc = json.loads((tmp_path / "summary.json").read_text())["groups"]["eval=sliding"]
    files = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("results.json"))]
    assert doc["n"] == 3 and doc["seeds"] == ["1", "2", "3"]
    assert doc["val_loss"]["mean"] == pytest.approx(np.mean([f["val"]["sliding"]["val_loss"] for f in files]), rel=1e-12)
    assert doc["val_bpb"]["std"] == pytest.approx(np.std([f["val"]["sliding"]["val_bpb"] for f in files], ddof=1))
    assert doc["bytes.total"]["mean"] == pytest.approx(np.mean([f["bytes"]["total"] for f in files]))
    assert doc["step_avg_ms"]["mean"] == pytest.approx(92.0) and doc["eval_seconds"]["mean"] == pytest.approx(12.0)


def test_several_directories_and_a_copied_duplicate(tmp_path):
    import os
    import time

    a, b = tmp_path / "a", tmp_path / "b"
    for s, v in zip((1, 2), (1.90, 1.91)):
        write_run(a, "experiment=base", s, v)
    old = write_run(b, "experiment=base", 2, 5.0)       # an older copy of seed 2 from another machine
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    write_run(b, "experiment=base", 3, 1.92)
    groups, problems = load_results(a, b)
    assert sorted(str(r["seed"]) for r in groups["experiment=base"].runs) == ["1", "2", "3"]
    assert groups["experiment=base"].values("val_loss") == pytest.approx([1.90, 1.91, 1.92])
    assert len(problems) == 1 and problems[0][0] == old.resolve() and "duplicate of" in problems[0][1]


def test_seeds_needed_is_the_first_n_that_clears_the_bar():
    new, base = [1.880, 1.886, 1.878], [1.890, 1.899, 1.893]
    n = seeds_needed(new, base)
    assert n is not None and n > 3

    def p_at(k: int) -> float:  # Welch at k seeds per group with the observed means and spreads, scipy's form
        return stats.ttest_ind_from_stats(np.mean(base) - CHALLENGE_MARGIN_NATS, np.std(base, ddof=1), k,
                                          np.mean(new), np.std(new, ddof=1), k, equal_var=False,
                                          alternative="greater").pvalue

    assert p_at(n) < 0.01 <= p_at(n - 1)
    assert seeds_needed([1.899, 1.897], [1.900, 1.901]) is None   # better by less than 0.005 nats: never


def test_table_and_json_carry_the_bar(sweep):
    groups, _ = load_results(sweep)
    write_summary(sweep, groups, [], "experiment=base", make_plot=False)
    vs = json.loads((sweep / "summary.json").read_text())["groups"]["experiment=new"]["vs_baseline"]
    base, new = [1.900, 1.902, 1.899], [1.880, 1.883, 1.881]
    assert vs["p_two_sided"] == pytest.approx(stats.ttest_ind(base, new, equal_var=False).pvalue, rel=1e-10)
    assert vs["clears_bar"] is True and vs["seeds_needed"] == seeds_needed(new, base)
    assert "seeds for the bar" in (sweep / "summary.md").read_text()


def test_summarize_script_reads_several_directories(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("summarize", Path(__file__).resolve().parents[1] / "scripts/summarize.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for s in (1, 2):
        write_run(tmp_path / "here", "x=1", s, 2.0 + s / 100)
        write_run(tmp_path / "there", "x=2", s, 1.9 + s / 100)
    dirs = [str(tmp_path / "here"), str(tmp_path / "there")]
    assert mod.main(dirs) == 2 and "--out" in capsys.readouterr().err
    assert mod.main([*dirs, "--out", str(tmp_path / "report"), "--baseline", "x=1", "--no-plot"]) == 0
    md = (tmp_path / "report/summary.md").read_text()
    assert "| x=1 | 2 |" in md and "| x=2 | 2 |" in md
    assert mod.main([str(tmp_path / "nowhere")]) == 2
