"""Selective SSM: parallel associative scan == sequential scan; padded positions are exactly irrelevant."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fusion.survival.ssm import MambaEncoder, selective_scan, selective_scan_reference


def _inputs(seed: int, b: int = 3, length: int = 29, d: int = 6, n: int = 5):
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    u = jax.random.normal(k[0], (b, length, d))
    delta = jax.nn.softplus(jax.random.normal(k[1], (b, length, d)))
    a = -jnp.exp(jax.random.normal(k[2], (d, n)))
    bm, cm = jax.random.normal(k[3], (b, length, n)), jax.random.normal(k[4], (b, length, n))
    mask = jax.random.uniform(k[5], (b, length)) > 0.3
    return u, delta, a, bm, cm, mask


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("masked", [False, True])
def test_associative_scan_equals_sequential_scan(seed, masked):
    u, delta, a, bm, cm, mask = _inputs(seed)
    m = mask if masked else None
    par = jax.jit(selective_scan)(u, delta, a, bm, cm, mask=m)
    seq = jax.jit(selective_scan_reference)(u, delta, a, bm, cm, mask=m)
    np.testing.assert_allclose(np.asarray(par), np.asarray(seq), rtol=1e-5, atol=1e-5)


def test_scan_against_explicit_python_recurrence():
    u, delta, a, bm, cm, _ = _inputs(2, b=1, length=7, d=2, n=3)
    u, delta, bm, cm, a = (np.asarray(v, np.float64) for v in (u, delta, bm, cm, a))
    h, ys = np.zeros((2, 3)), []
    for t in range(7):
        h = np.exp(delta[0, t][:, None] * a) * h + (delta[0, t] * u[0, t])[:, None] * bm[0, t][None, :]
        ys.append(h @ cm[0, t])
    par = jax.jit(selective_scan)(*(jnp.asarray(v, jnp.float32) for v in (u, delta, a, bm, cm)))
    np.testing.assert_allclose(np.asarray(par)[0], np.array(ys), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def encoder():
    enc = MambaEncoder(d_model=16, n_layers=2, d_state=4, d_conv=3)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 21, 16))
    mask = jax.random.uniform(jax.random.PRNGKey(1), (3, 21)) > 0.4
    params = jax.jit(enc.init)(jax.random.PRNGKey(2), x, mask)
    return jax.jit(enc.apply), params, x, mask


def test_padded_positions_are_exactly_irrelevant(encoder):
    enc, params, x, mask = encoder
    junk = jnp.where(mask[..., None], x, 1e4 * jax.random.normal(jax.random.PRNGKey(3), x.shape))
    a = np.asarray(enc(params, x, mask))
    b = np.asarray(enc(params, junk, mask))
    m = np.asarray(mask)
    assert np.array_equal(a[m], b[m])                          # bitwise: padding never reaches valid tokens
    grad = jax.jit(jax.grad(lambda v: jnp.sum(jnp.where(mask[..., None], enc(params, v, mask), 0.0) ** 2)))(x)
    assert np.all(np.asarray(grad)[~m] == 0.0)


def test_padded_batch_equals_unpadded_sequences(encoder):
    enc, params, x, mask = encoder
    out = np.asarray(enc(params, x, mask))
    for row in range(2):
        valid = np.asarray(mask[row])
        alone = enc(params, x[row:row + 1, valid], jnp.ones((1, int(valid.sum())), bool))
        np.testing.assert_allclose(np.asarray(alone)[0], out[row, valid], rtol=1e-5, atol=1e-5)


def test_parallel_and_sequential_modules_agree(encoder):
    enc, params, x, mask = encoder
    seq = jax.jit(MambaEncoder(d_model=16, n_layers=2, d_state=4, d_conv=3, scan="sequential").apply)
    m = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(seq(params, x, mask))[m], np.asarray(enc(params, x, mask))[m],
                               rtol=1e-5, atol=1e-5)


def test_state_matrix_is_negative_real(encoder):
    _, params, _, _ = encoder
    a_log = params["params"]["block_0"]["mixer"]["A_log"]
    assert np.all(-np.exp(np.asarray(a_log)) < 0)
