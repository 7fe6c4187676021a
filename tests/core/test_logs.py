"""Clean logs: a repeated warning is shown once and counted, JAX's missing-TPU INFO line is gone, progress
bars are off when stderr is not a terminal, and decode workers are not forked from a process running JAX."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import tqdm.std

from core.logs import RepeatFilter, progress_to_terminal_only

REPO = Path(__file__).resolve().parents[2]


def test_repeated_warning_is_shown_once_and_counted() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append          # type: ignore[method-assign]
    repeats = RepeatFilter()
    handler.addFilter(repeats)
    log = logging.getLogger("test_logs.fusion.clinical")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for _ in range(5):       # once per fold
        log.warning("clinical column '%s' has no observed training value; it will stay masked", "lactate")
    log.warning("another message")
    log.error("errors always pass")
    log.error("errors always pass")
    repeats.summary()
    assert [r.getMessage() for r in records] == [
        "clinical column 'lactate' has no observed training value; it will stay masked", "another message",
        "errors always pass", "errors always pass",
        "clinical column 'lactate' has no observed training value; it will stay masked (repeated 5 times in all)"]


def test_progress_bars_only_on_a_terminal(capsys) -> None:
    original = tqdm.std.tqdm.__init__
    try:
        progress_to_terminal_only()          # pytest's stderr is not a terminal
        bar = tqdm.std.tqdm(range(3), disable=False)
        assert bar.disable
        list(bar)
    finally:
        tqdm.std.tqdm.__init__ = original
    assert "it/s" not in capsys.readouterr().err


def test_cli_shell_silences_the_missing_tpu_line() -> None:
    code = "from core import cli; cli.setup_logging(); import jax; jax.devices()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": ""})
    assert proc.returncode == 0, proc.stderr
    assert "libtpu" not in proc.stderr and "backend 'tpu'" not in proc.stderr


def test_no_fork_after_jax() -> None:
    code = ("import sys; from core.parallel import worker_context; a = worker_context(); import jax; "
            "print(a, worker_context())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.split() == ["None", "forkserver"], proc.stderr


def test_a_record_passes_every_handler_that_shares_the_filter() -> None:
    """Two handlers (terminal and log file) with the shared filter both get the first record, neither the repeat."""
    import io

    from core.logs import RepeatFilter

    flt = RepeatFilter()
    streams = [io.StringIO(), io.StringIO()]
    log = logging.getLogger("test.two_handlers")
    log.propagate = False
    for stream in streams:
        handler = logging.StreamHandler(stream)
        handler.addFilter(flt)
        log.addHandler(handler)
    log.warning("same")
    log.warning("same")
    assert [s.getvalue() for s in streams] == ["same\n", "same\n"]
    assert flt.seen[("test.two_handlers", logging.WARNING, "same")] == 2
