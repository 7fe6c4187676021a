"""Multi-host JAX: one training run over the devices of several processes (a SLURM job, a TPU pod).

Every process loads the same data, builds the same batches and supplies the shards that live on its
own devices (:func:`fusion.train.fit` makes its arrays with ``jax.make_array_from_callback``); the
gradients are reduced across processes by XLA's collectives (gloo on CPU). Only process 0 writes
outputs and checkpoints (:func:`is_primary`, :func:`output_folder`); checkpoints must be on a file
system every process sees. JAX is imported when a function runs, not with the module: the config
model is read by the pipeline before the embedders stage, whose DataLoader workers start slowly (forkserver)
once JAX is loaded.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pydantic import Field

from core.config import StrictModel

log = logging.getLogger(__name__)


class DistributedConfig(StrictModel):
    """``fusion.distributed``: join a multi-process JAX run (off by default: one process, its local devices)."""

    enabled: bool = Field(False, description="call jax.distributed.initialize before training")
    coordinator_address: str | None = Field(
        None, description="host:port of process 0; null = detected from the cluster (SLURM, TPU pod) by JAX")
    num_processes: int | None = Field(None, ge=1, description="null = detected from the cluster")
    process_id: int | None = Field(None, ge=0, description="null = detected from the cluster")
    cpu_collectives: str = Field("gloo", description="collectives between CPU processes (jax_cpu_collectives_implementation)")


def initialize(cfg: DistributedConfig) -> None:
    """``jax.distributed.initialize`` from ``cfg`` (once per process; no-op when disabled or already done)."""
    import jax

    if not cfg.enabled or jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    jax.distributed.initialize(coordinator_address=cfg.coordinator_address, num_processes=cfg.num_processes,
                               process_id=cfg.process_id)
    log.info("JAX process %d of %d: %d local of %d devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())


def is_primary() -> bool:
    """True in the process that writes outputs (process 0; the only one without multi-host)."""
    import jax

    return jax.process_index() == 0


def output_folder(out: Path) -> Path:
    """``out`` in process 0; a scratch folder elsewhere (the other processes compute the same, write nothing shared)."""
    import jax

    if is_primary():
        return Path(out)
    return Path(tempfile.mkdtemp(prefix=f"cxr-fusion-process{jax.process_index()}-"))
