"""Token sequence + selective-SSM survival head (Flax linen), in the spirit of M4Survive.

Batch layout (batch axis first; built by :func:`fusion.survival.make_head_arrays`):

* ``clin_values`` (B, C) float32 encoded clinical columns (:class:`fusion.clinical.ClinicalEncoder`),
  ``clin_mask`` (B, C) float32 (1 observed);
* ``latent`` (B, Z) float32 fusion-VAE latent, ``latent_mask`` (B,) float32;
* ``cxr`` (B, L, D) float32 standardized CXR tokens (images in time order, or their 32/128 tokens),
  ``cxr_mask`` (B, L) float32, ``cxr_days`` (B, L) float32 acquisition offset in days (0 where
  unknown), ``cxr_days_known`` (B, L) float32.

Tokens, in this order: one per clinical variable (``sum_c x_c W_c + b_v + e_v`` over the variable's
encoded columns, so a categorical variable's one-hot picks a category embedding; masked when the
variable is missing), the latent token, then the CXR tokens (a linear map of the embedding plus a
time embedding and a modality embedding). A :class:`fusion.ssm.MambaEncoder` reads the sequence;
a masked mean over valid tokens feeds a linear output: 1 risk score, or K discrete-hazard logits.
A patient without any token gets the output of the zero vector (the bias).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fusion.ssm import MambaEncoder, ScanMode


class SurvivalHead(nn.Module):
    """Selective-SSM head over clinical, latent and CXR tokens -> ``(B, n_out)``."""

    variable_of_column: Sequence[int]     # (C,) variable index of each encoded clinical column
    n_variables: int
    n_out: int = 1
    d_model: int = 32
    n_layers: int = 1
    d_state: int = 8
    expand: int = 2
    d_conv: int = 2
    scan: ScanMode = "parallel"
    use_clinical: bool = True
    use_latent: bool = True
    use_cxr: bool = True

    def tokens(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """-> ``(tokens (B, T, d_model), mask (B, T) bool)``."""
        d = self.d_model
        toks, masks = [], []
        if self.use_clinical and self.n_variables:
            assign = jnp.asarray(np.eye(self.n_variables, dtype=np.float32)[np.asarray(self.variable_of_column)])  # (C, V)
            w = self.param("clin_w", nn.initializers.normal(1.0), (assign.shape[0], d))
            b = self.param("clin_b", nn.initializers.zeros, (self.n_variables, d))
            e = self.param("clin_var_embed", nn.initializers.normal(0.02), (self.n_variables, d))
            on = batch["clin_mask"] > 0
            x = jnp.where(on, batch["clin_values"], 0.0)
            toks.append(jnp.einsum("bc,cd,cv->bvd", x, w, assign) + b + e)
            masks.append((on.astype(jnp.float32) @ assign) > 0)
        if self.use_latent:
            lat = nn.Dense(d, name="latent_proj")(batch["latent"])
            lat = lat + self.param("latent_embed", nn.initializers.normal(0.02), (d,))
            toks.append(lat[:, None, :])
            masks.append(batch["latent_mask"][:, None] > 0)
        if self.use_cxr:
            on = batch["cxr_mask"] > 0
            x = nn.Dense(d, name="cxr_proj")(jnp.where(on[..., None], batch["cxr"], 0.0))
            when = jnp.stack([batch["cxr_days"] / 7.0, batch["cxr_days_known"]], axis=-1)
            x = x + nn.Dense(d, name="cxr_time")(when) + self.param("cxr_embed", nn.initializers.normal(0.02), (d,))
            toks.append(x)
            masks.append(on)
        if not toks:
            raise ValueError("SurvivalHead: no token source enabled (clinical, latent, cxr)")
        return jnp.concatenate(toks, axis=1), jnp.concatenate(masks, axis=1)

    @nn.compact
    def __call__(self, batch: dict[str, jax.Array]) -> jax.Array:
        x, mask = self.tokens(batch)
        x = jnp.where(mask[..., None], x, 0.0)
        h = MambaEncoder(self.d_model, self.n_layers, self.d_state, self.expand, self.d_conv, self.scan,
                         name="encoder")(x, mask)
        m = mask[..., None].astype(h.dtype)
        pooled = jnp.sum(jnp.where(mask[..., None], h, 0.0), axis=1) / jnp.maximum(m.sum(1), 1.0)
        return nn.Dense(self.n_out, name="out")(pooled)
