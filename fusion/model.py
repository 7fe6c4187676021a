"""User-facing multimodal VAE (scvi-tools-like): ``FusionVAE(cfg).fit(data, ...)``, ``get_latent``, ``save``/``load``.

The network lives in :mod:`fusion.module`; this class owns the fitted preprocessing (clinical
encoder and CXR standardization, both fitted on training patients only), the parameters and the
conversion of a :class:`fusion.data.PatientData` into batch arrays.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import serialization

from core.config import dump_config
from fusion.clinical import ClinicalEncoder, ClinicalLayout
from fusion.config import FusionConfig
from fusion.covariates import CovariateEncoder
from fusion.data import PatientData
from fusion.module import FusionModule, elbo_loss, kl_standard_normal
from fusion.train import FitResult, fit, iterate_batches

MODALITIES = ("cxr", "clinical")


def make_arrays(data: PatientData, *, encoder: ClinicalEncoder, cxr_mean: np.ndarray, cxr_std: np.ndarray,
                modalities: Sequence[str] = MODALITIES,
                covariates: CovariateEncoder | None = None) -> dict[str, np.ndarray]:
    """PatientData -> batch arrays of :mod:`fusion.module` (N rows); modalities not listed are marked absent.

    With a fitted ``covariates`` encoder (any covariate) the arrays hold ``cov`` (N, K) one-hot.
    """
    n, s, t, d = data.cxr.shape
    tokens = np.repeat(data.cxr_mask, t, axis=1)                                   # (N, S*T)
    if d == 0:                                                                      # clinical-only data
        cxr = np.zeros((n, s * t, 1), np.float32)
        tokens = np.zeros_like(tokens)
    else:
        cxr = ((data.cxr.reshape(n, s * t, d) - cxr_mean) / cxr_std).astype(np.float32)
        cxr = np.where(tokens[..., None], cxr, 0.0).astype(np.float32)
    target = (cxr * tokens[..., None]).sum(1) / np.maximum(tokens.sum(1, keepdims=True), 1)
    cxr_present = tokens.any(1) & ("cxr" in modalities)
    enc = encoder.transform(data.clinical, schema=data.schema)
    values, mask = enc.values, enc.mask
    if values.shape[1] == 0:
        values, mask = np.zeros((n, 1), np.float32), np.zeros((n, 1), bool)
    if "clinical" not in modalities:
        mask = np.zeros_like(mask)
    arrays = {"cxr": cxr, "cxr_tokens": tokens & cxr_present[:, None], "cxr_target": target.astype(np.float32),
              "cxr_present": cxr_present.astype(np.float32), "clin_values": values.astype(np.float32),
              "clin_mask": mask.astype(np.float32), "clin_present": mask.any(1).astype(np.float32)}
    if covariates is not None and covariates.width:
        arrays["cov"], _ = covariates.transform(data.covariates)
    return arrays


def informed_rows(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) bool of :func:`make_arrays` output: a CXR token or an observed clinical value (else the prior mean)."""
    return (arrays["cxr_present"] > 0) | (arrays["clin_present"] > 0)


def make_loss_fn(module: FusionModule, cfg: FusionConfig, *, multimodal: bool = True) -> Callable:
    """The negative-ELBO loss ``(params, batch, rng, step) -> (loss, metrics)`` of ``module`` with ``cfg``'s weights."""
    m, kl = cfg.model, cfg.kl
    cxr_weight = max(module.layout.width, 1) / module.cxr_dim if m.cxr_weight == "auto" else m.cxr_weight
    cond = cfg.conditioning
    return partial(elbo_loss, module, beta=kl.beta, warmup_steps=kl.warmup_steps,
                   unimodal_elbo=m.unimodal_elbo and multimodal, cxr_weight=float(cxr_weight),
                   clinical_weight=m.clinical_weight, unknown_dropout=cond.unknown_dropout,
                   penalty_weight=cond.penalty_weight if cond.penalty == "mmd" else 0.0)


class FusionVAE:
    """Multimodal VAE over CXR embeddings and a clinical table with a product-of-experts latent."""

    def __init__(self, cfg: FusionConfig, *, modalities: Sequence[str] = MODALITIES) -> None:
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(modalities)}")
        self.cfg = cfg
        self.modalities = tuple(modalities)
        self.encoder: ClinicalEncoder | None = None
        self.covariates = CovariateEncoder()
        self.cxr_mean = self.cxr_std = np.zeros(0, np.float32)
        self.module: FusionModule | None = None
        self.params = None
        self.result: FitResult | None = None

    # ---------------------------------------------------------------- training
    def fit(self, data: PatientData, *, train_idx: np.ndarray, val_idx: np.ndarray | None = None,
            checkpoint_dir: str | Path | None = None, stop_after_epochs: int | None = None,
            progress: bool = True) -> FitResult:
        """Fit preprocessing on ``train_idx`` rows, then the VAE, early-stopping on ``val_idx`` rows."""
        cfg = self.cfg
        train = data.subset(train_idx)
        arrays = self.prepare(train, seed=cfg.seed)
        d = data.cxr.shape[-1]
        val = self._arrays(data.subset(val_idx)) if val_idx is not None and len(val_idx) else None
        run_id = {"modalities": list(self.modalities), "cxr_dim": d, "layout": asdict(self.encoder.layout),
                  "covariate_levels": self.covariates.levels,
                  "config": cfg.model_dump(mode="json", exclude={"train", "evaluation", "survival"}),
                  "patients": hashlib.sha256("\n".join(train.patient_ids).encode()).hexdigest()[:16]}
        self.result = fit(self.loss_fn(), self.params, arrays, val, cfg=cfg.train, seed=cfg.seed, run_id=run_id,
                          checkpoint_dir=checkpoint_dir, stop_after_epochs=stop_after_epochs, progress=progress)
        self.params = self.result.params
        return self.result

    def prepare(self, train: PatientData, *, seed: int) -> dict[str, np.ndarray]:
        """Fit the preprocessing on ``train``, build the module and initialise ``params``; -> ``train``'s arrays.

        :meth:`fit` does this first; the survival head's joint mode calls it and trains the params itself.
        """
        cfg = self.cfg
        self.encoder = ClinicalEncoder(out_of_range=cfg.clinical.out_of_range).fit(
            train.clinical, train.schema, columns=cfg.clinical.columns, exclude=cfg.clinical.exclude)
        d = train.cxr.shape[-1]
        tok = train.cxr[train.cxr_mask].reshape(-1, d) if d else np.zeros((0, 0), np.float32)
        self.cxr_mean = tok.mean(0).astype(np.float32) if len(tok) else np.zeros(d, np.float32)
        self.cxr_std = (tok.std(0) + 1e-6).astype(np.float32) if len(tok) > 1 else np.ones(d, np.float32)
        self.covariates = CovariateEncoder().fit(_covariate_table(train, cfg.covariates))
        self.module = self._build_module(self.encoder.layout, max(d, 1))
        arrays = self._arrays(train)
        self.params = _init_params(self.module, {k: v[:2] for k, v in arrays.items()} | {"weight": np.ones(2, np.float32)},
                                   seed=seed)
        return arrays

    def arrays(self, data: PatientData) -> dict[str, np.ndarray]:
        """Batch arrays of :mod:`fusion.module` for ``data`` with this model's fitted preprocessing."""
        self._require_module()
        return self._arrays(data)

    def loss_fn(self) -> Callable:
        """``(params, batch, rng, step) -> (loss, metrics)`` of this model (for :func:`fusion.train.fit`)."""
        return make_loss_fn(self._require_module(), self.cfg, multimodal=len(self.modalities) > 1)

    # ---------------------------------------------------------------- inference
    def get_latent(self, data: PatientData, *, modalities: Sequence[str] | None = None,
                   return_logvar: bool = False, batch_size: int = 1024) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Posterior mean (N, latent_dim) float32 from the modalities each patient has.

        Covariates never block a latent: the decoders are not used, and conditioned encoders read a
        missing or unseen level (a new site) as the "unknown" code they were trained with.
        ``modalities`` restricts the experts used (e.g. ``["clinical"]``) among those the model was
        fitted on; a patient with none of them gets the prior mean 0.
        """
        use = tuple(modalities or self.modalities)
        arrays = self._arrays(data)
        mus, lvs = [], []
        for batch in iterate_batches(arrays, batch_size=min(batch_size, len(data)), order=np.arange(len(data))):
            mu, lv = _posterior(self._require_module(), self.params, batch, use)
            keep = batch["weight"] > 0
            mus.append(np.asarray(mu)[keep])
            lvs.append(np.asarray(lv)[keep])
        mu, lv = np.concatenate(mus), np.concatenate(lvs)
        return (mu, lv) if return_logvar else mu

    def informed(self, data: PatientData) -> np.ndarray:
        """(N,) bool: the patient has an input the model uses (a CXR token or an observed clinical value).

        An uninformed patient's latent is the prior mean 0: a placeholder, not a position to cluster.
        """
        return informed_rows(self._arrays(data))

    def evaluate(self, data: PatientData) -> dict[str, float]:
        """Reconstruction quality from the joint posterior mean, per modality, over patients having it.

        Keys: ``nll_cxr``/``nll_clinical`` (mean per-patient NLL), ``kl`` (mean), ``cxr_cosine``,
        ``clinical_continuous_rmse`` (standardized units), ``clinical_binary_accuracy``,
        ``clinical_categorical_accuracy`` (observed values only).
        """
        module = self._require_module()
        arrays = self._arrays(data)
        out: dict[str, list] = {k: [] for k in ("nll_cxr", "nll_clinical", "kl", "cos", "pred", "present")}
        for batch in iterate_batches(arrays, batch_size=min(1024, len(data)), order=np.arange(len(data))):
            res = _reconstruct(module, self.params, batch, self.modalities)
            keep = batch["weight"] > 0
            for k in ("nll_cxr", "nll_clinical", "kl", "cos", "pred"):
                out[k].append(np.asarray(res[k])[keep])
        cat = {k: np.concatenate(v) for k, v in out.items() if v}
        has_cxr, has_clin = arrays["cxr_present"] > 0, arrays["clin_present"] > 0
        metrics = {"n_patients": len(data), "n_with_cxr": int(has_cxr.sum()), "n_with_clinical": int(has_clin.sum()),
                   "kl": float(cat["kl"].mean())}
        if has_cxr.any():
            metrics |= {"nll_cxr": float(cat["nll_cxr"][has_cxr].mean()), "cxr_cosine": float(cat["cos"][has_cxr].mean())}
        if has_clin.any():
            metrics |= {"nll_clinical": float(cat["nll_clinical"][has_clin].mean())}
            metrics |= _clinical_scores(cat["pred"], arrays["clin_values"], arrays["clin_mask"] > 0,
                                        self.encoder.layout)
        return metrics

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``params.msgpack``, ``model.json`` (shapes, modalities, CXR scaling), ``clinical_encoder.json``, ``fusion_config.yaml``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        module = self._require_module()
        (directory / "params.msgpack").write_bytes(serialization.to_bytes(self.params))
        (directory / "model.json").write_text(json.dumps({
            "layout": asdict(module.layout), "cxr_dim": module.cxr_dim, "modalities": list(self.modalities),
            "cxr_mean": self.cxr_mean.tolist(), "cxr_std": self.cxr_std.tolist()}))
        self.encoder.save(directory / "clinical_encoder.json")
        self.covariates.save(directory / "covariates.json")
        dump_config(self.cfg, directory / "fusion_config.yaml")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FusionVAE:
        """Read a model written by :meth:`save`."""
        from fusion.config import load_fusion_config

        directory = Path(directory)
        meta = json.loads((directory / "model.json").read_text())
        vae = cls(load_fusion_config(directory / "fusion_config.yaml"), modalities=meta["modalities"])
        vae.encoder = ClinicalEncoder.load(directory / "clinical_encoder.json")
        vae.cxr_mean = np.asarray(meta["cxr_mean"], np.float32)
        vae.cxr_std = np.asarray(meta["cxr_std"], np.float32)
        vae.covariates = CovariateEncoder.load(directory / "covariates.json")
        lay = meta["layout"]
        vae.module = vae._build_module(ClinicalLayout(lay["n_continuous"], lay["n_binary"],
                                                      tuple(lay["categorical_sizes"])), meta["cxr_dim"])
        n_c, d = vae.module.layout.width, meta["cxr_dim"]
        dummy = {"cxr": np.zeros((1, 1, d), np.float32), "cxr_tokens": np.ones((1, 1), bool),
                 "cxr_target": np.zeros((1, d), np.float32), "cxr_present": np.ones(1, np.float32),
                 "clin_values": np.zeros((1, max(n_c, 1)), np.float32), "clin_mask": np.ones((1, max(n_c, 1)), np.float32),
                 "clin_present": np.ones(1, np.float32), "weight": np.ones(1, np.float32)}
        if vae.covariates.width:
            dummy["cov"] = np.zeros((1, vae.covariates.width), np.float32)
        template = _init_params(vae.module, dummy, seed=0)
        vae.params = serialization.from_bytes(template, (directory / "params.msgpack").read_bytes())
        return vae

    # ---------------------------------------------------------------- internals
    def _build_module(self, layout: ClinicalLayout, cxr_dim: int) -> FusionModule:
        m = self.cfg.model
        return FusionModule(layout=layout, cxr_dim=cxr_dim, latent_dim=m.latent_dim, hidden=m.hidden,
                            n_layers=m.n_layers, heads=m.attention_heads, pooling=self.cfg.cxr.pooling,
                            cxr_likelihood=self.cfg.cxr.likelihood, covariate_sizes=self.covariates.sizes,
                            condition_encoders=self.cfg.conditioning.encoders)

    def _require_module(self) -> FusionModule:
        if self.module is None or self.encoder is None:
            raise RuntimeError("FusionVAE is not fitted: call fit() or FusionVAE.load() first")
        return self.module

    def _arrays(self, data: PatientData) -> dict[str, np.ndarray]:
        return make_arrays(data, encoder=self.encoder, cxr_mean=self.cxr_mean, cxr_std=self.cxr_std,
                           modalities=self.modalities, covariates=self.covariates)


def _covariate_table(data: PatientData, names: Sequence[str]) -> pd.DataFrame:
    """``data.covariates[names]``; a name the data was not loaded with raises naming the config key."""
    missing = [n for n in names if n not in data.covariates.columns]
    if missing:
        raise ValueError(f"fusion.covariates {missing} were not loaded with the patient data: pass "
                         "covariates=cfg.covariates to fusion.data.load_patient_data")
    return data.covariates[list(names)]


def _init_params(module: FusionModule, batch: dict[str, np.ndarray], *, seed: int) -> dict:
    """Parameters of ``module`` for a batch of this shape (one jitted init instead of many eager ops)."""
    init = jax.jit(lambda b, k1, k2: module.init({"params": k1}, b, k2))
    return init(batch, jax.random.PRNGKey(seed), jax.random.PRNGKey(seed + 1))["params"]


@partial(jax.jit, static_argnums=(0, 3))
def _posterior(module: FusionModule, params, batch, use: tuple[str, ...]):
    return module.apply({"params": params}, batch, use=use, method=FusionModule.posterior)


@partial(jax.jit, static_argnums=(0, 3))
def _reconstruct(module: FusionModule, params, batch, use: tuple[str, ...]) -> dict[str, jax.Array]:
    def run(mod: FusionModule) -> dict[str, jax.Array]:
        mu, lv = mod.posterior(batch, use=use)
        rec = mod.reconstruction_nll(mu, batch)
        pred = mod.decode_cxr(mu, batch)
        target = batch["cxr_target"]
        cos = (pred * target).sum(-1) / (jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(target, axis=-1) + 1e-6)
        return {"nll_cxr": rec["cxr"], "nll_clinical": rec["clinical"], "kl": kl_standard_normal(mu, lv),
                "cos": cos, "pred": mod.decode_clinical(mu, batch)}
    return nn.apply(run, module)({"params": params})


def _clinical_scores(pred: np.ndarray, values: np.ndarray, observed: np.ndarray, layout: ClinicalLayout) -> dict[str, float]:
    nc, nb = layout.n_continuous, layout.n_binary
    out: dict[str, float] = {}
    if nc and observed[:, :nc].any():
        err = (pred[:, :nc] - values[:, :nc])[observed[:, :nc]]
        out["clinical_continuous_rmse"] = float(np.sqrt((err ** 2).mean()))
    if nb and observed[:, nc:nc + nb].any():
        ok = ((pred[:, nc:nc + nb] > 0) == (values[:, nc:nc + nb] > 0.5))[observed[:, nc:nc + nb]]
        out["clinical_binary_accuracy"] = float(ok.mean())
    start, hits, total = nc + nb, 0, 0
    for size in layout.categorical_sizes:
        sl = slice(start, start + size)
        rows = observed[:, start]
        hits += int((pred[rows, sl].argmax(1) == values[rows, sl].argmax(1)).sum())
        total += int(rows.sum())
        start += size
    if total:
        out["clinical_categorical_accuracy"] = hits / total
    return out
