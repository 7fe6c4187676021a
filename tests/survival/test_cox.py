"""Cox partial likelihood vs lifelines (Efron) and a numpy reference (Breslow); masks, order, no events."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from lifelines.utils import concordance_index

from fusion.survival.cox import bin_index, binary_outcome_loss, cox_loss, cox_partial_loglik, discrete_hazard_loss, time_bins


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def breslow_reference(eta: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Textbook Breslow log partial likelihood: a loop over distinct event times."""
    ll = 0.0
    for t in np.unique(time[event == 1]):
        dead = (time == t) & (event == 1)
        ll += eta[dead].sum() - dead.sum() * np.log(np.exp(eta[time >= t]).sum())
    return float(ll)


def test_efron_equals_lifelines_at_fitted_coefficients(rossi_fit, rossi_xte):
    x, t, e = rossi_xte
    assert len(np.unique(t[e == 1])) < int(e.sum())          # the table really has tied event times
    ll = cox_partial_loglik(jnp.asarray(x @ rossi_fit.params_.to_numpy()), jnp.asarray(t), jnp.asarray(e))
    assert float(ll) == pytest.approx(rossi_fit.log_likelihood_, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_efron_equals_lifelines_at_other_coefficients(rossi, rossi_fit, rossi_xte, seed):
    x, t, e = rossi_xte
    beta = rossi_fit.params_.to_numpy() + np.random.default_rng(seed).normal(0, 0.2, x.shape[1])
    srt = rossi.sort_values("week", kind="stable")
    _, _, ll_lifelines = rossi_fit._model._get_efron_values_single(
        srt.drop(columns=["week", "arrest"]), srt["week"], srt["arrest"], pd.Series(np.ones(len(srt))), None, beta)
    ll = cox_partial_loglik(jnp.asarray(x @ beta), jnp.asarray(t), jnp.asarray(e), ties="efron")
    assert float(ll) == pytest.approx(ll_lifelines, rel=1e-12)


def test_gradient_vanishes_at_lifelines_optimum(rossi_fit, rossi_xte):
    x, t, e = rossi_xte
    grad = jax.jit(jax.grad(lambda b: cox_partial_loglik(jnp.asarray(x) @ b, jnp.asarray(t), jnp.asarray(e))))(
        jnp.asarray(rossi_fit.params_.to_numpy()))
    assert np.abs(np.asarray(grad)).max() < 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_breslow_equals_numpy_reference(rossi_xte, seed):
    x, t, e = rossi_xte
    eta = x @ np.random.default_rng(seed).normal(0, 0.3, x.shape[1])
    ll = cox_partial_loglik(jnp.asarray(eta), jnp.asarray(t), jnp.asarray(e), ties="breslow")
    assert float(ll) == pytest.approx(breslow_reference(eta, t, e), rel=1e-12)


def test_efron_equals_breslow_without_ties():
    rng = np.random.default_rng(0)
    t, e, eta = rng.exponential(size=50), rng.integers(0, 2, 50), rng.normal(size=50)
    a = cox_partial_loglik(jnp.asarray(eta), jnp.asarray(t), jnp.asarray(e), ties="efron")
    b = cox_partial_loglik(jnp.asarray(eta), jnp.asarray(t), jnp.asarray(e), ties="breslow")
    assert float(a) == pytest.approx(float(b), rel=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_loss_invariant_to_batch_order(rossi_xte, ties):
    x, t, e = rossi_xte
    eta = x @ np.random.default_rng(3).normal(0, 0.3, x.shape[1])
    perm = np.random.default_rng(4).permutation(len(t))
    a = cox_loss(jnp.asarray(eta), jnp.asarray(t), jnp.asarray(e), ties=ties)
    b = cox_loss(jnp.asarray(eta[perm]), jnp.asarray(t[perm]), jnp.asarray(e[perm]), ties=ties)
    assert float(a) == pytest.approx(float(b), rel=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_padded_rows_are_ignored(rossi_xte, ties):
    x, t, e = rossi_xte
    eta = x @ np.random.default_rng(5).normal(0, 0.3, x.shape[1])
    pad = 37
    rng = np.random.default_rng(6)
    eta_p = np.concatenate([eta, rng.normal(0, 50, pad)])       # huge junk values in padded rows
    t_p = np.concatenate([t, rng.uniform(0, 60, pad)])
    e_p = np.concatenate([e, np.ones(pad)])
    mask = np.arange(len(t_p)) < len(t)
    order = rng.permutation(len(t_p))                          # padding interleaved with real rows
    def fn(r):
        return cox_loss(r, jnp.asarray(t_p[order]), jnp.asarray(e_p[order]), mask=jnp.asarray(mask[order]), ties=ties)
    full = cox_loss(jnp.asarray(eta), jnp.asarray(t), jnp.asarray(e), ties=ties)
    assert float(fn(jnp.asarray(eta_p[order]))) == pytest.approx(float(full), rel=1e-12)
    grad = np.asarray(jax.jit(jax.grad(fn))(jnp.asarray(eta_p[order])))
    assert np.all(grad[~mask[order]] == 0.0)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_all_censored_batch_has_zero_loss_and_finite_gradients(ties):
    rng = np.random.default_rng(7)
    eta = jnp.asarray(rng.normal(size=16))
    t = jnp.asarray(rng.integers(1, 5, 16).astype(float))        # ties as well
    e = jnp.zeros(16)
    loss, grad = jax.value_and_grad(lambda r: cox_loss(r, t, e, ties=ties))(eta)
    assert float(loss) == 0.0 and np.all(np.isfinite(np.asarray(grad)))
    mask = jnp.asarray(np.arange(16) < 3)
    grad = jax.grad(lambda r: cox_loss(r, t, jnp.ones(16), mask=mask & (eta > 99), ties=ties))(eta)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_linear_head_trained_with_efron_loss_matches_lifelines_c_index(rossi_fit, rossi_xte):
    x, t, e = rossi_xte
    xs = (x - x.mean(0)) / x.std(0)
    loss = jax.jit(jax.value_and_grad(lambda b: cox_loss(jnp.asarray(xs) @ b, jnp.asarray(t), jnp.asarray(e))))
    beta, opt = jnp.zeros(x.shape[1]), optax.adam(0.05)
    state = opt.init(beta)
    for _ in range(400):
        _, g = loss(beta)
        updates, state = opt.update(g, state)
        beta = optax.apply_updates(beta, updates)
    c_head = concordance_index(t, -(xs @ np.asarray(beta)), e)
    c_lifelines = concordance_index(t, -(x @ rossi_fit.params_.to_numpy()), e)    # risk -> minus sign
    assert c_lifelines == pytest.approx(rossi_fit.concordance_index_, abs=1e-12)
    assert abs(c_head - c_lifelines) < 0.01


def test_discrete_hazard_loss_matches_direct_likelihood():
    rng = np.random.default_rng(8)
    t, e = rng.exponential(5, 40), rng.integers(0, 2, 40)
    cuts = time_bins(t, e, n_bins=4)
    bins = bin_index(t, cuts)
    logits = rng.normal(size=(40, len(cuts) + 1))
    h = 1 / (1 + np.exp(-logits))
    ll = 0.0
    for i in range(40):
        ll += np.log(1 - h[i, :bins[i]]).sum()
        ll += np.log(h[i, bins[i]]) if e[i] else np.log(1 - h[i, bins[i]])
    loss = discrete_hazard_loss(jnp.asarray(logits), jnp.asarray(bins), jnp.asarray(e))
    assert float(loss) == pytest.approx(-ll / 40, rel=1e-10)


def test_binary_loss_is_logistic_and_masked():
    logit, y = jnp.asarray([0.3, -1.0, 2.0]), jnp.asarray([1, 0, 1])
    expected = np.mean([np.log1p(np.exp(-0.3)), np.log1p(np.exp(-1.0))])
    assert float(binary_outcome_loss(logit, y, mask=jnp.asarray([True, True, False]))) == pytest.approx(expected)
