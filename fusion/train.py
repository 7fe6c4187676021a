"""Generic optax training loop: AdamW + schedule + clipping, jitted steps, early stopping, resumable checkpoints.

Used by the VAE (:mod:`fusion.model`) and the survival head. A model supplies

``loss_fn(params, batch, rng, step) -> (scalar loss, {name: scalar metric})``

where ``batch`` is a dict of arrays with the batch axis first and always holds ``weight`` (B,):
1 for real rows, 0 for the rows that pad the last batch of an epoch (the loss must weight rows by
it). Batches are sharded over all local devices (``jax.sharding`` mesh axis ``"data"``), params are
replicated, so the same code runs on one CPU, a GPU or a TPU slice, and over the devices of several
processes (:mod:`fusion.distributed`; only process 0 writes checkpoints).

Determinism: epoch ``e`` visits rows in ``np.random.default_rng([seed, e]).permutation``; the step's
PRNG key is ``fold_in(PRNGKey(seed), step)``. A checkpoint holds params, optimizer state, the best
params and the early-stopping state, so training N epochs, saving, loading and training N more gives
the same parameters as training 2N epochs in one go.

Compiled steps are shared between :func:`fit` calls with an equal ``loss_fn`` (``==``/``hash``, e.g. a
frozen dataclass holding a Flax module), equal training config and step count, so the K folds of a
cross-validation compile once instead of K times.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import serialization
from flax.training.train_state import TrainState
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from core.safeio import atomic_path, write_text
from fusion.distributed import is_primary
from fusion.train_config import TrainConfig

log = logging.getLogger(__name__)

Batch = dict[str, Any]
LossFn = Callable[[Any, Batch, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
BATCH_MULTIPLE = 8      # batch sizes are multiples of this, whatever the device count (see device_batch_size)
CHECKPOINT_FILE = "checkpoint.msgpack"   # state, best params and meta in one file: replaced as one atomic unit
META_FILE = "meta.json"                  # a human-readable copy of the meta (never read back)


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best params (by val loss) and the per-epoch history."""

    params: Any
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = float("inf")
    epochs_run: int = 0
    stopped_early: bool = False
    finished: bool = False           # False when ``stop_after_epochs`` interrupted the run
    epoch_seconds: list[float] = field(default_factory=list)   # wall time of each epoch of this call


def make_optimizer(cfg: TrainConfig, *, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW with linear warmup and cosine decay (or constant) learning rate."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, max(total_steps, warmup + 1))
    else:
        lr = optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, max(warmup, 1)),
                                   optax.constant_schedule(cfg.learning_rate)], [warmup])
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adamw(lr, weight_decay=cfg.weight_decay))


def data_mesh() -> Mesh:
    """1-D mesh over all local devices, axis ``"data"``."""
    return Mesh(np.array(jax.devices()), ("data",))


def device_batch_size(batch_size: int, n_rows: int, n_devices: int) -> int:
    """Batch size used: ``min(batch_size, n_rows)`` rounded up to a multiple of ``lcm(BATCH_MULTIPLE, n_devices)``.

    Not of the device count alone: with 1, 2, 4 or 8 devices the batches (and so the PRNG draws,
    whose values depend on the array shape) are the same, so training on 4 devices gives the
    parameters of training on 1 (up to the order of the cross-device sums) and a checkpoint saved on
    one device count resumes on another.
    """
    multiple = math.lcm(BATCH_MULTIPLE, n_devices)
    b = max(1, min(batch_size, n_rows))
    return -(-b // multiple) * multiple


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Host arrays (the same in every process) -> JAX arrays laid out by ``sharding`` over every process's devices.

    Each process supplies only the shards on its own devices, so the same call serves one process and
    a multi-host run (:mod:`fusion.distributed`).
    """
    def put(a: Any) -> jax.Array:
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree_util.tree_map(put, tree)


def iterate_batches(arrays: Batch, *, batch_size: int, order: np.ndarray) -> Any:
    """Yield host batches in ``order``; the last one is padded with weight-0 copies of row ``order[0]``."""
    n = len(order)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        weight = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            weight[len(idx):] = 0.0
            idx = np.concatenate([idx, np.full(batch_size - len(idx), order[0])])
        batch = {k: v[idx] for k, v in arrays.items()}
        batch["weight"] = weight
        yield batch


def _n_rows(arrays: Batch) -> int:
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"all arrays must share the leading axis, got {sizes}")
    return next(iter(sizes.values()))


class CheckpointMismatch(ValueError):
    """A checkpoint in the folder belongs to another run (other seed, data, model or training config)."""


def fit(loss_fn: LossFn, params: Any, train: Batch, val: Batch | None, *, cfg: TrainConfig, seed: int,
        checkpoint_dir: str | Path | None = None, stop_after_epochs: int | None = None,
        eval_fn: LossFn | None = None, run_id: dict | None = None, progress: bool = True) -> FitResult:
    """Train ``params`` on ``train`` (dict of (N, ...) numpy arrays), early-stopping on ``val``.

    ``checkpoint_dir``: state is saved there every ``cfg.checkpoint_every`` epochs and at the end,
    and an existing checkpoint of the same run is resumed (same seed, training rows, batch size,
    training config and ``run_id``, a JSON-able description of the model and data; otherwise
    :class:`CheckpointMismatch`). ``stop_after_epochs``: run at most this
    many epochs in this call (time-budgeted or preemptible jobs; resume later from the checkpoint).
    ``eval_fn`` (default ``loss_fn``) scores ``val`` with a fixed PRNG key.
    """
    mesh = data_mesh()
    n_dev = mesh.devices.size
    n_train = _n_rows(train)
    bs = device_batch_size(cfg.batch_size, n_train, n_dev)
    steps_per_epoch = -(-n_train // bs)
    total_steps = steps_per_epoch * cfg.max_epochs
    step_args = (loss_fn, eval_fn or loss_fn, cfg.model_dump_json(), total_steps)
    try:
        tx, train_step, eval_step = _compiled_steps(*step_args)
    except TypeError:                                # an unhashable loss: compile for this run only
        tx, train_step, eval_step = _compiled_steps.__wrapped__(*step_args)
    repl = NamedSharding(mesh, PartitionSpec())
    rows = NamedSharding(mesh, PartitionSpec("data"))
    state = TrainState.create(apply_fn=None, params=params, tx=tx)
    fingerprint = {"seed": seed, "n_train": n_train, "batch_size": bs, "train": cfg.model_dump(mode="json"),
                   "run": json.loads(json.dumps(run_id))}   # as stored: tuples become lists

    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    best_params, meta = state.params, {"epoch": 0, "best_val": float("inf"), "best_epoch": -1, "bad_epochs": 0,
                                       "history": [], "stopped_early": False}
    if ckpt is not None and (ckpt / CHECKPOINT_FILE).is_file():
        state, best_params, meta = load_checkpoint(ckpt, state, expect=fingerprint)
        log.info("resumed %s at epoch %d", ckpt, meta["epoch"])
    state, best_params = to_global((state, best_params), repl)
    key = jax.random.PRNGKey(seed)
    eval_key = jax.random.fold_in(key, 2**31 - 1)   # fixed; no training step reaches this index

    def evaluate(p: Any, arrays: Batch) -> dict[str, float]:
        n = _n_rows(arrays)
        vbs = device_batch_size(cfg.batch_size, n, n_dev)
        sums: dict[str, float] = {}
        for batch in iterate_batches(arrays, batch_size=vbs, order=np.arange(n)):
            w = float(batch["weight"].sum())
            loss, metrics = eval_step(p, to_global(batch, rows), eval_key, state.step)
            for k, v in {"loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v) * w
        return {k: v / n for k, v in sums.items()}

    start = meta["epoch"]
    seconds: list[float] = []
    end = cfg.max_epochs if stop_after_epochs is None else min(cfg.max_epochs, start + stop_after_epochs)
    done = meta["stopped_early"] or start >= cfg.max_epochs
    bar = tqdm(range(start, end), desc="train", unit="epoch", disable=not progress or done)
    for epoch in bar:
        if done:
            break
        t_epoch = time.perf_counter()
        order = np.random.default_rng([seed, epoch]).permutation(n_train)
        losses, weights = [], []
        for batch in iterate_batches(train, batch_size=bs, order=order):
            state, loss, _ = train_step(state, to_global(batch, rows), key)
            losses.append(loss)              # no host sync here: dispatch overlaps the next batch's gathering
            weights.append(float(batch["weight"].sum()))
        train_loss = float(np.dot(np.asarray(jax.device_get(losses), np.float64), weights) / sum(weights))
        record = {"epoch": epoch + 1, "step": int(state.step), "train_loss": train_loss}
        seconds.append(time.perf_counter() - t_epoch)
        if val is not None and _n_rows(val):
            record.update({f"val_{k}": v for k, v in evaluate(state.params, val).items()})
        current = record.get("val_loss", record["train_loss"])
        meta["history"].append(record)
        meta["epoch"] = epoch + 1
        if current < meta["best_val"] - cfg.min_delta:
            meta.update(best_val=current, best_epoch=epoch + 1, bad_epochs=0)
            best_params = state.params
        else:
            meta["bad_epochs"] += 1
        if meta["bad_epochs"] >= cfg.patience:
            meta["stopped_early"] = done = True
            log.info("early stop at epoch %d (best epoch %d, val %.4f)", epoch + 1, meta["best_epoch"], meta["best_val"])
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{current:.3f}")
        if ckpt is not None and is_primary() and ((epoch + 1) % cfg.checkpoint_every == 0 or done or epoch + 1 == end):
            save_checkpoint(ckpt, state, best_params, meta, fingerprint=fingerprint)
    finished = meta["stopped_early"] or meta["epoch"] >= cfg.max_epochs
    return FitResult(params=jax.device_get(best_params), history=list(meta["history"]), best_epoch=meta["best_epoch"],
                     best_val=meta["best_val"], epochs_run=meta["epoch"], stopped_early=meta["stopped_early"],
                     finished=finished, epoch_seconds=seconds)


@lru_cache(maxsize=8)
def _compiled_steps(loss_fn: LossFn, score_fn: LossFn, cfg_json: str, total_steps: int
                    ) -> tuple[optax.GradientTransformation, Callable, Callable]:
    """``(optimizer, train_step, eval_step)`` for a loss and training config, cached so equal runs share programs.

    PRNG keys are arguments (not closure constants), so runs differing only in seed share them too.
    """
    tx = make_optimizer(TrainConfig.model_validate_json(cfg_json), total_steps=total_steps)

    @jax.jit
    def train_step(st: TrainState, batch: Batch, base: jax.Array) -> tuple[TrainState, jax.Array, dict[str, jax.Array]]:
        rng = jax.random.fold_in(base, st.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params, batch, rng, st.step)
        return st.apply_gradients(grads=grads), loss, metrics

    @jax.jit
    def eval_step(p: Any, batch: Batch, rng: jax.Array, step: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return score_fn(p, batch, rng, step)

    return tx, train_step, eval_step


def save_checkpoint(directory: str | Path, state: TrainState, best_params: Any, meta: dict, *,
                    fingerprint: dict) -> Path:
    """Write ``checkpoint.msgpack`` (params, optimizer state, step, best params and meta) as one atomic file.

    A process killed at any point leaves the previous checkpoint or the new one, never a mix;
    ``meta.json`` is a readable copy written afterwards.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full_meta = {**meta, "fingerprint": fingerprint}
    blob = serialization.msgpack_serialize({"state": serialization.to_state_dict(jax.device_get(state)),
                                            "best_params": serialization.to_state_dict(jax.device_get(best_params)),
                                            "meta": json.dumps(full_meta)})
    with atomic_path(directory / CHECKPOINT_FILE) as tmp:
        tmp.write_bytes(blob)
    write_text(directory / META_FILE, json.dumps(full_meta, indent=1))
    return directory


def load_checkpoint(directory: str | Path, state: TrainState, *, expect: dict | None = None) -> tuple[TrainState, Any, dict]:
    """Read a checkpoint into the structure of ``state`` -> ``(state, best_params, meta)``.

    ``expect``: the run's fingerprint (seed, data size, training config); a checkpoint of a
    different run raises ValueError instead of silently mixing two runs.
    """
    directory = Path(directory)
    raw = serialization.msgpack_restore((directory / CHECKPOINT_FILE).read_bytes())
    meta = json.loads(raw["meta"])
    stored = meta.pop("fingerprint", None)
    if expect is not None and stored != expect:
        differ = (sorted(k for k in stored.keys() | expect.keys() if stored.get(k) != expect.get(k))
                  if isinstance(stored, dict) and isinstance(expect, dict) else "fingerprint")
        raise CheckpointMismatch(f"checkpoint {directory} belongs to another run (differs in {differ}); "
                                 "use a fresh --out folder or delete the checkpoint")
    template = jax.device_get(state)
    return (serialization.from_state_dict(template, raw["state"]),
            serialization.from_state_dict(template.params, raw["best_params"]), meta)


__all__ = ["CheckpointMismatch", "FitResult", "LossFn", "fit", "make_optimizer", "data_mesh", "device_batch_size", "iterate_batches", "to_global",
           "save_checkpoint", "load_checkpoint"]
