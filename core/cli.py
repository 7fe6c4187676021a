"""The shell every command-line entry point runs in: one error shape, one log format, quiet libraries.

A stage CLI builds its ``argparse`` parser with :func:`parser` and hands its body to :func:`run`::

    def main(argv=None) -> int:
        ap = cli.parser("python -m clustering.run", __doc__)
        ap.add_argument(...)
        return cli.run(ap, _main, argv)

:func:`run` parses the arguments, sets up logging, calls ``body(args)`` and turns a *user error*
(a bad config, a missing or wrong input path, an unknown model, missing weights: every error class of
the stages derives from ``ValueError``, plus ``FileNotFoundError``/``NotADirectoryError``/
``PermissionError``) into one ``error: ...`` line on stderr and exit code 2. ``--debug`` shows the
traceback instead. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from .logs import REPEATS, deduplicate, progress_to_terminal_only

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
EXIT_USER_ERROR = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# INFO lines libraries print on every run that tell the user nothing actionable (JAX: "Unable to initialize
# backend 'tpu'" on any machine without a TPU)
QUIET_LOGGERS = ("jax._src.xla_bridge",)


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` named ``prog`` (as the user types it), described by the first line of ``doc``,
    with ``--debug`` and ``--log-level``."""
    first = (doc or "").strip().splitlines()
    ap = argparse.ArgumentParser(prog=prog, description=first[0] if first else None)
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error and DEBUG logs")
    ap.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                    help="log level on the terminal (default INFO)")
    return ap


def setup_logging(*, level: str = "INFO", debug: bool = False) -> None:
    """``level`` (DEBUG with ``debug``) to stderr in one format; repeated warnings shown once and counted at the
    end (:mod:`core.logs`); libraries' noise lines silenced; progress bars only on a terminal."""
    logging.basicConfig(level=logging.DEBUG if debug else level, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        deduplicate(handler)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    progress_to_terminal_only()


def error_line(exc: BaseException) -> str:
    """``error: <message>`` on one line (newlines of multi-line messages joined with '; ')."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    parts = [p.strip() for p in text.splitlines() if p.strip()]
    return "error: " + "; ".join(parts)


def run(ap: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
        argv: list[str] | None = None) -> int:
    """Parse ``argv``, set up logging and run ``body(args)``; returns the exit code (0, or 2 on a user error)."""
    args = ap.parse_args(argv)
    setup_logging(level=args.log_level, debug=args.debug)
    try:
        code = body(args)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(error_line(exc), file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        REPEATS.summary()
    return int(code or 0)
