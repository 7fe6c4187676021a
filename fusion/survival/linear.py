"""The head's linear term fitted exactly before training: a ridge Cox (or logistic / discrete-hazard) model.

:func:`fit_linear_term` minimises the head's own loss of the linear term alone (``SurvivalHead`` with
``mixer="linear"``: the same inputs and parameter names) over all training rows in one batch, plus
``penalty / 2 * ||kernel||^2``, with L-BFGS (scipy) on jitted JAX gradients. The head starts from it with
a zero output layer on the token network, so before training it *is* the ridge Cox model and the token
network learns a correction that early stopping keeps only where it helps on the validation part.
On small cohorts this makes the head at least as good as the linear model and nearly seed-free.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.optimize import minimize

from fusion.survival.network import SurvivalHead

BUCKET = 256   # rows are padded to a multiple of this (weight 0), so folds of similar size share one program


def pad_rows(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` (N rows) + ``weight`` (1 real, 0 padding), padded with zero rows to a multiple of :data:`BUCKET`."""
    n = len(next(iter(arrays.values())))
    size = -(-n // BUCKET) * BUCKET
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) for k, v in arrays.items()}
    out["weight"] = (np.arange(size) < n).astype(np.float32)
    return out


@lru_cache(maxsize=8)
def _objective(module: SurvivalHead, loss: Any, penalty: float) -> Any:
    """Jitted ``(params, batch) -> (value, grad)`` of the linear term's loss + ridge on its kernel."""
    def value(params: Any, batch: dict[str, jax.Array]) -> jax.Array:
        base, _ = loss(params, batch, jax.random.PRNGKey(0), jnp.zeros((), jnp.int32))
        return base + 0.5 * penalty * jnp.sum(params["linear"]["kernel"] ** 2)

    return jax.jit(jax.value_and_grad(value))


def fit_linear_term(module: SurvivalHead, loss_cls: Any, kind: str, ties: str, train: dict[str, np.ndarray], *,
                    penalty: float, max_iter: int = 200) -> dict[str, np.ndarray]:
    """Ridge fit of ``module``'s linear term on ``train`` (every row, one batch) -> ``{"kernel", "bias"}``.

    ``loss_cls``: the head's loss class (:class:`fusion.survival.objective.HeadLoss`), built here for the linear module.
    """
    linear = module.clone(mixer="linear")
    lin_loss = loss_cls(linear, kind, ties)
    batch = {k: jnp.asarray(v) for k, v in pad_rows(train).items()}
    params = linear.init(jax.random.PRNGKey(0), {k: v[:2] for k, v in batch.items()})["params"]
    params = jax.tree_util.tree_map(jnp.zeros_like, params)
    flat, unravel = ravel_pytree(params)
    objective = _objective(linear, lin_loss, float(penalty))

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = objective(unravel(jnp.asarray(x, jnp.float32)), batch)
        return float(v), np.asarray(ravel_pytree(g)[0], np.float64)

    res = minimize(f, np.zeros(flat.shape, np.float64), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    fitted = unravel(jnp.asarray(res.x, jnp.float32))
    return {k: np.asarray(v) for k, v in fitted["linear"].items()}
