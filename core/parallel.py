"""How this process starts worker processes (DataLoader decode workers, the demo generator's pool)."""
from __future__ import annotations

import sys


def worker_context() -> str | None:
    """Start method for worker processes: fork (the default, fastest) unless JAX is loaded in this process (e.g.
    the pipeline or a test session that already trained a VAE): JAX runs threads and forking them can deadlock,
    so then workers come from a clean forkserver process instead."""
    return "forkserver" if "jax" in sys.modules else None
