"""Network-level checks: masked likelihood ignores missing entries; product of experts drops missing modalities."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusion.clinical import ClinicalLayout
from fusion.module import FusionModule, elbo_loss, product_of_experts

LAYOUT = ClinicalLayout(n_continuous=3, n_binary=1, categorical_sizes=(3,))


def make_batch(rng: np.random.Generator, b: int = 6, d: int = 5, tokens: int = 3) -> dict[str, np.ndarray]:
    mask = rng.random((b, LAYOUT.width)) < 0.6
    mask[:, 4:7] = mask[:, [4]]                                   # one-hot group shares one mask
    values = rng.normal(size=(b, LAYOUT.width)).astype(np.float32)
    values[:, 3] = rng.integers(0, 2, b)
    values[:, 4:7] = np.eye(3)[rng.integers(0, 3, b)]
    tok = rng.random((b, tokens)) < 0.7
    tok[0] = False                                                 # patient 0 has no CXR
    return {"cxr": rng.normal(size=(b, tokens, d)).astype(np.float32), "cxr_tokens": tok,
            "cxr_target": rng.normal(size=(b, d)).astype(np.float32), "cxr_present": tok.any(1).astype(np.float32),
            "clin_values": values, "clin_mask": mask.astype(np.float32),
            "clin_present": mask.any(1).astype(np.float32), "weight": np.ones(b, np.float32)}


@pytest.fixture(scope="module")
def setup():
    """Attention pooling (the harder case for masking), one jitted value-and-grad of the full ELBO loss."""
    module = FusionModule(layout=LAYOUT, cxr_dim=5, latent_dim=3, hidden=8, n_layers=1, heads=2, pooling="attention")
    batch = make_batch(np.random.default_rng(0))
    params = jax.jit(lambda b: module.init({"params": jax.random.PRNGKey(0)}, b, jax.random.PRNGKey(1)))(batch)["params"]

    def loss(values, cxr):
        return elbo_loss(module, params, {**batch, "clin_values": values, "cxr": cxr}, jax.random.PRNGKey(2),
                         jnp.asarray(5), beta=1.0, warmup_steps=10, unimodal_elbo=True)[0]
    return batch, jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def test_gradient_wrt_masked_inputs_is_exactly_zero(setup) -> None:
    batch, value_and_grad = setup
    _, (g_clin, g_cxr) = value_and_grad(batch["clin_values"], batch["cxr"])
    missing = batch["clin_mask"] == 0
    assert missing.any() and (~missing).any()
    assert np.all(np.asarray(g_clin)[missing] == 0.0)
    assert np.abs(np.asarray(g_clin)[~missing]).sum() > 0          # observed values do matter
    no_token = ~batch["cxr_tokens"]
    assert np.all(np.asarray(g_cxr)[no_token] == 0.0)
    assert np.abs(np.asarray(g_cxr)[batch["cxr_tokens"]]).sum() > 0


def test_loss_ignores_values_behind_the_mask(setup) -> None:
    batch, value_and_grad = setup
    missing = batch["clin_mask"] == 0
    junk = batch["clin_values"].copy()
    junk[missing] = np.nan                                          # even NaN must not leak
    cxr = batch["cxr"].copy()
    cxr[~batch["cxr_tokens"]] = 1e6
    base, _ = value_and_grad(batch["clin_values"], batch["cxr"])
    again, (g_clin, _) = value_and_grad(junk, cxr)
    assert np.isfinite(float(base)) and float(again) == float(base)
    assert np.isfinite(np.asarray(g_clin)).all()


def test_product_of_experts_drops_absent_modalities() -> None:
    mu1, lv1 = jnp.array([[1.0, -2.0]]), jnp.array([[0.0, np.log(0.5)]])
    mu2, lv2 = jnp.array([[5.0, 5.0]]), jnp.array([[1.0, 1.0]])
    mu, lv = product_of_experts([mu1, mu2], [lv1, lv2], [jnp.ones(1), jnp.zeros(1)])
    # prior N(0,1) x expert 1 only: precision 1 + 1/var1
    np.testing.assert_allclose(np.exp(-lv), [[2.0, 3.0]], rtol=1e-6)
    np.testing.assert_allclose(mu, [[0.5, -2.0 * 2 / 3]], rtol=1e-6)
    mu0, lv0 = product_of_experts([mu1, mu2], [lv1, lv2], [jnp.zeros(1), jnp.zeros(1)])
    np.testing.assert_array_equal(mu0, 0.0)                         # nothing observed: the prior
    np.testing.assert_array_equal(lv0, 0.0)
