"""Survival head stage: tokens -> selective SSM -> Cox / discrete-time / logistic loss, with baselines.

``run_survival(cfg, cohort=, store=, selection=, latents=, out=)`` (called by ``fusion.run`` with the
``survival:`` section, or ``python -m fusion.survival``) does, per endpoint:

1. Rows: patients whose endpoint is observed; for time-to-event endpoints with a landmark
   (``tokens.landmark_days``), only patients still event-free and uncensored after the landmark.
2. Inputs: CXR images acquired up to the landmark (a CXR taken after the landmark would reveal that
   the patient was alive then; images without an offset are used or not per ``tokens.unknown_offset``),
   the last ``tokens.max_images`` of them in time order; clinical feature variables; the fusion
   latent: ``tokens.latent: frozen`` reads it from ``latents.zarr`` (the fusion stage's VAE, trained
   once on its own split), ``joint`` trains a fusion VAE together with the head in each fold (below),
   ``none`` leaves it out.
3. Patient-level K-fold (seeded): in each fold the clinical encoder, CXR standardization, the head
   (early-stopped on a validation part of the training patients) and the baselines
   (:mod:`fusion.survival_baselines`) are fitted on training patients only; every reported risk is
   out-of-fold. Cox-type risks are centred by their training-fold mean (the partial likelihood does
   not fix the offset), so pooled out-of-fold risks are comparable across folds.
   Joint mode (shared latent): each head member is trained with its own fusion VAE (:mod:`fusion.module`,
   sizes/KL/clinical options from the fusion config: ``fusion.run`` passes its own, the CLI takes
   ``--fusion-config`` or uses the :class:`fusion.config.FusionConfig` defaults) on the fold's training
   patients only. In one jitted forward the VAE's posterior mean of each patient (from the same landmark
   CXRs and clinical values the head sees) is the head's latent token; the loss is the VAE's negative
   ELBO (:func:`fusion.model.make_loss_fn`) + ``joint.weight`` x the survival loss, so the survival
   gradient reaches the VAE encoders. Early stopping uses the survival loss of the validation part;
   test-fold risks come from the jointly trained pair. ``latents.zarr`` is not read.
4. Heads: ``head.ensemble`` members per fold, each starting from the exact ridge fit of its linear term
   (:mod:`fusion.survival_linear`) with the token network's output at 0; the configured
   ``evaluation.ablations`` (other token networks, or one token group dropped) are trained the same way.
5. Metrics on the out-of-fold risks and survival curves (:mod:`fusion.survival_eval`): Harrell's, Uno's and
   Antolini's C, td-AUROC at horizons, integrated Brier score (Breslow baseline hazard from the training
   fold) and calibration at a horizon, each with a paired patient-bootstrap CI, head-minus-model differences,
   and ``flags`` (head significantly worse than clinical CoxPH, C < 0.5, < 10 events); binary endpoints
   report the C-index (AUROC). ``tokens`` states the head's inputs in one sentence.

Writes ``metrics.json``, ``risk.parquet`` (one row per patient and endpoint: ``patient_id``,
``endpoint``, ``fold``, ``risk`` of the head, ``risk_<model>``), ``figures/*.png`` and the run record
(``config.resolved.yaml``: the composed config the head used).
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from core import cli
from core.config import ConfigError, read_yaml, validate_config
from core.provenance import sha256_json, write_run_record
from core.safeio import check_output_dir, locked_output, relative_path, write_parquet, write_text
from fusion.clinical import ClinicalEncoder, SchemaError
from fusion.config import FusionConfig, load_fusion_config
from fusion.cox import bin_index, binary_outcome_loss, cox_loss, discrete_hazard_loss, discrete_hazard_risk, time_bins
from fusion.data import PatientData, load_patient_data, resolve_cxr_model
from fusion.latents import read_informed, read_latents
from fusion.model import FusionVAE, informed_rows, make_loss_fn
from fusion.module import FusionModule
from fusion.survival_baselines import clinical_design, fit_predict, fit_predict_forest, pca_design, truth_design
from fusion.survival_config import Endpoint, SurvivalConfig
from fusion.survival_eval import calibration_tables, endpoint_flags, eval_times, evaluate_endpoint, token_summary
from fusion.survival_figures import plot_c_index, plot_calibration, plot_km_by_risk
from fusion.survival_head import SurvivalHead
from fusion.survival_linear import fit_linear_term, pad_rows
from fusion.survival_metrics import Interval, breslow_cumulative_hazard, cox_survival
from fusion.train import fit, iterate_batches

log = logging.getLogger(__name__)
PREDICT_BATCH = 256
VAE_PREFIX = "vae_"   # joint mode: batch keys of the VAE's arrays (fusion.model.make_arrays) carry this prefix


# ----------------------------------------------------------------------------------------- inputs
@dataclass
class SerialCXR:
    """CXR images kept for the head: ``cxr`` (N, S, T, D), ``mask`` (N, S), ``days`` (N, S) NaN unknown."""

    cxr: np.ndarray
    mask: np.ndarray
    days: np.ndarray
    notes: dict[str, int] = field(default_factory=dict)

    def tokens(self, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> ``(x (N, L, D), mask (N, L), days (N, L))``: one token per image (mean) or all of its tokens."""
        n, s, t, d = self.cxr.shape
        if mode == "image" or t == 1:
            return self.cxr.mean(2), self.mask, self.days
        return self.cxr.reshape(n, s * t, d), np.repeat(self.mask, t, 1), np.repeat(self.days, t, 1)


def landmark_images(data: PatientData, *, landmark_days: float | None, max_images: int,
                    unknown_offset: str) -> SerialCXR:
    """Images with ``offset_days <= landmark_days`` (all when None), the last ``max_images`` in time order."""
    offsets = data.cxr_offsets
    unknown = np.isnan(offsets) & data.cxr_mask
    ok = data.cxr_mask.copy()
    if landmark_days is not None:
        ok &= (offsets <= landmark_days) | (unknown & (unknown_offset == "include"))
    elif unknown_offset == "exclude":
        ok &= ~unknown
    from_end = np.cumsum(ok[:, ::-1], axis=1)[:, ::-1]          # 1 = last kept image of the row
    keep = ok & (from_end <= max_images)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :max_images]   # kept images first, time order
    rows = np.arange(len(keep))[:, None]
    late = data.cxr_mask & ~unknown & (offsets > landmark_days) if landmark_days is not None else np.zeros_like(ok)
    notes = {"images_after_landmark": int(late.sum()),
             "images_without_offset_used": int((unknown & keep).sum()),
             "images_without_offset_dropped": int((unknown & ~ok).sum()),
             "images_beyond_max_images": int((ok & ~keep).sum()),
             "patients_without_cxr": int((~keep.any(1)).sum())}
    mask = keep[rows, order]
    cxr = np.where(mask[..., None, None], data.cxr[rows, order], 0.0).astype(np.float32)
    days = np.where(mask, offsets[rows, order], np.nan).astype(np.float32)
    return SerialCXR(cxr=cxr, mask=mask, days=days, notes=notes)


@dataclass
class Target:
    """Rows of one endpoint and their outcome arrays (aligned to ``rows``)."""

    endpoint: Endpoint
    rows: np.ndarray                      # positions into PatientData
    time: np.ndarray | None = None        # (n,) days
    event: np.ndarray | None = None       # (n,) 0/1
    y: np.ndarray | None = None           # (n,) 0/1 for binary endpoints
    notes: dict[str, int] = field(default_factory=dict)


def endpoint_target(data: PatientData, endpoint: Endpoint, *, landmark_days: float | None) -> Target:
    """Observed outcome rows of ``endpoint`` (role=outcome columns); bad values raise naming the column."""
    def column(name: str) -> np.ndarray:
        if name not in data.outcomes.columns:
            raise SchemaError(f"endpoint '{endpoint.name}': column '{name}' is not a role=outcome column of "
                              f"clinical_schema.json (outcome columns: {list(data.outcomes.columns)})")
        return pd.to_numeric(data.outcomes[name], errors="coerce").to_numpy(float)

    notes: dict[str, int] = {}
    if endpoint.kind == "binary":
        y = column(endpoint.binary)
        ok = ~np.isnan(y)
        bad = ok & ~np.isin(y, [0, 1])
        if bad.any():
            raise SchemaError(f"endpoint '{endpoint.name}': column '{endpoint.binary}' must be 0/1, e.g. patients "
                              f"{list(data.patient_ids[bad][:5])}")
        notes["patients_missing_outcome"] = int((~ok).sum())
        rows = np.flatnonzero(ok)
        return Target(endpoint, rows, y=y[rows].astype(np.int32), notes=notes)
    time, event = column(endpoint.time), column(endpoint.event)
    ok = ~np.isnan(time) & ~np.isnan(event)
    bad = ok & ((time < 0) | ~np.isin(event, [0, 1]))
    if bad.any():
        raise SchemaError(f"endpoint '{endpoint.name}': '{endpoint.time}' must be >= 0 and '{endpoint.event}' 0/1, "
                          f"e.g. patients {list(data.patient_ids[bad][:5])}")
    notes["patients_missing_outcome"] = int((~ok).sum())
    if landmark_days is not None:
        early = ok & (time <= landmark_days)
        notes["patients_event_or_censored_before_landmark"] = int(early.sum())
        ok &= ~early
    rows = np.flatnonzero(ok)
    return Target(endpoint, rows, time=time[rows], event=event[rows].astype(np.int32), notes=notes)


def align_latents(path: Path, patient_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``latents.zarr`` aligned to ``patient_ids`` -> ``(latent (N, Z), present (N,))`` (zeros where absent).

    A latent the VAE inferred from no input at all (the prior mean) counts as absent.
    """
    ids, lat, _ = read_latents(path)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    present = np.isin(patient_ids, ids)
    rows = pos.loc[patient_ids[present]].to_numpy()
    out = np.zeros((len(patient_ids), lat.shape[1]), np.float32)
    out[present] = lat[rows]
    present[present] = read_informed(path)[rows]
    return out, present


# ----------------------------------------------------------------------------------------- arrays
@dataclass
class Preprocessor:
    """Fitted on training rows: clinical encoder, CXR token and latent standardization."""

    encoder: ClinicalEncoder
    cxr_mean: np.ndarray
    cxr_std: np.ndarray
    lat_mean: np.ndarray
    lat_std: np.ndarray

    @classmethod
    def fit(cls, data: PatientData, x: np.ndarray, xmask: np.ndarray, latent: np.ndarray, lat_ok: np.ndarray,
            rows: np.ndarray, cfg: SurvivalConfig) -> Preprocessor:
        enc = ClinicalEncoder(out_of_range=cfg.tokens.out_of_range).fit(
            data.clinical.iloc[rows], data.schema, columns=cfg.tokens.clinical_columns,
            exclude=cfg.tokens.clinical_exclude)
        tok = x[rows][xmask[rows]]
        lat = latent[rows][lat_ok[rows]]
        return cls(enc, *_moments(tok, x.shape[-1]), *_moments(lat, latent.shape[-1]))

    def arrays(self, data: PatientData, x: np.ndarray, xmask: np.ndarray, days: np.ndarray, latent: np.ndarray,
               lat_ok: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Head batch arrays (layout in :mod:`fusion.survival_head`) for ``rows``."""
        clin = self.encoder.transform(data.clinical.iloc[rows], schema=data.schema)
        m = xmask[rows]
        known = m & ~np.isnan(days[rows])
        return {
            "clin_values": clin.values, "clin_mask": clin.mask.astype(np.float32),
            "latent": ((latent[rows] - self.lat_mean) / self.lat_std).astype(np.float32),
            "latent_mask": lat_ok[rows].astype(np.float32),
            "cxr": np.where(m[..., None], (x[rows] - self.cxr_mean) / self.cxr_std, 0.0).astype(np.float32),
            "cxr_mask": m.astype(np.float32),
            "cxr_days": np.where(known, days[rows], 0.0).astype(np.float32),
            "cxr_days_known": known.astype(np.float32),
        }


def _moments(x: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) < 2:
        return np.zeros(d, np.float32), np.ones(d, np.float32)
    return x.mean(0).astype(np.float32), (x.std(0) + 1e-6).astype(np.float32)


# ----------------------------------------------------------------------------------------- head
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


@lru_cache(maxsize=8)
def _jitted(module: SurvivalHead) -> tuple[Any, Any]:
    """``(init, apply)`` of ``module``, jitted once per distinct head (shared across folds)."""
    return jax.jit(module.init), jax.jit(lambda p, b: module.apply({"params": p}, b))


@lru_cache(maxsize=8)
def _jitted_joint(loss: JointLoss) -> Any:
    return jax.jit(loss.outputs)


def _score(loss: HeadLoss, params: Any, arrays: dict[str, np.ndarray]) -> float:
    """``loss`` of ``params`` on all of ``arrays`` in one batch (zero-weight padding rows are ignored)."""
    return float(_jitted_loss(loss)(params, pad_rows(arrays), jax.random.PRNGKey(0), 0)[0])


@lru_cache(maxsize=16)
def _jitted_loss(loss: HeadLoss) -> Any:
    return jax.jit(loss)


def _predict(apply: Any, params: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Outputs of the jitted ``apply(params, batch)`` over ``arrays`` (rows in order)."""
    n = len(next(iter(arrays.values())))
    outs = []
    for batch in iterate_batches(arrays, batch_size=PREDICT_BATCH, order=np.arange(n)):   # one shape for every fold
        outs.append(np.asarray(apply(params, batch))[batch["weight"] > 0])
    return np.concatenate(outs).astype(np.float64)


@dataclass
class FoldResult:
    """Out-of-fold outputs of one fold: risks per model, survival curves on the grid, head training epochs."""

    risk: dict[str, np.ndarray]
    surv: dict[str, np.ndarray]
    head_epochs: list[int]
    head_best_epochs: list[int]


def _take(arrays: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in arrays.items()}


def head_variants(cfg: SurvivalConfig, module: SurvivalHead) -> dict[str, SurvivalHead]:
    """``{"head": module}`` plus one module per ``evaluation.ablations`` entry (other mixer, or a token group
    dropped; an ablation that would leave no token group, or that equals the head, is skipped with a log line)."""
    out = {"head": module}
    for name in cfg.evaluation.ablations:
        if name in ("gru", "mlp", "linear"):
            variant = module.clone(mixer=name)
        else:
            group = {"no_cxr": "use_cxr", "no_clinical": "use_clinical", "no_latent": "use_latent"}[name]
            variant = module.clone(**{group: False})
            if not (variant.use_cxr or variant.use_clinical or variant.use_latent):
                log.info("ablation %s skipped: no token group would be left", name)
                continue
        if variant == module:
            log.info("ablation %s skipped: it is the head itself (mixer %s, groups as configured)", name, module.mixer)
            continue
        out[name] = variant
    return out


def _fold(cfg: SurvivalConfig, data: PatientData, target: Target, inputs: dict[str, np.ndarray],
          test: np.ndarray, grid: np.ndarray | None, *, fold: int, vae_data: PatientData | None = None,
          fusion: FusionConfig | None = None) -> FoldResult:
    """Fit preprocessing, ``head.ensemble`` heads per variant (head + ablations) and the baselines on the rows
    outside ``test``; predict ``test``.

    Each head early-stops on its own validation part of the training rows (:func:`_validation_rows`, seeded by
    ``(seed, fold, member)``, the same parts for every variant); the fold's output is the members' mean.
    ``test`` is a mask over ``target.rows``; ``grid``: times of the survival curves (None for binary endpoints).
    Joint mode (``vae_data``, the VAE's inputs, and ``fusion`` given): each member trains a fusion VAE with the
    head (:class:`JointLoss`), its preprocessing fitted on the rows outside ``test``.
    """
    rows = target.rows
    fit_rows = ~test
    kind = target.endpoint.kind if target.endpoint.kind == "binary" else cfg.loss.kind
    x, xmask, days, latent, lat_ok = (inputs[k] for k in ("x", "xmask", "days", "latent", "lat_ok"))
    pre = Preprocessor.fit(data, x, xmask, latent, lat_ok, rows[fit_rows], cfg)
    cuts = None
    if kind == "binary":
        targets = {"y": target.y.astype(np.float32)}
    else:
        targets = {"time": target.time.astype(np.float32), "event": target.event.astype(np.float32)}
        if kind == "discrete":
            cuts = time_bins(target.time[fit_rows], target.event[fit_rows], n_bins=cfg.loss.n_bins)
            targets["bins"] = bin_index(target.time, cuts)
    arr = {name: pre.arrays(data, x, xmask, days, latent, lat_ok, rows[sel]) | _take(targets, sel)
           for name, sel in (("fit", fit_rows), ("test", test))}
    vae = vae_train = None
    if vae_data is not None:
        vae, vae_train = FusionVAE(fusion), vae_data.subset(rows[fit_rows])
        vae.prepare(vae_train, seed=cfg.seed)                   # preprocessing from training patients only
        for name, sel in (("fit", fit_rows), ("test", test)):
            vae_arr = vae.arrays(vae_data.subset(rows[sel]))
            informed = informed_rows(vae_arr)                   # else the latent is the prior: absent
            arr[name] |= {f"{VAE_PREFIX}{k}": v for k, v in vae_arr.items()}
            arr[name] |= {"latent": np.zeros((len(informed), fusion.model.latent_dim), np.float32),
                          "latent_mask": informed.astype(np.float32)}

    variables = pre.encoder.variables
    h = cfg.head
    module = SurvivalHead(variable_of_column=tuple(i for i, v in enumerate(variables) for _ in range(v.stop - v.start)),
                          n_variables=len(variables), n_out=(len(cuts) + 1) if kind == "discrete" else 1,
                          d_model=h.d_model, n_layers=h.n_layers, d_state=h.d_state, expand=h.expand, d_conv=h.d_conv,
                          scan=h.scan, use_clinical=cfg.tokens.clinical and bool(variables),
                          use_latent=cfg.tokens.latent != "none", use_cxr=cfg.tokens.cxr, mixer=h.mixer,
                          linear_skip=h.linear_skip)
    risk: dict[str, np.ndarray] = {}
    surv: dict[str, np.ndarray] = {}
    epochs: dict[str, list[int]] = {}
    best_epochs: dict[str, list[int]] = {}
    for name, variant in head_variants(cfg, module).items():
        out, epochs[name], best_epochs[name] = _train_members(cfg, variant, kind, arr, target, fit_rows, fold=fold,
                                                              vae=vae, vae_train=vae_train, fusion=fusion)
        if kind == "discrete":
            risk[name] = discrete_hazard_risk(out["test"])
            hazards = 1.0 / (1.0 + np.exp(-out["test"]))
            surv[name] = np.cumprod(1.0 - hazards, axis=1)[:, bin_index(grid, cuts)]
        else:
            risk[name] = out["test"][:, 0]
            if kind == "cox":
                surv[name] = _cox_curves(target, fit_rows, out["fit"][:, 0], risk[name], grid)

    # baselines on the same rows (no early stopping needed)
    designs = _baseline_designs(cfg, data, target, inputs, pre, fit_rows, cfg.seed * 1000 + fold)
    for name, design in designs.items():
        if name == "rsf":
            risk[name], curves = fit_predict_forest(design, fit_rows, test, time=target.time, event=target.event,
                                                    y=target.y, grid=grid, seed=cfg.seed * 1000 + fold)
            if curves is not None:
                surv[name] = curves
            continue
        scores = fit_predict(design, fit_rows, fit_rows | test, time=target.time, event=target.event,
                             y=target.y, penalizer=cfg.evaluation.penalizer)
        pos = np.flatnonzero(fit_rows | test)
        full = np.full(len(rows), np.nan)
        full[pos] = scores
        risk[name] = full[test]
        if kind != "binary":
            shift = np.nanmean(full[fit_rows])
            risk[name] = risk[name] - shift
            surv[name] = _cox_curves(target, fit_rows, full[fit_rows] - shift, risk[name], grid)
    return FoldResult(risk=risk, surv=surv, head_epochs=epochs, head_best_epochs=best_epochs)


def _train_members(cfg: SurvivalConfig, module: SurvivalHead, kind: str, arr: dict[str, dict[str, np.ndarray]],
                   target: Target, fit_rows: np.ndarray, *, fold: int, vae: FusionVAE | None,
                   vae_train: PatientData | None, fusion: FusionConfig | None) -> tuple[dict[str, np.ndarray], list[int], list[int]]:
    """Train ``head.ensemble`` members of ``module`` -> ``({"fit", "test"}: mean outputs, epochs, best epochs)``.

    Joint mode: ``vae`` (preprocessing fitted on ``vae_train``, the fold's training patients) is trained with it.
    """
    h = cfg.head
    loss, score = HeadLoss(module, kind, cfg.loss.ties, h.token_dropout), HeadLoss(module, kind, cfg.loss.ties)
    apply = _jitted(module)[1]
    if vae is not None:
        vae_json = fusion.model_dump_json(include={"model", "kl"})
        loss = JointLoss(loss, vae.module, vae_json, cfg.joint.weight)
        score = JointLoss(score, vae.module, vae_json, cfg.joint.weight, score=True)
        apply = _jitted_joint(score)
    events = (target.y if kind == "binary" else target.event).astype(np.int64)[fit_rows]
    members: dict[str, list[np.ndarray]] = {"fit": [], "test": []}
    epochs, best_epochs = [], []
    for m in range(h.ensemble):
        seed = int(np.random.SeedSequence([cfg.seed, fold, m]).generate_state(1)[0] >> 1)
        val = _validation_rows(len(events), np.arange(len(events)), events, fraction=cfg.evaluation.val_fraction,
                               rng=np.random.default_rng([cfg.seed, fold, m]))
        train_arr, val_arr = _take(arr["fit"], ~val), _take(arr["fit"], val)
        head_in = {k: v[:2] for k, v in train_arr.items() if not k.startswith(VAE_PREFIX)}
        params = _jitted(module)[0](jax.random.PRNGKey(seed), head_in)["params"]
        if vae is not None:
            vae.prepare(vae_train, seed=seed)                   # same preprocessing, this member's initialisation
            params = {"head": params, "vae": vae.params}
        elif "linear" in params:                                # start from the exact ridge fit of the linear term
            params = {**params, "linear": fit_linear_term(module, HeadLoss, kind, cfg.loss.ties, train_arr,
                                                          penalty=h.linear_penalty)}
        result = fit(loss, params, train_arr, val_arr, cfg=cfg.train_config(), seed=seed, eval_fn=score, progress=False)
        best = result.params
        if vae is None and "linear" in params and _score(score, params, val_arr) <= _score(score, best, val_arr):
            best = params                                       # training never beat the start on validation
        out = {name: _predict(apply, best, arr[name]) for name in ("fit", "test")}
        shift = out["fit"].mean(0) if kind == "cox" else 0.0   # the partial likelihood leaves the offset free
        for name in members:
            members[name].append(out[name] - shift)
        epochs.append(result.epochs_run)
        best_epochs.append(result.best_epoch)
    return {name: np.mean(v, axis=0) for name, v in members.items()}, epochs, best_epochs


def _cox_curves(target: Target, fit_rows: np.ndarray, fit_risk: np.ndarray, test_risk: np.ndarray,
                grid: np.ndarray) -> np.ndarray:
    """Survival on ``grid`` of test rows from a Breslow baseline fitted on ``fit_rows``."""
    if not np.isfinite(fit_risk).all() or not np.isfinite(test_risk).all():
        return np.full((len(test_risk), len(grid)), np.nan)
    times, h0 = breslow_cumulative_hazard(target.time[fit_rows], target.event[fit_rows], fit_risk)
    return cox_survival(test_risk, times, h0, grid)


def _baseline_designs(cfg: SurvivalConfig, data: PatientData, target: Target, inputs: dict[str, np.ndarray],
                      pre: Preprocessor, fit_rows: np.ndarray, seed: int) -> dict[str, pd.DataFrame]:
    rows = target.rows
    wanted = set(cfg.evaluation.baselines)
    designs: dict[str, pd.DataFrame] = {}
    if pre.encoder.variables and wanted & {"clinical_cox", "rsf"}:
        clin = pre.encoder.transform(data.clinical.iloc[rows], schema=data.schema)
        names = [f"{v.name}[{j}]" for v in pre.encoder.variables for j in range(v.stop - v.start)]
        design = clinical_design(clin.values, clin.mask, names)
        designs |= {k: design for k in ("clinical_cox", "rsf") if k in wanted}
    xmask = inputs["xmask"][rows]
    if xmask.any() and "cxr_pca_cox" in wanted:
        x = np.where(xmask[..., None], (inputs["x"][rows] - pre.cxr_mean) / pre.cxr_std, 0.0)
        mean = x.sum(1) / np.maximum(xmask.sum(1, keepdims=True), 1)
        designs["cxr_pca_cox"] = pca_design(mean, xmask.any(1), fit_rows, n_components=cfg.evaluation.pca_components,
                                            seed=seed)
    truth_cols = cfg.evaluation.oracle_columns if cfg.evaluation.oracle_columns is not None else list(data.truth.columns)
    missing = [c for c in truth_cols if c not in data.truth.columns]
    if missing:
        raise SchemaError(f"evaluation.oracle_columns {missing} are not role=truth columns "
                          f"(truth columns: {list(data.truth.columns)})")
    if truth_cols and "oracle" in wanted:
        designs["oracle"] = truth_design(data.truth.iloc[rows][truth_cols])
    return designs


# ----------------------------------------------------------------------------------------- stage
def _folds(n: int, k: int, seed: int) -> np.ndarray:
    """Fold id (N,) of a seeded patient-level K-fold (rows are patients)."""
    fold = np.empty(n, np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return fold


def _validation_rows(n: int, rest: np.ndarray, events: np.ndarray, *, fraction: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Early-stopping mask (N,) drawn from the training rows ``rest``, stratified by ``events`` (0/1): with at
    least two events in ``rest`` the validation part holds one or more (an event-free Cox validation loss is
    identically 0, so early stopping would always keep the first epoch)."""
    val = np.zeros(n, bool)
    for cls in (1, 0):
        pool = rest[events[rest] == cls]
        k = round(fraction * len(pool))
        if cls == 1 and len(pool) >= 2:
            k = max(k, 1)
        val[rng.choice(pool, k, replace=False)] = True
    if not val.any():
        val[rng.choice(rest, 1)] = True
    return val


def run_endpoint(cfg: SurvivalConfig, data: PatientData, target: Target, inputs: dict[str, np.ndarray], *,
                 vae_data: PatientData | None = None, fusion: FusionConfig | None = None
                 ) -> tuple[dict[str, Any], pd.DataFrame]:
    """K-fold out-of-fold risks + metrics of one endpoint -> ``(metrics, risk frame)`` (joint mode: see :func:`_fold`)."""
    ev = cfg.evaluation
    n = len(target.rows)
    n_events = int((target.y if target.endpoint.kind == "binary" else target.event).sum())
    if n < 2 * ev.folds or n_events < ev.folds:
        raise ValueError(f"endpoint '{target.endpoint.name}': {n} patients with {n_events} events are too few for "
                         f"{ev.folds}-fold evaluation (evaluation.folds)")
    binary = target.endpoint.kind == "binary"
    times = eval_times(target.time, target.event, cfg) if not binary else None
    fold = _folds(n, ev.folds, cfg.seed if ev.fold_seed is None else ev.fold_seed)
    risk: dict[str, np.ndarray] = {}
    surv: dict[str, np.ndarray] = {}
    epochs, ablation_epochs = [], []
    for f in tqdm(range(ev.folds), desc=f"survival {target.endpoint.name}", unit="fold"):
        test = fold == f
        res = _fold(cfg, data, target, inputs, test, times.grid if times else None, fold=f, vae_data=vae_data,
                    fusion=fusion)
        for store, part in ((risk, res.risk), (surv, res.surv)):
            for k, v in part.items():
                store.setdefault(k, np.full((n,) + v.shape[1:], np.nan))[test] = v
        epochs.append({"fold": f, "epochs": res.head_epochs["head"], "best_epoch": res.head_best_epochs["head"]})
        ablation_epochs.append({"fold": f, **{k: v for k, v in res.head_best_epochs.items() if k != "head"}})
    metrics = {
        "kind": target.endpoint.kind, "loss": "logistic" if binary else cfg.loss.kind,
        "n_patients": n, "n_events": n_events, "folds": ev.folds, "row_notes": target.notes, "training": epochs,
        "models": {"head": cfg.head.mixer, **{k: "ablation" for k in cfg.evaluation.ablations if k in risk},
                   **{k: "baseline" for k in cfg.evaluation.baselines if k in risk}},
        **({"brier_grid_days": [float(times.brier_times[0]), float(times.brier_times[-1])],
            "horizons_days": times.horizons.tolist(), "calibration_horizon_days": times.calibration}
           if times else {}),
        "metrics": evaluate_endpoint(target.endpoint.kind, risk, surv, cfg, time=target.time, event=target.event,
                                     y=target.y, times=times),
    }
    if cfg.evaluation.ablations:
        metrics["ablation_best_epochs"] = ablation_epochs
    if times is not None and "calibration" in cfg.evaluation.metrics:
        metrics["calibration"] = {k: {c: np.asarray(v).tolist() for c, v in tab.items()} for k, tab in
                                  calibration_tables(target.time, target.event, surv, times,
                                                     groups=cfg.evaluation.calibration_groups).items()}
    metrics["flags"] = endpoint_flags(metrics["metrics"], n_events=n_events)
    frame = pd.DataFrame({"patient_id": data.patient_ids[target.rows], "endpoint": target.endpoint.name,
                          "fold": fold, "risk": risk["head"]})
    for k in risk:
        if k != "head":
            frame[f"risk_{k}"] = risk[k]
    return metrics, frame


def run_survival(cfg: SurvivalConfig, *, cohort: Path, store: Path | None, selection: Path | None = None,
                 latents: Path | None = None, out: Path, fusion: FusionConfig | None = None) -> dict[str, Path]:
    """Train and evaluate the survival head for every endpoint of ``cfg``; write outputs under ``out``.

    ``fusion``: the VAE's config in ``tokens.latent: joint`` mode (None: :class:`FusionConfig` defaults).
    """
    out = check_output_dir(Path(out), what="survival output folder")
    tok = cfg.tokens
    model, augmentation = _resolve_model(cfg, store, selection)
    n_slots = _max_images_per_patient(Path(cohort))
    data = load_patient_data(cohort, store if model else None, model=model, augmentation=augmentation,
                             serial="all", max_images=n_slots,
                             covariates=fusion.covariates if tok.latent == "joint" and fusion else ())
    serial = landmark_images(data, landmark_days=tok.landmark_days, max_images=tok.max_images,
                             unknown_offset=tok.unknown_offset)
    x, xmask, days = serial.tokens(tok.cxr_tokens)
    if tok.latent == "frozen":
        if latents is None:
            raise ConfigError("survival tokens.latent is 'frozen' but no latents.zarr was given "
                              "(--latents FUSION_DIR/latents.zarr, or set tokens.latent: none)")
        latent, lat_ok = align_latents(Path(latents), data.patient_ids)
    else:   # joint: the latent token is computed in the forward pass (presence per fold from the VAE's inputs)
        latent, lat_ok = np.zeros((len(data), 1), np.float32), np.zeros(len(data), bool)
    inputs = {"x": x, "xmask": xmask, "days": days, "latent": latent, "lat_ok": lat_ok}
    joint: dict[str, Any] = {}
    if tok.latent == "joint":   # the VAE sees the head's landmark images (never a later one) and clinical values
        fusion = fusion or FusionConfig()
        joint = {"vae_data": replace(data, cxr=serial.cxr, cxr_mask=serial.mask, cxr_offsets=serial.days),
                 "fusion": fusion}

    n_clinical = len(ClinicalEncoder(out_of_range="mask").fit(data.clinical, data.schema, columns=tok.clinical_columns,
                                                             exclude=tok.clinical_exclude).variables) if tok.clinical else 0
    latent_dim = (fusion.model.latent_dim if tok.latent == "joint" else latent.shape[1]) if tok.latent != "none" else None
    metrics: dict[str, Any] = {"tokens": token_summary(cfg, cxr_model=model, n_clinical=n_clinical, latent_dim=latent_dim),
                               "config": "config.resolved.yaml", "config_sha256": sha256_json(cfg.model_dump(mode="json")),
                               "cxr_model": model, "augmentation": augmentation, "input_notes": data.notes | serial.notes,
                               "latent": tok.latent, "patients_with_latent": int(lat_ok.sum()), "endpoints": {}}
    log.info("survival head tokens: %s", metrics["tokens"])
    if joint:
        metrics["joint_vae_config"] = joint["fusion"].model_dump(mode="json", include={"model", "kl", "clinical", "cxr"})
        del metrics["patients_with_latent"]
    frames = []
    figures = out / "figures"
    for endpoint in cfg.endpoints:
        target = endpoint_target(data, endpoint, landmark_days=tok.landmark_days if endpoint.kind != "binary" else None)
        ep_metrics, frame = run_endpoint(cfg, data, target, inputs, **joint)
        metrics["endpoints"][endpoint.name] = ep_metrics
        frames.append(frame)
        plot_c_index(ep_metrics["metrics"], figures / f"c_index_{endpoint.name}.png", title=endpoint.name)
        if endpoint.kind != "binary":
            plot_km_by_risk(target.time, target.event, frame, figures / f"km_{endpoint.name}.png",
                            groups=cfg.evaluation.risk_groups, title=endpoint.name)
            tables = {k: v for k, v in ep_metrics.get("calibration", {}).items()
                      if k in ("head", "clinical_cox", "rsf")}
            if tables:
                plot_calibration({k: {c: np.asarray(v) for c, v in t.items()} for k, t in tables.items()},
                                 ep_metrics["calibration_horizon_days"], figures / f"calibration_{endpoint.name}.png",
                                 title=endpoint.name)
        _log_summary(endpoint.name, ep_metrics)
    risk_path = out / "risk.parquet"
    write_parquet(pd.concat(frames, ignore_index=True), risk_path)
    metrics_path = out / "metrics.json"
    write_text(metrics_path, json.dumps(metrics, indent=2, default=_json_default))
    write_run_record(out, cfg, stage="fusion.survival", extra={
        **{name: relative_path(path, root=out.parent) for name, path in
           (("cohort", cohort), ("store", store), ("latents", latents))}, "cxr_model": model})
    return {"metrics": metrics_path, "risk": risk_path, "figures": figures}


def _resolve_model(cfg: SurvivalConfig, store: Path | None, selection: Path | None) -> tuple[str | None, str]:
    if not cfg.tokens.cxr:
        return None, cfg.tokens.augmentation
    if store is None:
        raise ConfigError("survival tokens.cxr is true but no embedding store was given (--store STORE.zarr)")
    return resolve_cxr_model(cfg.tokens.cxr_model, cfg.tokens.augmentation, selection, key="survival tokens.cxr_model")


def _max_images_per_patient(cohort: Path) -> int:
    manifest = pd.read_parquet(cohort / "manifest.parquet", columns=["patient_id"])
    return int(max(manifest["patient_id"].value_counts().max(), 1)) if len(manifest) else 1


def _log_summary(name: str, metrics: dict[str, Any]) -> None:
    c = metrics["metrics"].get("c_index", {})
    parts = [f"{k} {v['estimate']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" for k, v in c.items() if " - " not in k]
    log.info("survival %s (n=%d, events=%d): C-index %s", name, metrics["n_patients"], metrics["n_events"],
             "; ".join(parts))


def _json_default(obj: object) -> object:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Interval):
        return obj.as_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_survival_config(path: str | Path) -> SurvivalConfig:
    """A survival YAML, or the ``survival`` section of a fusion or composed pipeline config (``from:`` resolved).

    From a fusion or pipeline config, ``tokens.cxr_model: null`` means the fusion VAE's ``cxr.model`` (as
    :mod:`fusion.run` does), so this CLI and the fusion stage run the same head from the same file.
    """
    data = read_yaml(path)
    fusion = data.get("fusion") if "fusion" in data else data if "survival" in data else None
    if fusion is not None:
        fusion = fusion or {}
        data, source = fusion.get("survival") or {}, f"{path} [survival]"
        vae_model = (fusion.get("cxr") or {}).get("model")
        tokens = data.get("tokens") or {}
        if tokens.get("cxr_model") is None and vae_model is not None:
            data = {**data, "tokens": {**tokens, "cxr_model": vae_model}}
    else:
        source = str(path)
    return validate_config(data or {}, SurvivalConfig, source=source)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m fusion.survival --config FILE --cohort DIR [--store S] [--selection F] [--latents L]
    [--fusion-config F] --out DIR``."""
    ap = cli.parser("python -m fusion.survival", __doc__)
    ap.add_argument("--config", required=True, type=Path,
                    help="survival YAML (configs/survival/*.yaml) or a fusion config with a 'survival' section")
    ap.add_argument("--cohort", required=True, type=Path, help="cohort folder (manifest.parquet, clinical.parquet)")
    ap.add_argument("--store", type=Path, help="embedding store STORE.zarr")
    ap.add_argument("--selection", type=Path, help="BENCH_DIR/selection.json (when tokens.cxr_model is null)")
    ap.add_argument("--latents", type=Path, help="FUSION_DIR/latents.zarr (tokens.latent: frozen)")
    ap.add_argument("--fusion-config", type=Path,
                    help="fusion YAML or pipeline config whose VAE options (model, kl, clinical, cxr.pooling/likelihood) "
                         "the joint mode uses (tokens.latent: joint; default: FusionConfig defaults)")
    ap.add_argument("--out", required=True, type=Path, help="output folder (metrics.json, risk.parquet, figures/)")
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_survival_config(args.config)
    fusion = load_fusion_config(args.fusion_config) if args.fusion_config else None
    with locked_output(args.out):
        paths = run_survival(cfg, cohort=args.cohort, store=args.store, selection=args.selection,
                             latents=args.latents, out=args.out, fusion=fusion)
    summary = json.loads(paths["metrics"].read_text())
    for name, ep in summary["endpoints"].items():
        c = ep["metrics"]["c_index"]
        print(f"{name}: n={ep['n_patients']} events={ep['n_events']} " + "  ".join(
            f"{k}={v['estimate']:.3f} [{v['ci_low']:.3f},{v['ci_high']:.3f}]" for k, v in c.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
