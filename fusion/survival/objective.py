"""Training objectives of the survival head for :func:`fusion.train.fit`: ``(params, batch, rng, step) -> (loss, metrics)``.

* :class:`HeadLoss`: the head's survival loss (:mod:`fusion.survival.cox`: Cox partial likelihood, discrete-time
  hazard or logistic) of a :class:`fusion.survival.network.SurvivalHead`, with optional token dropout.
* :class:`JointLoss`: ``tokens.latent: joint``: a fusion VAE (:mod:`fusion.module`) trained together with the head;
  the VAE's posterior mean is the head's latent token and the loss adds its negative ELBO.

Both are frozen dataclasses, hashable and equal for equal models, so the folds share compiled training steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jax

from fusion.config import FusionConfig
from fusion.model import make_loss_fn
from fusion.module import FusionModule
from fusion.survival.cox import binary_outcome_loss, cox_loss, discrete_hazard_loss
from fusion.survival.network import SurvivalHead

VAE_PREFIX = "vae_"   # joint mode: batch keys of the VAE's arrays (fusion.model.make_arrays) carry this prefix


@dataclass(frozen=True)
class HeadLoss:
    """``(params, batch, rng, step) -> (loss, {})`` of a head for :func:`fusion.train.fit`.

    Hashable and equal for equal heads, so the K folds share one compiled training step.
    """

    module: SurvivalHead
    kind: str            # cox | discrete | binary
    ties: str
    token_dropout: float = 0.0   # > 0: hide each present token w.p. this (training regulariser)

    def __call__(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array, step: jax.Array
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
        if self.token_dropout > 0:
            batch = _drop_tokens(batch, rng, self.token_dropout)
        out = self.module.apply({"params": params}, batch)
        valid = batch["weight"] > 0
        if self.kind == "cox":
            value = cox_loss(out[:, 0], batch["time"], batch["event"], mask=valid, ties=self.ties)
        elif self.kind == "discrete":
            value = discrete_hazard_loss(out, batch["bins"], batch["event"], mask=valid)
        else:
            value = binary_outcome_loss(out[:, 0], batch["y"], mask=valid)
        return value, {}


def _drop_tokens(batch: dict[str, jax.Array], rng: jax.Array, rate: float) -> dict[str, jax.Array]:
    """``batch`` with each clinical variable column, the latent and each CXR token hidden w.p. ``rate``."""
    keys = jax.random.split(rng, 3)
    out = dict(batch)
    for key, name in zip(keys, ("clin_mask", "latent_mask", "cxr_mask")):
        keep = jax.random.bernoulli(key, 1.0 - rate, batch[name].shape)
        out[name] = batch[name] * keep.astype(batch[name].dtype)
    return out


@dataclass(frozen=True)
class JointLoss:
    """Joint mode: ``params = {"head": ..., "vae": ...}``; the VAE's posterior mean is the head's latent token.

    Loss: the VAE's negative ELBO (:func:`fusion.model.make_loss_fn` of ``vae`` with the fusion config
    ``vae_config``, a JSON string so the loss stays hashable) + ``weight`` x the head's survival loss.
    ``score=True``: the survival loss only (early stopping). Hashable and equal for equal models, so the
    folds share compiled steps.
    """

    head: HeadLoss
    vae: FusionModule
    vae_config: str
    weight: float = 1.0
    score: bool = False

    def head_batch(self, params: Any, batch: dict[str, jax.Array]) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        """-> ``(head batch with latent = posterior mean, VAE batch)``."""
        vae_batch = {k[len(VAE_PREFIX):]: v for k, v in batch.items() if k.startswith(VAE_PREFIX)}
        vae_batch["weight"] = batch["weight"]
        mu, _ = self.vae.apply({"params": params["vae"]}, vae_batch, method=FusionModule.posterior)
        head_batch = {k: v for k, v in batch.items() if not k.startswith(VAE_PREFIX)} | {"latent": mu}
        return head_batch, vae_batch

    def outputs(self, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
        """Head outputs ``(B, n_out)`` of the joint model."""
        return self.head.module.apply({"params": params["head"]}, self.head_batch(params, batch)[0])

    def __call__(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array, step: jax.Array
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
        head_batch, vae_batch = self.head_batch(params, batch)
        survival, _ = self.head(params["head"], head_batch, jax.random.fold_in(rng, 1), step)
        if self.score:
            return survival, {}
        elbo, _ = _elbo_fn(self.vae, self.vae_config)(params["vae"], vae_batch, rng, step)
        return elbo + self.weight * survival, {"neg_elbo": elbo, "survival": survival}


@lru_cache(maxsize=8)
def _elbo_fn(vae: FusionModule, vae_config: str) -> Any:
    return make_loss_fn(vae, FusionConfig.model_validate_json(vae_config))
