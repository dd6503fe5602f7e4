"""Launchers: how a resolved run config becomes running processes (the ``launcher`` group).

Hydra runs only in the parent process. ``LocalLauncher`` runs the worker in that process;
``TorchrunLauncher`` starts ``torchrun -m golf.worker <run_dir>/config.yaml``, so every rank reads the
same resolved file and Hydra never runs per rank.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


class LocalLauncher:
    def launch(self, config_path: Path) -> int:
        from golf.worker import run_file

        return run_file(config_path)


class TorchrunLauncher:
    def __init__(self, *, nproc_per_node: int = 8, nnodes: int = 1, extra_args: list[str] | None = None):
        if nproc_per_node < 1:
            raise ValueError(f"launcher.nproc_per_node must be >= 1, got {nproc_per_node}")
        self.nproc_per_node, self.nnodes = nproc_per_node, nnodes
        self.extra_args = list(extra_args or [])

    def command(self, config_path: Path) -> list[str]:
        torchrun = shutil.which("torchrun")
        head = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
        standalone = ["--standalone"] if self.nnodes == 1 else []
        return [*head, *standalone, f"--nnodes={self.nnodes}", f"--nproc_per_node={self.nproc_per_node}",
                *self.extra_args, "-m", "golf.worker", str(config_path)]

    def launch(self, config_path: Path) -> int:
        """Run torchrun to its end; SIGINT or SIGTERM here is passed on to it (its ranks record the interruption),
        then raised as ``golf.pipeline.Interrupted``."""
        from golf.pipeline import signals_interrupt

        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.nproc_per_node)))
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen(self.command(config_path), env=env)
        try:
            with signals_interrupt():
                return proc.wait()
        except KeyboardInterrupt as e:
            proc.send_signal(getattr(e, "signum", signal.SIGINT))
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def run_to_deadline(cmd: list[str], *, timeout: float, grace: float = 30, **popen_kw) -> int | str:
    """Run ``cmd`` to its end, or past ``timeout`` seconds stop it with SIGTERM (a golf run then records
    ``interrupted`` with every figure it has), killing it only if it is still there ``grace`` seconds later.
    The exit code, or ``"timeout"``."""
    proc = subprocess.Popen(cmd, **popen_kw)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return "timeout"
