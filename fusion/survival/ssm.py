"""Selective state-space (Mamba / S6) block in Flax linen.

Recurrence per channel ``d`` and state ``n`` (zero-order-hold for ``A``, Euler for ``B``, as in Mamba)::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        y_t = <C_t, h_t> + D * u_t

with input-dependent ``delta_t`` (softplus), ``B_t`` and ``C_t`` and a diagonal, negative real
``A = -exp(A_log)``. :func:`selective_scan` computes it in parallel with
``jax.lax.associative_scan`` over the operator ``(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)``;
:func:`selective_scan_reference` is the sequential ``jax.lax.scan`` it is tested against.

Padding: a padded step gets ``delta = 0`` and ``u = 0``, i.e. ``exp(0 A) = 1`` and no input, so the
state passes through it unchanged. :class:`MambaBlock` also packs each row's valid tokens to the
front before its causal convolution (and scatters them back), so padded positions are exactly
irrelevant for any mask pattern, not only trailing padding.
"""
from __future__ import annotations

import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from core.config import default_of
from fusion.survival.config import HeadConfig

ScanMode = Literal["parallel", "sequential"]


def _discretize(u: jax.Array, delta: jax.Array, A: jax.Array, B: jax.Array,
                mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """-> ``(decay, drive)`` each ``(batch, L, D, N)``: ``exp(delta A)`` and ``delta B u`` (identity where masked)."""
    if mask is not None:
        m = mask[..., None].astype(bool)
        delta = jnp.where(m, delta, 0.0)
        u = jnp.where(m, u, 0.0)
    decay = jnp.exp(delta[..., None] * A)
    drive = (delta * u)[..., None] * B[:, :, None, :]
    return decay, drive


def selective_scan(u: jax.Array, delta: jax.Array, A: jax.Array, B: jax.Array, C: jax.Array, *,
                   mask: jax.Array | None = None) -> jax.Array:
    """Parallel selective scan (``jax.lax.associative_scan``, O(log L) depth).

    Args:
        u: ``(batch, L, D)`` inputs; delta: ``(batch, L, D)`` positive step sizes;
        A: ``(D, N)`` negative diagonal state matrix; B, C: ``(batch, L, N)``;
        mask: ``(batch, L)`` bool, False = padded step (state passes through unchanged).
    Returns:
        ``(batch, L, D)`` outputs ``<C_t, h_t>`` (without the skip term).
    """
    decay, drive = _discretize(u, delta, A, B, mask)

    def combine(left: tuple[jax.Array, jax.Array], right: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        a1, b1 = left
        a2, b2 = right
        return a1 * a2, a2 * b1 + b2

    _, h = jax.lax.associative_scan(combine, (decay, drive), axis=1)
    return jnp.einsum("bldn,bln->bld", h, C)


def selective_scan_reference(u: jax.Array, delta: jax.Array, A: jax.Array, B: jax.Array, C: jax.Array, *,
                             mask: jax.Array | None = None) -> jax.Array:
    """Sequential reference of :func:`selective_scan` (``jax.lax.scan`` over time, O(L) depth)."""
    decay, drive = _discretize(u, delta, A, B, mask)

    def step(h: jax.Array, xs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        a, b, c = xs
        h = a * h + b
        return h, jnp.einsum("bdn,bn->bd", h, c)

    h0 = jnp.zeros(decay.shape[:1] + decay.shape[2:], decay.dtype)
    _, ys = jax.lax.scan(step, h0, (jnp.moveaxis(decay, 1, 0), jnp.moveaxis(drive, 1, 0), jnp.moveaxis(C, 1, 0)))
    return jnp.moveaxis(ys, 0, 1)


def pack_valid_first(mask: jax.Array) -> jax.Array:
    """Per-row permutation ``(batch, L)`` that moves valid positions to the front, keeping their order."""
    return jnp.argsort(~mask.astype(bool), axis=1, stable=True)


def _gather_rows(x: jax.Array, perm: jax.Array) -> jax.Array:
    return jnp.take_along_axis(x, perm[..., None], axis=1)


def _scatter_rows(x: jax.Array, perm: jax.Array) -> jax.Array:
    return _gather_rows(x, jnp.argsort(perm, axis=1))


def _dt_bias_init(dt_min: float, dt_max: float):
    """Bias of the delta projection so that ``softplus(bias)`` is log-uniform in ``[dt_min, dt_max]`` (Mamba)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        dt = jnp.exp(jax.random.uniform(key, shape, dtype) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        return dt + jnp.log(-jnp.expm1(-dt))     # inverse softplus

    return init


class _MambaDims(nn.Module):
    """The mixer's sizes, shared by :class:`SelectiveSSM`, :class:`MambaBlock` and :class:`MambaEncoder`
    (the encoder hands them down to its blocks, the blocks to their mixers)."""

    d_model: int
    d_state: int = default_of(HeadConfig, "d_state")     # defaults: those of the survival head's config
    expand: int = default_of(HeadConfig, "expand")
    d_conv: int = default_of(HeadConfig, "d_conv")
    scan: ScanMode = default_of(HeadConfig, "scan")


class SelectiveSSM(_MambaDims):
    """Mamba mixer: in-projection, causal depthwise conv, selective scan, SiLU gate, out-projection.

    Input ``(batch, L, d_model)`` and mask ``(batch, L)``; output ``(batch, L, d_model)``, zero at
    padded positions.
    """

    dt_rank: int | None = None
    dt_min: float = 1e-3
    dt_max: float = 1e-1

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        d_inner = self.expand * self.d_model
        dt_rank = self.dt_rank or max(1, math.ceil(self.d_model / 16))
        perm = pack_valid_first(mask)
        x, mask = _gather_rows(x, perm), jnp.take_along_axis(mask.astype(bool), perm, axis=1)
        m = mask[..., None]
        xz = nn.Dense(2 * d_inner, use_bias=False, name="in_proj")(x)
        u, z = jnp.split(xz, 2, axis=-1)
        u = jnp.where(m, u, 0.0)
        if self.d_conv > 1:
            u = nn.Conv(d_inner, (self.d_conv,), padding=((self.d_conv - 1, 0),), feature_group_count=d_inner,
                        name="conv")(u)
        u = nn.silu(u)
        dbc = nn.Dense(dt_rank + 2 * self.d_state, use_bias=False, name="x_proj")(u)
        dt, B, C = jnp.split(dbc, [dt_rank, dt_rank + self.d_state], axis=-1)
        delta = nn.softplus(nn.Dense(d_inner, name="dt_proj",
                                     bias_init=_dt_bias_init(self.dt_min, self.dt_max))(dt))
        A_log = self.param("A_log", lambda _k, s: jnp.log(jnp.broadcast_to(jnp.arange(1, s[1] + 1, dtype=jnp.float32), s)),
                           (d_inner, self.d_state))
        D = self.param("D", nn.initializers.ones, (d_inner,))
        scan = selective_scan if self.scan == "parallel" else selective_scan_reference
        y = scan(u, delta, -jnp.exp(A_log), B, C, mask=mask) + D * u
        y = y * nn.silu(z)
        out = jnp.where(m, nn.Dense(self.d_model, use_bias=False, name="out_proj")(y), 0.0)
        return _scatter_rows(out, perm)


class MambaBlock(_MambaDims):
    """Pre-norm residual block ``x + SelectiveSSM(RMSNorm(x))``; padded positions keep ``x`` unchanged."""

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        h = nn.RMSNorm(name="norm")(x)
        return x + SelectiveSSM(self.d_model, self.d_state, self.expand, self.d_conv, scan=self.scan, name="mixer")(h, mask)


class MambaEncoder(_MambaDims):
    """A stack of :class:`MambaBlock` with a final RMSNorm: ``(batch, L, d_model)`` -> same shape.

    Fields: ``d_model, d_state, expand, d_conv, scan`` (see :class:`_MambaDims`), then ``n_layers``.
    """

    n_layers: int = default_of(HeadConfig, "n_layers")

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        for i in range(self.n_layers):
            x = MambaBlock(self.d_model, self.d_state, self.expand, self.d_conv, self.scan, name=f"block_{i}")(x, mask)
        return nn.RMSNorm(name="norm_f")(x)
