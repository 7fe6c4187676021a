"""What the survival head reads: endpoint rows, landmark CXR images, the fusion latent, and the fitted preprocessing.

* :func:`endpoint_target`: the observed rows of one endpoint and their outcomes (:class:`Target`); with a landmark,
  only patients still event-free and uncensored after it.
* :func:`landmark_images`: CXR images acquired up to the landmark (a later CXR would reveal that the patient was
  alive then), the last ``tokens.max_images`` in time order (:class:`SerialCXR`).
* :func:`head_inputs`: every patient's CXR tokens, frozen latent (``latents.zarr``) and, in joint mode, the fusion
  VAE's inputs (:class:`HeadInputs`).
* :class:`Preprocessor`: fitted on training rows (clinical encoder, CXR token and latent standardization); turns
  rows of :class:`HeadInputs` into the batch arrays of :mod:`fusion.survival.network`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import ConfigError
from fusion.clinical import ClinicalEncoder, SchemaError
from fusion.data import PatientData
from fusion.latents import read_informed, read_latents
from fusion.survival.config import Endpoint, SurvivalConfig, TokenConfig


# ----------------------------------------------------------------------------------------- images
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


# ----------------------------------------------------------------------------------------- outcomes
@dataclass
class Target:
    """Rows of one endpoint and their outcome arrays (aligned to ``rows``)."""

    endpoint: Endpoint
    rows: np.ndarray                      # positions into PatientData
    time: np.ndarray | None = None        # (n,) days
    event: np.ndarray | None = None       # (n,) 0/1
    y: np.ndarray | None = None           # (n,) 0/1 for binary endpoints
    notes: dict[str, int] = field(default_factory=dict)

    def subset(self, mask: np.ndarray) -> Target:
        """The rows where ``mask`` (over ``rows``) is true, with their outcomes."""
        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]
        return Target(self.endpoint, self.rows[mask], take(self.time), take(self.event), take(self.y), self.notes)

    @property
    def events(self) -> np.ndarray:
        """(n,) int64: the 0/1 outcome (``y`` for binary endpoints, else ``event``)."""
        return (self.y if self.endpoint.kind == "binary" else self.event).astype(np.int64)


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
        if landmark_days is not None:
            ok &= ~_outcome_before_landmark(y, ok, None if endpoint.onset is None else column(endpoint.onset),
                                            landmark_days, notes)
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


def _outcome_before_landmark(y: np.ndarray, ok: np.ndarray, onset: np.ndarray | None, landmark_days: float,
                             notes: dict[str, int]) -> np.ndarray:
    """Binary endpoint: positives whose outcome happened by the landmark (their window's images could show it).

    Without an ``onset`` column none can be found: ``notes["outcome_onset_unknown"]`` says so (a flag of the endpoint);
    positives without an onset day are kept and counted.
    """
    positive = ok & (y == 1)
    if onset is None:
        notes["outcome_onset_unknown"] = int(positive.sum())
        return np.zeros_like(ok)
    early = positive & (onset <= landmark_days)
    notes["positives_with_outcome_before_landmark"] = int(early.sum())
    notes["positives_without_onset_day"] = int((positive & np.isnan(onset)).sum())
    return early


# ----------------------------------------------------------------------------------------- inputs
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


@dataclass
class HeadInputs:
    """Everything the head reads, per patient of ``data`` (rows of every array are ``data``'s patients).

    ``x`` (N, L, D) CXR tokens with ``xmask`` (N, L) and acquisition ``days`` (N, L, NaN unknown); ``latent`` (N, Z)
    the frozen fusion latent with ``lat_ok`` (N,) (joint mode: zeros, the latent is computed in the forward pass);
    ``vae_data``: joint mode only, the fusion VAE's inputs (the head's landmark images, never a later one).
    """

    data: PatientData
    x: np.ndarray
    xmask: np.ndarray
    days: np.ndarray
    latent: np.ndarray
    lat_ok: np.ndarray
    vae_data: PatientData | None = None


def head_inputs(data: PatientData, tokens: TokenConfig, *, latents: Path | None) -> tuple[HeadInputs, SerialCXR]:
    """Landmark images, their tokens and the latent of every patient -> ``(inputs, the kept images)``."""
    serial = landmark_images(data, landmark_days=tokens.landmark_days, max_images=tokens.max_images,
                             unknown_offset=tokens.unknown_offset)
    x, xmask, days = serial.tokens(tokens.cxr_tokens)
    if tokens.latent == "frozen":
        if latents is None:
            raise ConfigError("survival tokens.latent is 'frozen' but no latents.zarr was given "
                              "(--latents FUSION_DIR/latents.zarr, or set tokens.latent: none)")
        latent, lat_ok = align_latents(Path(latents), data.patient_ids)
    else:   # joint: the latent token is computed in the forward pass (presence per fold from the VAE's inputs)
        latent, lat_ok = np.zeros((len(data), 1), np.float32), np.zeros(len(data), bool)
    vae_data = None
    if tokens.latent == "joint":   # the VAE sees the head's landmark images (never a later one) and clinical values
        vae_data = replace(data, cxr=serial.cxr, cxr_mask=serial.mask, cxr_offsets=serial.days)
    return HeadInputs(data, x, xmask, days, latent, lat_ok, vae_data), serial


# ----------------------------------------------------------------------------------------- preprocessing
@dataclass
class Preprocessor:
    """Fitted on training rows: clinical encoder, CXR token and latent standardization."""

    encoder: ClinicalEncoder
    cxr_mean: np.ndarray
    cxr_std: np.ndarray
    lat_mean: np.ndarray
    lat_std: np.ndarray

    @classmethod
    def fit(cls, inputs: HeadInputs, rows: np.ndarray, cfg: SurvivalConfig) -> Preprocessor:
        data = inputs.data
        enc = ClinicalEncoder(out_of_range=cfg.tokens.out_of_range).fit(
            data.clinical.iloc[rows], data.schema, columns=cfg.tokens.clinical_columns,
            exclude=cfg.tokens.clinical_exclude)
        tok = inputs.x[rows][inputs.xmask[rows]]
        lat = inputs.latent[rows][inputs.lat_ok[rows]]
        return cls(enc, *_moments(tok, inputs.x.shape[-1]), *_moments(lat, inputs.latent.shape[-1]))

    def arrays(self, inputs: HeadInputs, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Head batch arrays (layout in :mod:`fusion.survival.network`) for ``rows``."""
        data = inputs.data
        clin = self.encoder.transform(data.clinical.iloc[rows], schema=data.schema)
        m = inputs.xmask[rows]
        days = inputs.days[rows]
        known = m & ~np.isnan(days)
        return {
            "clin_values": clin.values, "clin_mask": clin.mask.astype(np.float32),
            "latent": ((inputs.latent[rows] - self.lat_mean) / self.lat_std).astype(np.float32),
            "latent_mask": inputs.lat_ok[rows].astype(np.float32),
            "cxr": np.where(m[..., None], (inputs.x[rows] - self.cxr_mean) / self.cxr_std, 0.0).astype(np.float32),
            "cxr_mask": m.astype(np.float32),
            "cxr_days": np.where(known, days, 0.0).astype(np.float32),
            "cxr_days_known": known.astype(np.float32),
        }


def _moments(x: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) < 2:
        return np.zeros(d, np.float32), np.ones(d, np.float32)
    return x.mean(0).astype(np.float32), (x.std(0) + 1e-6).astype(np.float32)
