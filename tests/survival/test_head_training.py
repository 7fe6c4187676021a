"""Survival-head training internals: token dropout, and one compiled training step shared by the K folds."""
from __future__ import annotations

import jax
import numpy as np

from fusion.survival.network import SurvivalHead
from fusion.survival.objective import HeadLoss, _drop_tokens
from fusion.train import _compiled_steps, fit
from fusion.train_config import TrainConfig


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


def test_linear_term_start_is_the_cox_fit(rossi_xte):
    """With penalty ~0 the exact start of the head's linear term is lifelines' CoxPH (Efron) on rossi."""
    import pandas as pd
    from lifelines import CoxPHFitter

    from fusion.survival.linear import fit_linear_term

    x, t, e = rossi_xte
    x = (x - x.mean(0)) / x.std(0)
    head = SurvivalHead(variable_of_column=tuple(range(7)), n_variables=7, use_latent=False, use_cxr=False)
    train = {"clin_values": x.astype(np.float32), "clin_mask": np.ones_like(x, np.float32),
             "time": t.astype(np.float32), "event": e.astype(np.float32)}
    fitted = fit_linear_term(head, HeadLoss, "cox", "efron", train, penalty=1e-8, max_iter=500)
    ref = CoxPHFitter().fit(pd.DataFrame(x).assign(t=t, e=e), "t", "e").params_.to_numpy()
    np.testing.assert_allclose(fitted["kernel"][:7, 0], ref, atol=2e-3)
    assert np.abs(fitted["kernel"][7:, 0]).max() < 1e-6             # constant presence flags: no information


def test_head_starts_as_its_linear_term():
    """With the linear term the token network's output layer starts at 0."""
    head = SurvivalHead(variable_of_column=(0, 1, 2), n_variables=3, d_model=8, d_state=4)
    batch = _batch(16, 0)
    params = jax.jit(head.init)(jax.random.PRNGKey(0), batch)["params"]
    full = np.asarray(head.apply({"params": params}, batch))
    linear = np.asarray(head.clone(mixer="linear").apply({"params": {"linear": params["linear"]}}, batch))
    np.testing.assert_allclose(full, linear, atol=1e-6)
