"""Sweep summaries: grouping of results.json files, Welch's t-test against scipy's, the table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from golf.summary import CHALLENGE_MARGIN_NATS, load_results, metric_of, table, welch


def write_run(root: Path, group: str, seed: int, loss: float, status: str = "ok") -> None:
    d = root / group / f"seed={seed}"
    d.mkdir(parents=True)
    r = {"status": status, "group": group, "seed": seed, "steps": 100, "bytes": {"total": 15_000_000},
         "val": {"prequant": {"val_loss": loss - 0.01, "val_bpb": 0.0},
                 "roundtrip": {"val_loss": loss, "val_bpb": loss / 1.7}, "sliding": None, "ttt": None},
         "error": None if status == "ok" else "boom"}
    (d / "results.json").write_text(json.dumps(r))


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
    assert metric_of(groups["experiment=base"].runs[0], "bytes.total") == 15_000_000


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
