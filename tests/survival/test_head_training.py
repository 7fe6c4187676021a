"""Survival-head training internals: token dropout, and one compiled training step shared by the K folds."""
from __future__ import annotations

import jax
import numpy as np

from fusion.config import TrainConfig
from fusion.survival import HeadLoss, _drop_tokens
from fusion.survival_head import SurvivalHead
from fusion.train import _compiled_steps, fit


def _batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"clin_values": rng.normal(size=(n, 3)).astype(np.float32),
            "clin_mask": (rng.random((n, 3)) < 0.7).astype(np.float32),
            "latent": rng.normal(size=(n, 2)).astype(np.float32), "latent_mask": np.ones(n, np.float32),
            "cxr": rng.normal(size=(n, 2, 4)).astype(np.float32), "cxr_mask": np.ones((n, 2), np.float32),
            "cxr_days": np.zeros((n, 2), np.float32), "cxr_days_known": np.ones((n, 2), np.float32),
            "time": rng.exponential(10.0, n).astype(np.float32), "event": (rng.random(n) < 0.5).astype(np.float32)}


def test_token_dropout_hides_present_tokens_only_at_its_rate():
    batch = _batch(4000, 0)
    out = _drop_tokens({k: jax.numpy.asarray(v) for k, v in batch.items()}, jax.random.PRNGKey(1), 0.4)
    for name in ("clin_mask", "latent_mask", "cxr_mask"):
        before, after = batch[name] > 0, np.asarray(out[name]) > 0
        assert not (after & ~before).any(), name                     # an absent token never appears
        kept = after[before].mean()
        assert abs(kept - 0.6) < 0.02, (name, kept)
    assert np.array_equal(np.asarray(out["clin_values"]), batch["clin_values"])


def test_folds_share_one_compiled_training_step():
    head = SurvivalHead(variable_of_column=(0, 1, 2), n_variables=3, d_model=8, d_state=4)
    cfg = TrainConfig(batch_size=32, max_epochs=2, warmup_steps=1)
    before = _compiled_steps.cache_info()
    for fold in range(3):                      # same shapes, a fresh but equal loss object per fold
        train, val = _batch(64, fold), _batch(16, 10 + fold)
        params = jax.jit(head.init)(jax.random.PRNGKey(fold), {k: v[:2] for k, v in train.items()})["params"]
        loss = HeadLoss(SurvivalHead(variable_of_column=(0, 1, 2), n_variables=3, d_model=8, d_state=4), "cox", "efron", 0.2)
        fit(loss, params, train, val, cfg=cfg, seed=fold, progress=False,
            eval_fn=HeadLoss(head, "cox", "efron"))
    after = _compiled_steps.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 2
