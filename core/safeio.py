"""Crash-safe output shared by every stage: write-temp-then-rename, output-folder checks, one run per folder.

* :func:`atomic_path` (and :func:`write_text`, :func:`write_json`, :func:`write_csv`, :func:`write_parquet`):
  a file is written under a temporary name in the same folder and renamed over the target, so a process
  killed at any point leaves either the old file or the new one, never a torn one.
* :func:`check_output_dir`: the folder can be created and written and its disk has room, checked before
  any heavy work; every problem is one :class:`OutputPathError` line.
* :func:`run_lock`: a lock file with the owner's pid and host; a second run into the same folder is refused
  with one line naming the owner, and a lock whose process is dead (same host) is taken over with a warning.
* :func:`fault_point`: a fault-injection hook for the kill tests; ``CXR_FUSION_FAULT=NAME`` (or
  ``NAME:K`` for the K-th time the point is reached) SIGKILLs the process there.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .config import ConfigError

log = logging.getLogger(__name__)

FAULT_ENV = "CXR_FUSION_FAULT"
LOCK_NAME = ".run.lock"
MIN_FREE_MB = 100
_fault_hits: dict[str, int] = {}


class OutputPathError(ConfigError):
    """An output path that cannot be used (a file, not writable, disk full); the message is one line."""


class RunLockedError(ConfigError):
    """Another live run owns the output folder (the message names its pid and host)."""


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``$CXR_FUSION_FAULT`` is ``name`` (or ``name:K``, K-th hit); tests only."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if _fault_hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------ atomic writes
@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only when the block finishes.

    Temporaries that a killed writer left behind for the same target are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f".{path.name}.tmp-*"):
        old.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        fault_point("atomic-write")                 # the new content is complete, the old one still in place
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str))


def write_csv(df: pd.DataFrame, path: str | Path, **kwargs: Any) -> Path:
    """``df.to_csv(path, **kwargs)`` atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(path)


def write_parquet(df: pd.DataFrame, path: str | Path, **kwargs: Any) -> Path:
    """``df.to_parquet(path, **kwargs)`` atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, **kwargs)
    return Path(path)


def relative_path(path: str | Path | None, *, root: str | Path) -> str | None:
    """``path`` relative to the run folder ``root`` (POSIX), or only its last part when it lies outside it.

    Outputs name files this way, never by a path of the machine that wrote them.
    """
    if path is None:
        return None
    p, r = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return p.relative_to(r).as_posix() or "."
    except ValueError:
        return p.name


# ------------------------------------------------------------------------------------------ output folders
def check_output_dir(path: str | Path, *, what: str = "output folder", min_free_mb: int = MIN_FREE_MB) -> Path:
    """Create ``path`` if needed and check it is a writable folder with ``min_free_mb`` MB free; returns it.

    Raises :class:`OutputPathError` (one line) when an existing part of the path is a file, the folder
    cannot be created or written, or its disk is (nearly) full.
    """
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputPathError(f"{what} {path}: {existing} is a file, not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputPathError(f"{what} {path} is not writable ({exc.strerror or exc}); "
                              "fix its permissions or choose another path") from None
    free_mb = shutil.disk_usage(path).free / 2**20
    if free_mb < min_free_mb:
        raise OutputPathError(f"{what} {path}: only {free_mb:.0f} MB free on its disk (need at least {min_free_mb} MB); "
                              "free some space or choose another disk")
    return path


def os_error_line(exc: OSError) -> str:
    """One line for an OSError met while writing outputs (disk full, permissions, a file where a folder is)."""
    where = exc.filename or "an output file"
    hint = {errno.ENOSPC: "the disk is full; free some space and rerun (finished work is resumed)",
            errno.EDQUOT: "the disk quota is exceeded; free some space and rerun",
            errno.EACCES: "permission denied; fix the permissions or choose another --out",
            errno.EROFS: "the file system is read-only; choose another --out",
            errno.ENOTDIR: "a part of the path is a file, not a folder; choose another --out"}.get(
        exc.errno, exc.strerror or str(exc))
    return f"cannot write {where}: {hint}"


# ------------------------------------------------------------------------------------------ run lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_owner(lock: Path) -> dict[str, Any] | None:
    try:
        return json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}                                          # being written by its owner right now


def _acquire(lock: Path, me: dict[str, Any]) -> None:
    for _ in range(20):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            if owner is None:
                continue                                   # released meanwhile: try again
            pid, host = owner.get("pid"), owner.get("host")
            if isinstance(pid, int) and host == me["host"] and not _pid_alive(pid):
                log.warning("taking over the stale lock %s of pid %d on %s (that process is gone)", lock, pid, host)
                try:                                       # only one of several contenders wins this rename
                    os.replace(lock, lock.with_name(f"{lock.name}.stale-{me['pid']}"))
                    lock.with_name(f"{lock.name}.stale-{me['pid']}").unlink()
                except FileNotFoundError:
                    pass
                continue
            raise RunLockedError(f"{lock.parent} is in use by another run (pid {pid} on host {host}, since "
                                 f"{owner.get('started')}); wait for it to finish or choose another --out") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        return
    raise RunLockedError(f"could not take the lock {lock}; another run keeps taking it. Choose another --out")


@contextmanager
def run_lock(folder: str | Path, *, name: str = LOCK_NAME, what: str = "--out") -> Iterator[Path]:
    """Hold ``folder/name`` (pid, host, start time) for the duration of the block; one run per folder.

    The folder is checked (and created) first with :func:`check_output_dir`.
    """
    from .provenance import now_iso

    folder = check_output_dir(folder, what=what)
    lock = folder / name
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": now_iso()}
    _acquire(lock, me)
    try:
        yield lock
    finally:
        if _read_owner(lock) == me:
            lock.unlink(missing_ok=True)


@contextmanager
def locked_output(folder: str | Path, *, name: str = LOCK_NAME, what: str = "--out") -> Iterator[Path]:
    """CLI helper: :func:`run_lock` on ``folder``; a locked or unusable folder, or an OSError while writing
    (disk full, permissions), ends the command with one ``error:`` line and exit status 2."""
    try:
        with run_lock(folder, name=name, what=what) as lock:
            yield lock
    except (OutputPathError, RunLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
