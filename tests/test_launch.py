"""golf.launch.run_to_deadline: a run past its time gets SIGTERM first (so a golf run can record what it has),
and is killed only if it ignores that."""

from __future__ import annotations

import sys
import time

from golf.launch import run_to_deadline

CHILD = """
import signal, sys, time
def stop(signum, frame):
    open(sys.argv[1], "w").write(signal.Signals(signum).name)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop if sys.argv[2] == "handle" else signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_run_that_ends_in_time_gives_its_exit_code():
    assert run_to_deadline([sys.executable, "-c", "raise SystemExit(3)"], timeout=30) == 3


def test_past_the_deadline_the_run_gets_sigterm_and_may_record_its_end(tmp_path):
    marker = tmp_path / "stopped"
    t0 = time.perf_counter()
    assert run_to_deadline([sys.executable, "-c", CHILD, str(marker), "handle"], timeout=2, grace=30) == "timeout"
    assert marker.read_text() == "SIGTERM" and time.perf_counter() - t0 < 20


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    marker = tmp_path / "stopped"
    t0 = time.perf_counter()
    assert run_to_deadline([sys.executable, "-c", CHILD, str(marker), "ignore"], timeout=2, grace=2) == "timeout"
    assert not marker.exists() and time.perf_counter() - t0 < 20
