"""Token sequence + selective-SSM survival head (Flax linen), in the spirit of M4Survive.

Batch layout (batch axis first; built by :meth:`fusion.survival.inputs.Preprocessor.arrays`):

* ``clin_values`` (B, C) float32 encoded clinical columns (:class:`fusion.clinical.ClinicalEncoder`),
  ``clin_mask`` (B, C) float32 (1 observed);
* ``latent`` (B, Z) float32 fusion-VAE latent, ``latent_mask`` (B,) float32;
* ``cxr`` (B, L, D) float32 standardized CXR tokens (images in time order, or their 32/128 tokens),
  ``cxr_mask`` (B, L) float32, ``cxr_days`` (B, L) float32 acquisition offset in days (0 where
  unknown), ``cxr_days_known`` (B, L) float32.

Tokens, in this order: one per clinical variable (``sum_c x_c W_c + b_v + e_v`` over the variable's
encoded columns, so a categorical variable's one-hot picks a category embedding; masked when the
variable is missing), the latent token, then the CXR tokens (a linear map of the embedding plus a
time embedding and a modality embedding). The ``mixer`` reads the sequence:

* ``ssm``: a :class:`fusion.survival.ssm.MambaEncoder` (selective state space), masked mean over valid tokens;
* ``gru``: a GRU over the valid tokens (packed to the front, in order), masked mean of its outputs;
* ``mlp``: no sequence model: a two-layer MLP on the masked mean of the tokens;
* ``linear``: no token network at all: the linear term below alone (a linear Cox / logistic model on
  the same inputs as the token network).

The pooled vector feeds a linear output (1 risk score, or K discrete-hazard logits). With
``linear_skip`` the output adds a linear term of the same inputs (encoded clinical values with 0 where
missing, their missing flags, the latent and its presence flag, the mean standardized CXR embedding and
a has-CXR flag): the head is then a Cox model plus a nonlinear token correction, which on small cohorts
keeps it at least as good as the linear model and makes it far less sensitive to the seed.
A patient without any token gets the output of the zero vector (the bias).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core.config import default_of
from fusion.survival.config import HeadConfig
from fusion.survival.ssm import MambaEncoder, ScanMode, pack_valid_first

Mixer = Literal["ssm", "gru", "mlp", "linear"]


class SurvivalHead(nn.Module):
    """Token head (selective SSM by default) over clinical, latent and CXR tokens -> ``(B, n_out)``."""

    variable_of_column: Sequence[int]     # (C,) variable index of each encoded clinical column
    n_variables: int
    n_out: int = 1
    d_model: int = default_of(HeadConfig, "d_model")     # sizes: the defaults of fusion.survival.config.HeadConfig
    n_layers: int = default_of(HeadConfig, "n_layers")
    d_state: int = default_of(HeadConfig, "d_state")
    expand: int = default_of(HeadConfig, "expand")
    d_conv: int = default_of(HeadConfig, "d_conv")
    scan: ScanMode = default_of(HeadConfig, "scan")
    use_clinical: bool = True
    use_latent: bool = True
    use_cxr: bool = True
    mixer: Mixer = default_of(HeadConfig, "mixer")
    linear_skip: bool = default_of(HeadConfig, "linear_skip")

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

    def linear_inputs(self, batch: dict[str, jax.Array]) -> jax.Array:
        """``(B, F)`` inputs of the linear term: the enabled groups' values (0 where missing) and presence flags."""
        parts = []
        if self.use_clinical and self.n_variables:
            on = batch["clin_mask"]
            parts += [jnp.where(on > 0, batch["clin_values"], 0.0), on]
        if self.use_latent:
            on = batch["latent_mask"][:, None]
            parts += [jnp.where(on > 0, batch["latent"], 0.0), on]
        if self.use_cxr:
            on = batch["cxr_mask"][..., None]
            n = jnp.maximum(on.sum(1), 1.0)
            parts += [jnp.sum(jnp.where(on > 0, batch["cxr"], 0.0), axis=1) / n, (on.sum(1) > 0).astype(jnp.float32)]
        if not parts:
            raise ValueError("SurvivalHead: no token source enabled (clinical, latent, cxr)")
        return jnp.concatenate(parts, axis=1)

    @nn.compact
    def __call__(self, batch: dict[str, jax.Array]) -> jax.Array:
        linear = nn.Dense(self.n_out, name="linear")(self.linear_inputs(batch)) \
            if self.linear_skip or self.mixer == "linear" else 0.0
        if self.mixer == "linear":
            return linear
        x, mask = self.tokens(batch)
        x = jnp.where(mask[..., None], x, 0.0)
        m = mask[..., None].astype(x.dtype)
        if self.mixer == "ssm":
            h = MambaEncoder(self.d_model, self.d_state, self.expand, self.d_conv, self.scan, n_layers=self.n_layers,
                             name="encoder")(x, mask)
        elif self.mixer == "gru":
            perm = pack_valid_first(mask)                       # valid tokens first, in order
            packed = jnp.take_along_axis(x, perm[..., None], axis=1)
            h = nn.RNN(nn.GRUCell(self.d_model), name="gru")(packed, seq_lengths=mask.sum(1).astype(jnp.int32))
            m = jnp.take_along_axis(m, perm[..., None], axis=1)
            mask = m[..., 0] > 0
        else:   # mlp on the pooled tokens
            h = x
        pooled = jnp.sum(jnp.where(mask[..., None], h, 0.0), axis=1) / jnp.maximum(m.sum(1), 1.0)
        if self.mixer == "mlp":
            pooled = nn.Dense(self.d_model, name="mlp_0")(nn.gelu(nn.Dense(self.d_model * self.expand, name="mlp_1")(pooled)))
        # with the linear term the token network's output starts at 0: the head starts as the linear model
        init = nn.initializers.zeros if self.linear_skip else nn.initializers.lecun_normal()
        return nn.Dense(self.n_out, kernel_init=init, name="out")(pooled) + linear
