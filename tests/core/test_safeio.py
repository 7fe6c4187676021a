"""Crash-safe output helpers: atomic writes survive a kill, output folders fail in one line, one run per folder."""
from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.safeio import FAULT_ENV, OutputPathError, RunLockedError, check_output_dir, os_error_line, run_lock, write_text

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom core.safeio import run_lock\nctx = run_lock(sys.argv[1])\nctx.__enter__()\n"
        "print('locked', flush=True)\ntime.sleep(120)\n")


def hold_lock(folder: Path) -> subprocess.Popen:
    """A process that takes the run lock of ``folder`` and keeps it (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_killed_atomic_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    write_text(target, "a,b\n1,2\n")
    code = f"from core.safeio import write_text; write_text({str(target)!r}, 'a,b\\n3,4\\n')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, FAULT_ENV: "atomic-write",
                                                                       "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == "a,b\n1,2\n"                     # old content, whole
    write_text(target, "a,b\n5,6\n")
    assert target.read_text() == "a,b\n5,6\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_output_folder_problems_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder") as err:
        check_output_dir(tmp_path / "afile" / "run")
    assert "\n" not in str(err.value)
    with pytest.raises(OutputPathError, match="MB free on its disk"):
        check_output_dir(tmp_path / "ok", min_free_mb=10**12)

    def denied(self, data):                                       # tests run as root: simulate a read-only folder
        raise PermissionError(errno.EACCES, "Permission denied", str(self))
    monkeypatch.setattr(Path, "write_bytes", denied)
    with pytest.raises(OutputPathError, match="is not writable \\(Permission denied\\)"):
        check_output_dir(tmp_path / "ro")
    full = OSError(errno.ENOSPC, "No space left on device", "/x/run/table.csv")
    assert os_error_line(full) == "cannot write /x/run/table.csv: the disk is full; free some space and rerun " \
                                  "(finished work is resumed)"


def test_second_run_is_refused_naming_the_owner(tmp_path: Path) -> None:
    owner = hold_lock(tmp_path)
    try:
        with pytest.raises(RunLockedError) as err:
            with run_lock(tmp_path):
                pass
        msg = str(err.value)
        assert f"pid {owner.pid} on host {socket.gethostname()}" in msg and "\n" not in msg
    finally:
        owner.kill()
        owner.wait()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    owner = hold_lock(tmp_path)
    owner.send_signal(signal.SIGKILL)                             # dies holding the lock
    owner.wait()
    assert (tmp_path / ".run.lock").is_file()
    with caplog.at_level(logging.WARNING), run_lock(tmp_path) as lock:
        assert str(os.getpid()) in lock.read_text()
    assert f"stale lock {tmp_path / '.run.lock'} of pid {owner.pid}" in caplog.text
    assert not (tmp_path / ".run.lock").exists()                  # released at the end
