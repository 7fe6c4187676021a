"""Flax (linen) network of the multimodal VAE: encoders, product-of-experts latent, decoders, loss.

Batch layout (every array has the batch axis first, see :func:`fusion.model.make_arrays`):

* ``cxr`` (B, L, D) float32 CXR tokens (images x tokens flattened), ``cxr_tokens`` (B, L) bool,
  ``cxr_target`` (B, D) standardized mean token (what the CXR decoder reconstructs),
  ``cxr_present`` (B,) float32;
* ``clin_values`` (B, C) float32, ``clin_mask`` (B, C) float32, ``clin_present`` (B,) float32;
* ``cov`` (B, K) float32 one-hot covariates (site, ...; all zero = unknown), only when the module has
  ``covariate_sizes``;
* ``weight`` (B,) float32: 1 for real rows, 0 for padding rows.

Covariates (scVI's "batch") are concatenated to the latent at the input of both decoders, so the
decoders explain their effects and the latent need not encode them; with ``condition_encoders``
the encoders see them too. :func:`elbo_loss` can add an MMD penalty between the latents of each
covariate level and the rest of the batch.

The joint posterior is a product of Gaussian experts including the standard-normal prior expert;
a modality a patient lacks is left out of the product, so a patient with no data at all gets the
prior. Missing clinical values are zeroed with ``jnp.where`` before the encoder and excluded from
the likelihood, so the loss and its gradient do not depend on them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from core.config import default_of
from fusion.clinical import ClinicalLayout
from fusion.config import ConditioningConfig, CXRInputConfig, ModelConfig

LOGVAR_CLIP = 8.0
_LOG_2PI = math.log(2.0 * math.pi)


class MLP(nn.Module):
    """Dense layers with GELU and LayerNorm between them (none after the last)."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, f in enumerate(self.features):
            x = nn.Dense(f)(x)
            if i < len(self.features) - 1:
                x = nn.gelu(nn.LayerNorm()(x))
        return x


class GaussianHead(nn.Module):
    """Hidden vector -> (mu, logvar) of a diagonal Gaussian expert."""

    latent_dim: int

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        mu = nn.Dense(self.latent_dim)(h)
        logvar = jnp.clip(nn.Dense(self.latent_dim)(h), -LOGVAR_CLIP, LOGVAR_CLIP)
        return mu, logvar


class TokenPool(nn.Module):
    """Masked pooling of tokens (B, L, D) -> (B, H): mean of projected tokens or attention with a learned query."""

    hidden: int
    heads: int
    mode: str = "attention"

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        h = nn.Dense(self.hidden)(tokens)
        m = mask.astype(h.dtype)
        if self.mode == "mean":
            return (h * m[..., None]).sum(1) / jnp.maximum(m.sum(1, keepdims=True), 1.0)
        query = self.param("query", nn.initializers.normal(0.02), (1, 1, self.hidden))
        query = jnp.broadcast_to(query, (h.shape[0], 1, self.hidden))
        # a row without any token attends to all (finite output); its expert is dropped by cxr_present
        attn_mask = (mask | ~mask.any(1, keepdims=True))[:, None, None, :]
        out = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.hidden)(
            query, h, mask=attn_mask)
        return nn.LayerNorm()(out[:, 0])


def product_of_experts(mus: Sequence[jax.Array], logvars: Sequence[jax.Array],
                       present: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Gaussian product of the N(0, I) prior and the experts with ``present`` (B,) == 1 -> (mu, logvar)."""
    precision = jnp.ones_like(mus[0])
    weighted = jnp.zeros_like(mus[0])
    for mu, lv, p in zip(mus, logvars, present):
        on = p[:, None] > 0
        prec = jnp.where(on, jnp.exp(-lv), 0.0)
        precision = precision + prec
        weighted = weighted + jnp.where(on, mu, 0.0) * prec
    return weighted / precision, -jnp.log(precision)


class FusionModule(nn.Module):
    """Multimodal VAE network: CXR and clinical encoders, PoE latent, per-type decoders."""

    layout: ClinicalLayout
    cxr_dim: int
    latent_dim: int = default_of(ModelConfig, "latent_dim")     # defaults: those of fusion.config
    hidden: int = default_of(ModelConfig, "hidden")
    n_layers: int = default_of(ModelConfig, "n_layers")
    heads: int = default_of(ModelConfig, "attention_heads")
    pooling: str = default_of(CXRInputConfig, "pooling")
    cxr_likelihood: str = default_of(CXRInputConfig, "likelihood")
    covariate_sizes: tuple[int, ...] = ()     # one-hot widths of the covariates (empty: none)
    condition_encoders: bool = default_of(ConditioningConfig, "encoders")

    def setup(self) -> None:
        body = [self.hidden] * self.n_layers
        self.cxr_pool = TokenPool(self.hidden, self.heads, self.pooling)
        self.cxr_body = MLP(body)
        self.cxr_head = GaussianHead(self.latent_dim)
        self.clin_body = MLP(body)
        self.clin_head = GaussianHead(self.latent_dim)
        self.cxr_dec = MLP(body + [max(self.cxr_dim, 1)])
        self.clin_dec = MLP(body + [max(self.layout.width, 1)])
        self.clin_logsigma = self.param("clin_logsigma", nn.initializers.zeros, (self.layout.n_continuous,))
        self.cxr_logsigma = self.param("cxr_logsigma", nn.initializers.zeros, (max(self.cxr_dim, 1),))

    # --------------------------------------------------------------- inference
    def _with_covariates(self, x: jax.Array, batch: dict[str, jax.Array], key: str = "cov") -> jax.Array:
        return jnp.concatenate([x, batch[key]], -1) if self.covariate_sizes else x

    def decode_cxr(self, z: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        """Latent (B, latent_dim) [+ covariates] -> predicted standardized mean CXR token (B, cxr_dim)."""
        return self.cxr_dec(self._with_covariates(z, batch))

    def decode_clinical(self, z: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        """Latent (B, latent_dim) [+ covariates] -> clinical decoder outputs (B, layout.width)."""
        return self.clin_dec(self._with_covariates(z, batch))

    def experts(self, batch: dict[str, jax.Array]) -> dict[str, tuple[jax.Array, jax.Array, jax.Array]]:
        """Per-modality experts ``{name: (mu, logvar, present)}`` (B, latent_dim) each.

        Conditioned encoders read ``batch["cov_enc"]`` when present (training: covariates with dropout), else ``cov``.
        """
        enc_key = "cov_enc" if "cov_enc" in batch else "cov"
        pooled = self.cxr_pool(batch["cxr"], batch["cxr_tokens"])
        if self.condition_encoders:
            pooled = self._with_covariates(pooled, batch, enc_key)
        cxr_mu, cxr_lv = self.cxr_head(nn.gelu(self.cxr_body(pooled)))
        on = batch["clin_mask"] > 0
        clin_in = jnp.concatenate([jnp.where(on, batch["clin_values"], 0.0), on.astype(jnp.float32)], -1)
        if self.condition_encoders:
            clin_in = self._with_covariates(clin_in, batch, enc_key)
        clin_mu, clin_lv = self.clin_head(nn.gelu(self.clin_body(clin_in)))
        return {"cxr": (cxr_mu, cxr_lv, batch["cxr_present"]),
                "clinical": (clin_mu, clin_lv, batch["clin_present"])}

    def posterior(self, batch: dict[str, jax.Array], *, use: Sequence[str] = ("cxr", "clinical")) -> tuple[jax.Array, jax.Array]:
        """PoE posterior (mu, logvar) over the modalities in ``use`` that each patient has."""
        ex = self.experts(batch)
        chosen = [ex[m] for m in use]
        return product_of_experts([e[0] for e in chosen], [e[1] for e in chosen], [e[2] for e in chosen])

    # --------------------------------------------------------------- generative
    def reconstruction_nll(self, z: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-patient negative log-likelihoods ``{"cxr": (B,), "clinical": (B,)}`` of the observed data."""
        return {"cxr": self._cxr_nll(self.decode_cxr(z, batch), batch) * batch["cxr_present"],
                "clinical": self._clinical_nll(self.decode_clinical(z, batch), batch)}

    def _cxr_nll(self, pred: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        target = batch["cxr_target"]
        if self.cxr_likelihood == "cosine":
            cos = (pred * target).sum(-1) / (jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(target, axis=-1) + 1e-6)
            return self.cxr_dim * (1.0 - cos)
        return _gaussian_nll(target, pred, self.cxr_logsigma).sum(-1)

    def _clinical_nll(self, out: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        lay = self.layout
        on = batch["clin_mask"] > 0
        x = jnp.where(on, batch["clin_values"], 0.0)
        nc, nb = lay.n_continuous, lay.n_binary
        per_col = jnp.zeros_like(x)
        if nc:
            per_col = per_col.at[:, :nc].set(_gaussian_nll(x[:, :nc], out[:, :nc], self.clin_logsigma))
        if nb:
            logits = out[:, nc:nc + nb]
            per_col = per_col.at[:, nc:nc + nb].set(
                jnp.logaddexp(0.0, logits) - x[:, nc:nc + nb] * logits)   # BCE with logits
        start = nc + nb
        for size in lay.categorical_sizes:
            sl = slice(start, start + size)
            logp = jax.nn.log_softmax(out[:, sl], axis=-1)
            # one-hot target: the NLL lands on the observed category's column only
            per_col = per_col.at[:, sl].set(-x[:, sl] * logp)
            start += size
        return jnp.where(on, per_col, 0.0).sum(-1)

    def __call__(self, batch: dict[str, jax.Array], rng: jax.Array) -> dict[str, jax.Array]:
        """Joint posterior, one reparameterized sample, and its reconstruction NLLs (for init / inspection)."""
        mu, logvar = self.posterior(batch)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape)
        return {"mu": mu, "logvar": logvar, **self.reconstruction_nll(z, batch)}


def _gaussian_nll(x: jax.Array, mean: jax.Array, logsigma: jax.Array) -> jax.Array:
    return 0.5 * ((x - mean) * jnp.exp(-logsigma)) ** 2 + logsigma + 0.5 * _LOG_2PI


def kl_standard_normal(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row (B,)."""
    return 0.5 * (jnp.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(-1)


def kl_weight(step: jax.Array, *, beta: float, warmup_steps: int) -> jax.Array:
    """Linear KL annealing: 0 at step 0 up to ``beta`` at ``warmup_steps`` (constant when 0)."""
    if warmup_steps <= 0:
        return jnp.asarray(beta, jnp.float32)
    return beta * jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


def mmd_penalty(z: jax.Array, cov: jax.Array, weight: jax.Array, sizes: Sequence[int]) -> jax.Array:
    """Sum over covariate levels of the squared MMD between the latents (B, d) of that level and the rest.

    Gaussian kernels with squared bandwidths d x (0.25, 1, 4) (the latent is about N(0, I)); rows
    weighted by ``weight``; a level absent from the batch (or holding all of it) adds 0.
    """
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    kernel = sum(jnp.exp(-d2 / (z.shape[-1] * bw)) for bw in (0.25, 1.0, 4.0))
    total, start = jnp.zeros(()), 0
    for size in sizes:
        for level in range(start, start + size):
            a, b = weight * cov[:, level], weight * (1.0 - cov[:, level])
            na, nb = a.sum(), b.sum()
            a, b = a / jnp.maximum(na, 1e-6), b / jnp.maximum(nb, 1e-6)
            mmd = a @ kernel @ a + b @ kernel @ b - 2.0 * a @ kernel @ b
            total = total + jnp.where((na > 0) & (nb > 0), mmd, 0.0)
        start += size
    return total


def elbo_loss(module: FusionModule, params: dict, batch: dict[str, jax.Array], rng: jax.Array, step: jax.Array, *,
              beta: float, warmup_steps: int, unimodal_elbo: bool, cxr_weight: float = 1.0,
              clinical_weight: float = 1.0, unknown_dropout: float = 0.0,
              penalty_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted mean negative ELBO over the batch (+ the single-modality ELBOs when ``unimodal_elbo``).

    Each subset's posterior reconstructs every modality the patient has (cross-modal terms), which
    trains the single-modality experts to stand in for the joint one when a modality is missing.
    With covariates: conditioned encoders see them with probability ``1 - unknown_dropout`` per
    patient (else the all-zero "unknown" code); ``penalty_weight`` > 0 adds that times
    :func:`mmd_penalty` of the joint posterior sample.
    Returns ``(loss, metrics)`` with the joint ELBO's parts as per-patient weighted means.
    """
    subsets = [("cxr", "clinical")] + ([("cxr",), ("clinical",)] if unimodal_elbo else [])
    beta_t = kl_weight(step, beta=beta, warmup_steps=warmup_steps)
    w = batch["weight"]
    denom = jnp.maximum(w.sum(), 1.0)
    if module.covariate_sizes and module.condition_encoders and unknown_dropout > 0:
        keep = jax.random.uniform(jax.random.fold_in(rng, len(subsets)), w.shape) >= unknown_dropout
        batch = {**batch, "cov_enc": batch["cov"] * keep[:, None]}

    def terms(mod: FusionModule) -> list[tuple[jax.Array, dict[str, jax.Array], jax.Array]]:
        ex = mod.experts(batch)
        out = []
        for i, subset in enumerate(subsets):
            chosen = [ex[m] for m in subset]
            mu, lv = product_of_experts([e[0] for e in chosen], [e[1] for e in chosen], [e[2] for e in chosen])
            z = mu + jnp.exp(0.5 * lv) * jax.random.normal(jax.random.fold_in(rng, i), mu.shape)
            rec = mod.reconstruction_nll(z, batch)
            # a subset none of whose modalities the patient has is just the prior: skip it
            has = jnp.max(jnp.stack([e[2] for e in chosen]), axis=0)
            out.append((has, rec, kl_standard_normal(mu, lv), z))
        return out

    parts = nn.apply(terms, module)({"params": params})
    loss = jnp.zeros(())
    for has, rec, kl, _ in parts:
        per = cxr_weight * rec["cxr"] + clinical_weight * rec["clinical"] + beta_t * kl
        loss = loss + (w * has * per).sum() / denom
    has, rec, kl, z = parts[0]
    metrics = {"rec_cxr": (w * rec["cxr"]).sum() / denom, "rec_clinical": (w * rec["clinical"]).sum() / denom,
               "kl": (w * kl).sum() / denom, "beta": beta_t}
    if module.covariate_sizes and penalty_weight > 0:
        metrics["mmd"] = mmd_penalty(z, batch["cov"], w * has, module.covariate_sizes)
        loss = loss + penalty_weight * metrics["mmd"]
    return loss, metrics
