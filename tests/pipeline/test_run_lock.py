"""One run per folder: a second pipeline run into a folder in use refuses with one line naming the owner,
and an unusable --out is one line too, both before any stage runs."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.core.test_safeio import hold_lock

REPO = Path(__file__).resolve().parents[2]


def _pipeline(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.run", "--config", "configs/demo.yaml", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_second_run_into_the_same_folder_refuses_in_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    owner = hold_lock(run)                       # the first run, holding the folder
    try:
        proc = _pipeline(run)
    finally:
        owner.kill()
        owner.wait()
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {run} is in use by another run (pid {owner.pid} on host {socket.gethostname()}, since "
        + proc.stderr.split("since ", 1)[1].split(")")[0] + "); wait for it to finish or choose another --out"]
    assert sorted(p.name for p in run.iterdir()) == [".run.lock"]       # nothing was written by the second run


def test_out_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a folder")
    proc = _pipeline(tmp_path / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --out {tmp_path / 'run'}: {tmp_path / 'run'} is a file, "
                                                "not a folder; choose another path"]
