"""Readable logs: a warning repeated (once per fold, per seed...) is shown once and counted, progress bars
go to a terminal only.

:class:`RepeatFilter` sits on the log handlers: the first record of a given (logger, level, message) passes,
later identical ones are counted and dropped; :meth:`RepeatFilter.summary` logs one line per repeated message
with its count (the CLI shell calls it at the end of a command). :func:`progress_to_terminal_only` disables
tqdm bars when stderr is not a terminal (a log file, CI): there they would fill the log with redrawn lines.
"""
from __future__ import annotations

import logging
import sys
from collections import Counter


class RepeatFilter(logging.Filter):
    """Let the first of identical WARNING-or-lower records through; count the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[tuple[str, int, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING or getattr(record, "repeat_summary", False):
            return True
        verdict = getattr(record, "_repeat_verdict", None)   # decided once per record: every handler
        if verdict is None:                                   # carrying the filter shows the same records
            key = (record.name, record.levelno, record.getMessage())
            self.seen[key] += 1
            verdict = record._repeat_verdict = self.seen[key] == 1
        return verdict

    def summary(self) -> None:
        """One line per message that was repeated, with how often, then forget them."""
        for (name, level, message), count in sorted(self.seen.items()):
            if count > 1:
                logging.getLogger(name).log(level, "%s (repeated %d times in all)", message, count,
                                            extra={"repeat_summary": True})
        self.seen.clear()


REPEATS = RepeatFilter()


def deduplicate(handler: logging.Handler) -> logging.Handler:
    """Attach the shared :data:`REPEATS` filter to ``handler`` (idempotent); returns it."""
    if REPEATS not in handler.filters:
        handler.addFilter(REPEATS)
    return handler


def progress_to_terminal_only() -> None:
    """Disable every tqdm progress bar when stderr is not a terminal (bars on a terminal are unchanged)."""
    if sys.stderr.isatty():
        return
    import tqdm.std

    if getattr(tqdm.std.tqdm.__init__, "_terminal_only", False):
        return
    init = tqdm.std.tqdm.__init__

    def quiet_init(self, *args, **kwargs) -> None:
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    quiet_init._terminal_only = True  # type: ignore[attr-defined]
    tqdm.std.tqdm.__init__ = quiet_init
