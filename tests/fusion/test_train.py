"""The generic training loop: resume == uninterrupted run, early stopping, padded last batch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.safeio import FAULT_ENV
from fusion.train import fit, iterate_batches
from fusion.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


def regression_problem(n: int = 90, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    params = {"w": jnp.zeros(4), "b": jnp.zeros(())}

    def loss_fn(p, batch, rng_key, step):
        noise = 1e-3 * jax.random.normal(rng_key, ())               # uses the step's PRNG key
        err = batch["x"] @ p["w"] + p["b"] + noise - batch["y"]
        mse = (batch["weight"] * err ** 2).sum() / batch["weight"].sum()
        return mse, {"mse": mse}
    return loss_fn, params, {"x": x[:60], "y": y[:60]}, {"x": x[60:], "y": y[60:]}


CFG = TrainConfig(learning_rate=0.05, batch_size=16, max_epochs=6, patience=100, warmup_steps=3, checkpoint_every=1)


def test_resume_continues_the_same_run(tmp_path) -> None:
    loss_fn, params, train, val = regression_problem()
    straight = fit(loss_fn, params, train, val, cfg=CFG, seed=1, progress=False)
    first = fit(loss_fn, params, train, val, cfg=CFG, seed=1, checkpoint_dir=tmp_path, stop_after_epochs=3,
                progress=False)
    assert not first.finished and first.epochs_run == 3
    resumed = fit(loss_fn, params, train, val, cfg=CFG, seed=1, checkpoint_dir=tmp_path, progress=False)
    assert resumed.finished and resumed.epochs_run == 6
    for k in params:
        np.testing.assert_array_equal(np.asarray(resumed.params[k]), np.asarray(straight.params[k]))
    assert resumed.history == straight.history
    assert straight.history[-1]["val_loss"] < straight.history[0]["val_loss"]
    with pytest.raises(ValueError, match="another run"):
        fit(loss_fn, params, train, val, cfg=CFG, seed=2, checkpoint_dir=tmp_path, progress=False)


def test_early_stopping_returns_best_params() -> None:
    loss_fn, params, train, val = regression_problem()
    cfg = CFG.model_copy(update={"learning_rate": 2.0, "max_epochs": 40, "patience": 2, "schedule": "constant"})
    res = fit(loss_fn, params, train, val, cfg=cfg, seed=0, progress=False)
    vals = [h["val_loss"] for h in res.history]
    assert res.stopped_early and res.epochs_run < 40
    assert res.best_val == min(vals) and res.best_epoch == int(np.argmin(vals)) + 1
    assert res.epochs_run - res.best_epoch == 2


def test_last_batch_is_padded_with_zero_weight() -> None:
    arrays = {"x": np.arange(10)}
    batches = list(iterate_batches(arrays, batch_size=4, order=np.arange(10)[::-1]))
    assert [b["weight"].sum() for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate([b["x"][b["weight"] > 0] for b in batches])) == list(range(10))


@pytest.mark.parametrize("hit", [2, 3, 4])
def test_kill_mid_checkpoint_resumes_to_the_same_run(hit: int, tmp_path) -> None:
    """SIGKILL at the K-th atomic write of the checkpoint folder (K=3: the epoch-2 checkpoint complete under its
    temporary name, not renamed in; K=2, 4: the checkpoint renamed in, its readable meta.json not yet): the rerun
    resumes from the last whole checkpoint and ends with the parameters and history of an uninterrupted run."""
    loss_fn, params, train, val = regression_problem()
    straight = fit(loss_fn, params, train, val, cfg=CFG, seed=1, progress=False)
    env = {**os.environ, FAULT_ENV: f"atomic-write:{hit}", "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    resumed = fit(loss_fn, params, train, val, cfg=CFG, seed=1, checkpoint_dir=tmp_path, progress=False)
    assert resumed.finished and resumed.history == straight.history
    for k in params:
        np.testing.assert_array_equal(np.asarray(resumed.params[k]), np.asarray(straight.params[k]))


if __name__ == "__main__":          # the process the kill test runs (and kills) with a checkpoint folder
    _loss, _params, _train, _val = regression_problem()
    fit(_loss, _params, _train, _val, cfg=CFG, seed=1, checkpoint_dir=sys.argv[1], progress=False)
