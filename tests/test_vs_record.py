"""scripts/vs_record.py --budget: a record's whole-pipeline log is parsed into the table beside golf's run."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import REPO
from tests.test_pipeline import FAST

# The lines #1019's train_gpt.py prints after training (format of its train_seed314.log; numbers made up).
RECORD_LOG = """\
step:50/20000 train_loss:3.1000 train_time:36000ms step_avg:720.00ms
stopping_early: wallclock_cap train_time:180113ms step:250/20000
step:250/20000 val_loss:2.3000 val_bpb:1.3600 train_time:180113ms step_avg:720.45ms
peak memory allocated: 23000 MiB reserved: 23500 MiB
ema:applying EMA weights
DIAGNOSTIC post_ema val_loss:2.2900 val_bpb:1.3550 eval_time:2059ms
Serialized model: 106289590 bytes
Code size: 101850 bytes
gptq:generated 64 sequences in 196.7s
Total submission size int6+lzma: 15863278 bytes
final_int6_roundtrip val_loss:1.9225 val_bpb:1.1386 eval_time:23007ms
final_int6_roundtrip_exact val_loss:1.92248956 val_bpb:1.13860661
final_int6_sliding_window val_loss:1.8828 val_bpb:1.1151 stride:64 eval_time:105090ms
final_int6_sliding_window_exact val_loss:1.88276292 val_bpb:1.11508120
final_int8_zlib_roundtrip_exact val_loss:1.70000000 val_bpb:1.00000000
"""


def _vs_record():
    spec = importlib.util.spec_from_file_location("vs_record", REPO / "scripts" / "vs_record.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_budget_mode_tabulates_a_records_log_beside_golfs_run(tmp_path, smoke_dir, monkeypatch, capsys):
    monkeypatch.setenv("GOLF_CACHE_DIR", str(smoke_dir.parent))
    record = tmp_path / "train_gpt.py"
    record.write_text(f"import os\nassert os.environ['MAX_WALLCLOCK_SECONDS'] == '3'\nprint({RECORD_LOG!r}, end='')\n")
    _vs_record().main(["--budget", "3", "--record", str(record), "--out", str(tmp_path / "out"),
                       "--golf", "golf:" + " ".join(FAST), "--record-timeout", "120", "--golf-timeout", "300"])
    rows = json.loads((tmp_path / "out" / "vs_record.json").read_text())
    rec, golf = rows["record"], rows["golf"]
    assert rec["exit"] == 0 and rec["steps_done"] == 250 and rec["step_avg_ms"] == 720.45
    assert rec["final"]["roundtrip"] == {"val_bpb": 1.13860661, "val_loss": 1.92248956, "eval_seconds": 23.007,
                                         "t_done": rec["final"]["roundtrip"]["t_done"]}
    assert rec["final"]["sliding"]["val_bpb"] == 1.1150812 and rec["bytes"] == {"total": 15863278, "code": 101850}
    assert rec["ar_seconds"] == 196.7 and rec["diag"]["val_bpb"] == 1.355
    res = json.loads((tmp_path / "out" / "golf" / "results.json").read_text())
    assert golf["exit"] == 0 and golf["steps_done"] == res["steps"] > 0
    assert golf["final"]["roundtrip"]["val_bpb"] == res["val"]["roundtrip"]["val_bpb"]
    assert golf["bytes"]["total"] == res["bytes"]["total"]
    out = capsys.readouterr().out
    assert "| record | 250 | 720.5 | 1.3550 (EMA) | 1.1386 | 1.1151 | 15,863,278 | 196.7 |" in out
    assert f"| golf | {res['steps']} | " in out and f"{res['bytes']['total']:,}" in out


def test_record_until_diag_stops_after_the_post_ema_score(tmp_path, capsys):
    record = tmp_path / "train_gpt.py"
    record.write_text(f"import time\nprint({RECORD_LOG!r}, end='', flush=True)\ntime.sleep(60)\n")
    _vs_record().main(["--budget", "3", "--record", str(record), "--record-until", "diag", "--out", str(tmp_path)])
    rec = json.loads((tmp_path / "vs_record.json").read_text())["record"]
    assert rec["seconds"] < 50 and rec["steps_done"] == 250 and rec["diag"]["val_bpb"] == 1.355
    assert "final" not in rec and "bytes" not in rec
    assert "| record | 250 | 720.5 | 1.3550 (EMA) | - | - | - |" in capsys.readouterr().out


def test_scan_reads_the_1089_records_final_lines():
    """#1089 prints its stop summary without a val score, calibrates from training data inside its budget
    and compresses with brotli."""
    vs = _vs_record()
    out: dict = {}
    for line in ["step:50/20000 train_loss:3.1000 train_time:36000ms step_avg:720.00ms",
                 "step:233/20000 train_time:166100ms step_avg:712.88ms",
                 "stopping_early: wallclock_cap train_time:166100ms step:233/20000",
                 "gptq:budget_check train:166059ms + gptq:7162ms = 173221ms (budget:180000ms)",
                 "Total submission size int6+brotli: 15993413 bytes",
                 "final_int6_sliding_window val_loss:1.8726 val_bpb:1.1090 stride:64 eval_time:87666ms",
                 "final_int6_sliding_window_exact val_loss:1.87255649 val_bpb:1.10903637"]:
        vs.scan_final_line(line, out, 1.0)
    assert out["step_avg_ms"] == 712.88 and out["steps_done"] == 233 and out["gptq_seconds"] == 7.162
    assert out["codec"] == "int6+brotli" and out["bytes"]["total"] == 15993413
    assert out["final"]["sliding"] == {"eval_seconds": 87.666, "t_done": 1.0, "val_bpb": 1.10903637, "val_loss": 1.87255649}


def test_merge_joins_rows_from_separate_calls(tmp_path, capsys):
    """One side per device call: --merge puts earlier calls' rows into one table."""
    vs = _vs_record()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"record_1089": {"seed": 1337, "steps_done": 233, "step_avg_ms": 712.88, "step_ms": [], "losses": [],
                                             "bytes": {"total": 15993413}, "gptq_seconds": 7.162,
                                             "final": {"sliding": {"val_bpb": 1.10903637, "eval_seconds": 87.666}}}}))
    b.write_text(json.dumps({"golf_pr1089": {"steps_done": 240, "step_avg_ms": 700.0, "step_ms": [], "losses": [],
                                             "bytes": {"total": 15990000}, "stages_s": {"calibrate": 6.0, "quantize": 20.0},
                                             "final": {"prequant": {"val_bpb": 1.5}, "roundtrip": {"val_bpb": 1.51}}}}))
    vs.main(["--budget", "180", "--skip-record", "--out", str(tmp_path / "m"), "--merge", str(a), str(b)])
    out = capsys.readouterr().out
    assert "| record_1089 | 233 | 712.9 | - | - | 1.1090 | 15,993,413 | 7.2 |" in out
    assert "training cap, seed 1337, not recorded" in out  # the rows' own seeds, not this call's --seed
    assert "| golf_pr1089 | 240 | 700.0 | 1.5000 | 1.5100 | - | 15,990,000 | 6.0 | 20.0 |" in out
    assert set(json.loads((tmp_path / "m" / "vs_record.json").read_text())) == {"record_1089", "golf_pr1089"}


def test_step_mode_tabulates_per_step_times_and_the_post_ema_score(tmp_path, capsys):
    steps = "".join(f"step:{i}/4 train_loss:{7 - i / 10:.4f} train_time:{600 * i}ms step_avg:600.00ms\n" for i in range(1, 5))
    log = steps + RECORD_LOG.split("\n", 1)[1].replace("stopping_early", "#")
    record = tmp_path / "train_gpt.py"
    record.write_text(f"print({log!r}, end='', flush=True)\n")
    _vs_record().main(["--steps", "4", "--from-step", "1", "--record", str(record), "--out", str(tmp_path)])
    rec = json.loads((tmp_path / "vs_record.json").read_text())["record"]
    assert rec["step_ms"] == [600, 600, 600, 600] and rec["diag"] == {"val_loss": 2.29, "val_bpb": 1.355}
    row = "| record | 600.0 | 1.31M | 23000 | 6.9000 / 6.8000 / 6.7000 | 1.36 | 1.3550 (EMA) |"
    assert row in capsys.readouterr().out


def test_step_mode_reads_an_april_records_tok_s_lines_and_stops_at_its_ema(tmp_path):
    """#1394-#1855 log "N/ITER train_loss: X train_time: Ym tok/s: Z" (Z over the run so far) and no diagnostic:
    each step's time comes from the cumulative tok/s, and the record is stopped when it applies its EMA."""
    B = 786_432
    total_ms = [800, 1600, 2500, 3400]
    lines = "".join(f"{i}/4 train_loss: {7 - i / 10:.4f} train_time: 0.0m tok/s: {round(i * B / (t / 1000))}\n"
                    for i, t in enumerate(total_ms, start=1))
    log = "warmup_step: 1/5\n" + lines + "peak memory allocated: 40000 MiB reserved: 41000 MiB\nema:applying EMA weights\n"
    short = tmp_path / "short.py"  # with --steps 2 it is stopped after its second step, before its validation
    short.write_text(f"import time\nprint({log!r}, end='', flush=True)\ntime.sleep(60)\n")
    _vs_record().main(["--steps", "2", "--from-step", "1", "--record", str(short), "--out", str(tmp_path / "s")])
    rec = json.loads((tmp_path / "s" / "vs_record.json").read_text())["record"]
    assert rec["losses"] == [6.9, 6.8] and rec["peak_mib"] is None
    record = tmp_path / "train_gpt.py"
    record.write_text(f"import time\nprint({log!r}, end='', flush=True)\ntime.sleep(60)\n")
    # asked for 5 steps, it stopped after 4 (its clock ran out): stopped when it applies its EMA
    _vs_record().main(["--steps", "5", "--from-step", "1", "--record", str(record), "--out", str(tmp_path)])
    rec = json.loads((tmp_path / "vs_record.json").read_text())["record"]
    assert rec["seconds"] < 50 and rec["losses"] == [6.9, 6.8, 6.7, 6.6] and rec["peak_mib"] == 40000
    assert rec["step_ms"] == pytest.approx([800, 800, 900, 900], abs=0.01)


def test_records_from_1394_find_their_shards_and_tokenizer_under_data_dir(tmp_path):
    """#1394, #1493 and #1530 read DATA_DIR/datasets/fineweb10B_sp<V>/ and DATA_DIR/tokenizers/fineweb_<V>_bpe.model,
    not DATA_PATH: record_env lays out links there to the data and tokenizer given, for either vocabulary."""
    import argparse
    import glob
    import os

    data = tmp_path / "enwiki_sp8192"
    data.mkdir()
    (data / "fineweb_train_000000.bin").write_bytes(b"t")
    (data / "fineweb_val_000000.bin").write_bytes(b"v")
    (data / "tokenizer.model").write_bytes(b"m")
    a = argparse.Namespace(data=data, tokenizer=None, seed=1, budget=None, steps=2, warmup=0, batch_tokens=8, seq_len=4,
                           record_env=[], out=tmp_path / "out")
    env = _vs_record().record_env(a)
    for v in (1024, 8192):  # as the records build their paths (r1394_human.py lines 117-119)
        datasets_dir = os.path.join(env["DATA_DIR"], "datasets", f"fineweb10B_sp{v}")
        assert [os.path.basename(f) for f in glob.glob(os.path.join(datasets_dir, "fineweb_train_*.bin"))] == ["fineweb_train_000000.bin"]
        assert open(os.path.join(env["DATA_DIR"], "tokenizers", f"fineweb_{v}_bpe.model"), "rb").read() == b"m"
    assert _vs_record().record_env(a) == env  # a second call (a re-used --out) replaces the links
