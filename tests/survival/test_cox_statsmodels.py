"""Cox partial likelihood vs statsmodels' PHReg, an independent implementation with both tie methods.

lifelines' CoxPHFitter only has Efron ties (tests/survival/test_cox.py); statsmodels has Breslow too,
so both branches of ``fusion.survival.cox.cox_partial_loglik`` are checked on rossi against a library.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusion.survival.cox import cox_partial_loglik

PHReg = pytest.importorskip("statsmodels.duration.hazard_regression").PHReg


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_loglik_equals_statsmodels_phreg_on_rossi(rossi_xte, ties):
    x, t, e = rossi_xte
    model = PHReg(t, x, status=e, ties=ties)
    mle = model.fit().params
    def ours(b):
        return float(cox_partial_loglik(jnp.asarray(x @ b), jnp.asarray(t), jnp.asarray(e), ties=ties))
    for beta in (mle, *(mle + np.random.default_rng(s).normal(0, 0.2, x.shape[1]) for s in range(3))):
        assert ours(beta) == pytest.approx(model.loglike(beta), rel=1e-12)
    grad = jax.grad(lambda b: cox_partial_loglik(jnp.asarray(x) @ b, jnp.asarray(t), jnp.asarray(e), ties=ties))(
        jnp.asarray(mle))
    assert np.abs(np.asarray(grad)).max() < 1e-4        # statsmodels' optimum is ours too


def test_breslow_and_efron_differ_on_tied_rossi(rossi_xte):
    """The two statsmodels references are distinct on rossi, so the test above tells the branches apart."""
    x, t, e = rossi_xte
    beta = PHReg(t, x, status=e, ties="efron").fit().params
    values = {ties: PHReg(t, x, status=e, ties=ties).loglike(beta) for ties in ("breslow", "efron")}
    assert abs(values["breslow"] - values["efron"]) > 0.1
