"""Synthetic ARDS demo cohort with known ground truth (no download): phantom CXRs + clinical table.

``generate_demo(raw_dir)`` writes::

    raw_dir/images/<image_id>.png      8-bit grey phantom radiographs (cohorts.phantom)
    raw_dir/manifest.csv               image_id, patient_id, study_id, path (relative), view, site,
                                       offset_days, Atelectasis, Edema, Effusion, Opacity (0/1)
    raw_dir/clinical.csv               one row per patient: features (with missing values), site,
                                       outcomes time/event, ground truth true_subtype/true_severity
    raw_dir/clinical_schema.json       the clinical schema (docs/data-contracts.md format)

Three planted subtypes: 0 hyperinflammatory (clinical markers, focal images, highest mortality),
1 hypoinflammatory with diffuse/bilateral images (edema, bilateral effusion and opacity), 2
hypoinflammatory with focal images. Clinical data separate 0 from {1, 2}, images separate 1 from
{0, 2}, only both recover all three. Patients come from ``sites`` hospitals (default 3) that differ in
their X-ray detector (exposure, contrast, noise, view mix), their laboratory (assay calibration, a
unit, missingness) and their case mix (:data:`SITES`); the hazard depends on the subtype and on a latent severity
that the images show (extent and density of findings). Every constant of the generative model
is below and documented in docs/demo-cohort.md. Patient ``i`` is drawn from its own stream
``default_rng([seed, i])``, so a patient is the same whatever ``n_patients`` is.

CLI: ``python -m cohorts.demo --out DIR [--n-patients 300] [--seed 0] [--image-size 256] [--sites 3]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from core.parallel import worker_context

from .phantom import SIDES, ZONES, PhantomSpec, render_phantom

log = logging.getLogger(__name__)

LABELS = ("Atelectasis", "Edema", "Effusion", "Opacity")
SUBTYPE_P = (0.34, 0.33, 0.33)          # 0 hyperinflammatory, 1 hypo-diffuse, 2 hypo-focal
SUBTYPE_NAMES = ("hyperinflammatory (focal images)", "hypoinflammatory, diffuse images",
                 "hypoinflammatory, focal images")
ETIOLOGIES = ("pneumonia", "sepsis", "aspiration", "trauma")
ETIOLOGY_P = {True: (0.30, 0.50, 0.10, 0.10), False: (0.45, 0.15, 0.20, 0.20)}   # by hyperinflammatory
# clinical markers: (hyperinflammatory, hypoinflammatory)
IL6_MEDIAN, IL6_LOG_SD = (350.0, 35.0), 0.7           # pg/mL, log-normal
IL8_MEDIAN, IL8_LOG_SD = (110.0, 16.0), 0.6           # pg/mL, log-normal
LACTATE_MEDIAN, LACTATE_LOG_SD = (4.0, 1.3), 0.3      # mmol/L, log-normal
BICARB_MEAN, BICARB_SD = (17.0, 24.0), 2.5            # mmol/L, normal
VASOPRESSOR_P = (0.95, 0.06)
PF_MEAN, PF_PER_SEVERITY, PF_SD = 185.0, -30.0, 60.0  # mmHg; P/F falls with the latent severity
# images: per-image finding logit = base[pattern] + SEVERITY_LOGIT * s_t + patient effect N(0, PATIENT_EFFECT_SD)
FINDING_P = {"diffuse": {"Atelectasis": 0.10, "Edema": 0.97, "Effusion": 0.85, "Opacity": 0.92},
             "focal": {"Atelectasis": 0.45, "Edema": 0.03, "Effusion": 0.25, "Opacity": 0.80}}
SEVERITY_LOGIT, PATIENT_EFFECT_SD = 0.5, 0.3
# renderer severity (extent, density) = floor + (1 - floor) * sigmoid(slope * s_t): a finding drawn is never faint
SEVERITY_EXTENT, SEVERITY_FLOOR = 1.2, 0.35
BILATERAL_EFFUSION_P = 0.95             # diffuse pattern: effusion on both sides
TREND_SD, IMAGE_SEVERITY_SD = 0.2, 0.2   # per-image severity s_t = s + trend * weeks + N(0, 0.2)
VIEWS, VIEW_P = ("PA", "AP", "AP Supine"), (0.15, 0.55, 0.30)
# acquisition nuisance: exposure gamma ~ U(EXPOSURE), habitus ~ U(THORAX_WIDTH) per patient,
# rotation ~ N(0, ROTATION_SD) degrees and shift ~ N(0, SHIFT_SD) half-widths per image
EXPOSURE, THORAX_WIDTH, ROTATION_SD, SHIFT_SD = (0.95, 1.05), (0.97, 1.03), 1.0, 0.01
ZONE_P = (0.15, 0.25, 0.60)             # focal opacity zone: upper, middle, lower
# survival: hazard = BASE_HAZARD * exp(SUBTYPE_LOG_HR[z] + SEVERITY_LOG_HR * s + AGE_LOG_HR * (age - 58))
BASE_HAZARD, SUBTYPE_LOG_HR, SEVERITY_LOG_HR, AGE_LOG_HR = 0.005, (1.3, 1.0, 0.0), 0.7, 0.02
FOLLOW_UP_DAYS, FOLLOW_UP_P, LOSS_P = (28.0, 60.0), (0.35, 0.65), 0.08
# missingness (probability a value is null)
NO_CLINICAL_P = 0.02                    # patient without any clinical value (record not linked)
MISSING_P = {"age": 0.02, "sex": 0.01, "vasopressors": 0.05, "bicarbonate": 0.10, "etiology": 0.12}
BIOMARKER_MISSING_P = 0.15              # il6 and il8 together (biomarker sub-study), MCAR
LACTATE_MISSING_P = (0.15, 0.40)        # MAR: (on vasopressors, not on vasopressors)
PF_MISSING_P = (0.05, 0.40)             # MNAR: (P/F <= 250, P/F > 250): milder patients lack an ABG
PATIENTS_PER_TASK = 25                  # patients per task of the generator's process pool
FEATURES = ("age", "sex", "pf_ratio", "vasopressors", "bicarbonate", "il6", "il8", "lactate", "etiology")
PF_KPA_PER_MMHG = 1.0 / 7.50062        # P/F with PaO2 in kPa (FiO2 as a fraction)


@dataclass(frozen=True)
class SiteProfile:
    """One hospital of the demo: its case mix, its X-ray detector and its laboratory (docs/demo-cohort.md)."""

    name: str
    share: float                                  # relative enrolment
    subtype_p: tuple[float, float, float]         # case mix: P(subtype 0, 1, 2)
    view_p: tuple[float, float, float]            # P(PA, AP, AP Supine)
    exposure: float                               # gamma factor (x U(EXPOSURE) per image); > 1 darker
    contrast: float                               # tone scaling about mid-grey
    noise_sd: float                               # detector quantum noise SD (display units)
    noise_grain: float                            # noise correlation length (px at 256 px); 0 white
    il6_factor: float                             # immunoassay calibration: reported = true x factor
    il8_factor: float
    bicarbonate_offset: float                     # mmol/L (venous total CO2 instead of arterial HCO3-)
    pf_unit: str                                  # "mmHg" or "kPa" (unit left unharmonised)
    biomarker_missing_p: float                    # il6 + il8 missing together
    lactate_missing_extra: float                  # added to LACTATE_MISSING_P


# Site A is the reference (the single-site demo); B and C differ in every modality; D only with sites=4.
SITES = (
    SiteProfile("A", 1.0, SUBTYPE_P, VIEW_P, 1.0, 1.0, 0.015, 0.0, 1.0, 1.0, 0.0, "mmHg", BIOMARKER_MISSING_P, 0.0),
    SiteProfile("B", 1.0, (0.42, 0.30, 0.28), (0.45, 0.45, 0.10), 0.75, 0.8, 0.035, 1.5, 2.5, 2.0, 2.5, "mmHg",
                0.50, 0.0),
    SiteProfile("C", 1.0, (0.27, 0.36, 0.37), (0.05, 0.35, 0.60), 1.3, 1.25, 0.008, 0.0, 0.5, 0.6, -1.5, "kPa",
                0.20, 0.30),
    SiteProfile("D", 0.6, (0.34, 0.33, 0.33), (0.25, 0.50, 0.25), 0.9, 1.1, 0.025, 0.8, 1.5, 1.0, 1.0, "mmHg",
                0.50, 0.15),
)


def site_profiles(sites: int) -> tuple[SiteProfile, ...]:
    """The first ``sites`` profiles of :data:`SITES` (1 = the single-site demo)."""
    if not 1 <= sites <= len(SITES):
        raise ValueError(f"generate_demo needs 1 <= sites <= {len(SITES)}, got {sites}")
    return SITES[:sites]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _clinical(rng: np.random.Generator, subtype: int, severity: float) -> dict[str, Any]:
    """True clinical values of one patient (before missingness)."""
    group = 0 if subtype == 0 else 1   # index into the (hyperinflammatory, hypoinflammatory) tuples
    return {
        "age": float(np.clip(np.rint(rng.normal(58.0, 15.0)), 18, 90)),
        "sex": "M" if rng.random() < 0.58 else "F",
        "pf_ratio": float(np.clip(np.rint(rng.normal(PF_MEAN + PF_PER_SEVERITY * severity, PF_SD)), 40, 450)),
        "vasopressors": int(rng.random() < VASOPRESSOR_P[group]),
        "bicarbonate": round(float(np.clip(rng.normal(BICARB_MEAN[group], BICARB_SD), 8.0, 40.0)), 1),
        "il6": round(float(np.clip(IL6_MEDIAN[group] * math.exp(rng.normal(0.0, IL6_LOG_SD)), 1.0, 50000.0)), 1),
        "il8": round(float(np.clip(IL8_MEDIAN[group] * math.exp(rng.normal(0.0, IL8_LOG_SD)), 1.0, 20000.0)), 1),
        "lactate": round(float(np.clip(LACTATE_MEDIAN[group] * math.exp(rng.normal(0.0, LACTATE_LOG_SD)), 0.3, 20.0)), 1),
        "etiology": ETIOLOGIES[rng.choice(4, p=ETIOLOGY_P[subtype == 0])],
    }


def _reported(values: dict[str, Any], site: SiteProfile) -> dict[str, Any]:
    """What ``site``'s laboratory reports for the true ``values`` (assay calibration, units); nulls stay null."""
    out = dict(values)
    scale = {"il6": (site.il6_factor, 1.0, 50000.0), "il8": (site.il8_factor, 1.0, 20000.0)}
    for name, (factor, lo, hi) in scale.items():
        if out[name] is not None:
            out[name] = round(float(np.clip(out[name] * factor, lo, hi)), 1)
    if out["bicarbonate"] is not None:
        out["bicarbonate"] = round(float(np.clip(out["bicarbonate"] + site.bicarbonate_offset, 8.0, 40.0)), 1)
    if out["pf_ratio"] is not None and site.pf_unit == "kPa":
        out["pf_ratio"] = round(out["pf_ratio"] * PF_KPA_PER_MMHG, 1)
    return out


def _mask_missing(rng: np.random.Generator, values: dict[str, Any], site: SiteProfile) -> dict[str, Any]:
    """Apply the missingness mechanisms (docs/demo-cohort.md) to one patient's true values at ``site``."""
    draws = rng.random(9)
    if draws[0] < NO_CLINICAL_P:
        return {k: None for k in values}
    out = dict(values)
    for k, u in zip(MISSING_P, draws[1:6]):
        if u < MISSING_P[k]:
            out[k] = None
    if draws[6] < site.biomarker_missing_p:
        out["il6"] = out["il8"] = None
    if draws[7] < LACTATE_MISSING_P[0 if values["vasopressors"] else 1] + site.lactate_missing_extra:
        out["lactate"] = None
    if draws[8] < PF_MISSING_P[int(values["pf_ratio"] > 250)]:
        out["pf_ratio"] = None
    return out


def _survival(rng: np.random.Generator, subtype: int, severity: float, age: float) -> tuple[float, int]:
    """Exponential event time, administrative follow-up end (28 or 60 d) and random loss."""
    hazard = BASE_HAZARD * math.exp(SUBTYPE_LOG_HR[subtype] + SEVERITY_LOG_HR * severity + AGE_LOG_HR * (age - 58.0))
    event_time = rng.exponential(1.0 / hazard)
    follow_up = FOLLOW_UP_DAYS[int(rng.random() >= FOLLOW_UP_P[0])]
    loss = rng.uniform(2.0, follow_up) if rng.random() < LOSS_P else math.inf
    end = min(follow_up, loss)
    time = max(round(min(event_time, end), 1), 0.1)
    return time, int(event_time <= end)


def _image_plan(rng: np.random.Generator, subtype: int, severity: float, time: float,
                site: SiteProfile) -> list[dict[str, Any]]:
    """Serial images of one patient: offsets (< time), views, findings and phantom specs."""
    pattern = "diffuse" if subtype == 1 else "focal"
    effect = {f: rng.normal(0.0, PATIENT_EFFECT_SD) for f in LABELS}
    focal_side = SIDES[int(rng.random() < 0.4)]          # right lung 60%
    focal_zone = ZONES[rng.choice(3, p=ZONE_P)]
    other_side = SIDES[1 - SIDES.index(focal_side)]
    u_atelectasis, u_any_side, u_bilateral, u_effusion = rng.random(4)
    atelectasis_side = focal_side if (pattern == "focal" and u_atelectasis < 0.6) else SIDES[int(u_any_side < 0.5)]
    effusion_sides = SIDES if (pattern == "diffuse" and u_bilateral < BILATERAL_EFFUSION_P) else \
        ((focal_side,) if u_effusion < 0.7 else (other_side,))
    trend = rng.normal(0.0, TREND_SD)                     # severity change per week
    thorax_width = rng.uniform(*THORAX_WIDTH)
    n_images = 1 + rng.binomial(3, 0.45)
    offsets = [min(rng.uniform(0.0, 0.6), 0.5 * time)]
    for _ in range(n_images - 1):
        offsets.append(offsets[-1] + 1.0 + rng.exponential(1.5))
    plan = []
    for j, offset in enumerate(o for o in offsets if o < time):
        s_t = severity + trend * offset / 7.0 + rng.normal(0.0, IMAGE_SEVERITY_SD)
        present = {f: rng.random() < _sigmoid(_logit(FINDING_P[pattern][f]) + SEVERITY_LOGIT * s_t + effect[f])
                   for f in LABELS}
        spec = PhantomSpec(
            view=VIEWS[rng.choice(3, p=site.view_p)],
            severity=SEVERITY_FLOOR + (1.0 - SEVERITY_FLOOR) * _sigmoid(SEVERITY_EXTENT * s_t),
            effusion_sides=effusion_sides if present["Effusion"] else (),
            opacity_sides=(SIDES if pattern == "diffuse" else (focal_side,)) if present["Opacity"] else (),
            opacity_zone=focal_zone,
            opacity_diffuse=pattern == "diffuse",
            edema=present["Edema"],
            atelectasis_side=atelectasis_side if present["Atelectasis"] else None,
            thorax_width=thorax_width,
            rotation_deg=rng.normal(0.0, ROTATION_SD),
            shift=(rng.normal(0.0, SHIFT_SD), rng.normal(0.0, SHIFT_SD)),
            exposure=site.exposure * rng.uniform(*EXPOSURE),
            contrast=site.contrast, noise_sd=site.noise_sd, noise_grain=site.noise_grain,
            texture_seed=int(rng.integers(2**31)),
        )
        plan.append({"index": j + 1, "offset_days": round(offset, 2), "labels": present, "spec": spec})
    return plan


def _context() -> BaseContext | None:
    method = worker_context()
    return multiprocessing.get_context(method) if method else None


def _write_patients(indices: range, *, seed: int, profiles: tuple[SiteProfile, ...], image_size: int, raw_dir: Path,
                    width: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Draw patients ``indices``, write their PNGs; return their clinical rows and manifest rows."""
    clinical, rows = [], []
    for i in indices:
        pid = f"P{i:0{width}d}"
        row, plan = _patient(seed, i, profiles)
        clinical.append({"patient_id": pid, **row})
        for item in plan:
            image_id = f"{pid}-I{item['index']}"
            rel = f"images/{image_id}.png"
            _write_png(render_phantom(item["spec"], size=image_size), raw_dir / rel)
            rows.append({"image_id": image_id, "patient_id": pid, "study_id": f"{pid}-S{item['index']}",
                         "path": rel, "view": item["spec"].view, "site": row["site"],
                         "offset_days": item["offset_days"],
                         **{f: int(item["labels"][f]) for f in LABELS}})
    return clinical, rows


def _patient(seed: int, i: int, sites: tuple[SiteProfile, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Clinical row (with missingness, site, outcomes, truth) and image plan of patient ``i``."""
    rng = np.random.default_rng([seed, i])
    shares = np.array([s.share for s in sites])
    site = sites[int(rng.choice(len(sites), p=shares / shares.sum()))] if len(sites) > 1 else sites[0]
    subtype = int(rng.choice(3, p=site.subtype_p))
    severity = float(rng.normal())
    values = _clinical(rng, subtype, severity)
    time, event = _survival(rng, subtype, severity, values["age"])
    plan = _image_plan(rng, subtype, severity, time, site)
    row = {**_reported(_mask_missing(rng, values, site), site), "site": site.name, "time": time, "event": event,
           "true_subtype": subtype, "true_severity": round(severity, 3)}
    return row, plan


def clinical_schema() -> dict[str, Any]:
    """The demo's ``clinical_schema.json`` (docs/data-contracts.md format)."""
    def col(type_: str, role: str, description: str, unit: str | None = None, lo: float | None = None,
            hi: float | None = None, categories: list[Any] | None = None) -> dict[str, Any]:
        return {"type": type_, "role": role, "unit": unit, "min": lo, "max": hi,
                "categories": categories, "description": description}

    return {"columns": {
        "patient_id": col("categorical", "id", "synthetic patient key"),
        "age": col("continuous", "feature", "age at admission", "years", 18, 90),
        "sex": col("categorical", "feature", "sex", categories=["F", "M"]),
        "pf_ratio": col("continuous", "feature", "PaO2/FiO2 at baseline (site C reports PaO2 in kPa: a unit "
                        "difference left in the data, as pooled registries have them)", "mmHg", 5, 450),
        "vasopressors": col("binary", "feature", "vasopressors at baseline (1 yes)"),
        "bicarbonate": col("continuous", "feature", "serum bicarbonate", "mmol/L", 8, 40),
        "il6": col("continuous", "feature", "plasma IL-6", "pg/mL", 1, 50000),
        "il8": col("continuous", "feature", "plasma IL-8", "pg/mL", 1, 20000),
        "lactate": col("continuous", "feature", "arterial lactate", "mmol/L", 0.3, 20),
        "etiology": col("categorical", "feature", "ARDS risk factor", categories=list(ETIOLOGIES)),
        "site": col("categorical", "covariate", "enrolling hospital (detector, laboratory and case mix differ)",
                    categories=[s.name for s in SITES]),
        "time": col("continuous", "outcome", "days from admission to death or censoring (28 or 60 d follow-up)",
                    "days", 0, 60),
        "event": col("binary", "outcome", "1 death observed at `time`, 0 censored"),
        "true_subtype": col("categorical", "truth", "planted subtype: " + "; ".join(
            f"{k} {name}" for k, name in enumerate(SUBTYPE_NAMES)), categories=[0, 1, 2]),
        "true_severity": col("continuous", "truth", "latent severity s ~ N(0, 1) (image-visible, raises hazard)"),
    }}


def _write_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array, mode="L").save(path, format="PNG", compress_level=6)


def generate_demo(raw_dir: Path, *, n_patients: int = 300, seed: int = 0, image_size: int = 256,
                  sites: int = 3, workers: int = 1) -> Path:
    """Write the synthetic cohort into ``raw_dir`` (see module docstring); return ``raw_dir``.

    Deterministic from ``seed``: the same arguments give byte-identical files, whatever ``workers`` (processes
    that render and write the images; every patient has its own random stream). PNGs left over from an earlier
    run in ``raw_dir/images`` that this run does not write are removed.
    """
    if n_patients < 1 or image_size < 32 or workers < 1:
        raise ValueError(f"generate_demo needs n_patients >= 1, image_size >= 32 and workers >= 1, got {n_patients}, "
                         f"{image_size}, {workers}")
    profiles = site_profiles(sites)
    raw_dir = Path(raw_dir)
    images = raw_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(n_patients)))
    blocks = [range(lo, min(lo + PATIENTS_PER_TASK, n_patients)) for lo in range(0, n_patients, PATIENTS_PER_TASK)]
    task = partial(_write_patients, seed=seed, profiles=profiles, image_size=image_size, raw_dir=raw_dir, width=width)
    rows, clinical = [], []
    with tqdm(total=n_patients, desc="demo cohort", unit="patient") as bar:
        if workers == 1:
            done = map(task, blocks)
        else:
            pool = ProcessPoolExecutor(min(workers, len(blocks)), mp_context=_context())
            done = pool.map(task, blocks)
        try:
            for block, (block_clinical, block_rows) in zip(blocks, done):
                clinical.extend(block_clinical)
                rows.extend(block_rows)
                bar.update(len(block))
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)
    written = {Path(r["path"]).name for r in rows}
    for stale in images.glob("P*-I*.png"):
        if stale.name not in written:
            stale.unlink()
    pd.DataFrame(rows).to_csv(raw_dir / "manifest.csv", index=False)
    table = pd.DataFrame(clinical)
    for name in ("age", "vasopressors"):
        table[name] = table[name].astype("Int64")
    table.to_csv(raw_dir / "clinical.csv", index=False)
    (raw_dir / "clinical_schema.json").write_text(json.dumps(clinical_schema(), indent=2) + "\n")
    log.info("demo cohort: %d patients, %d images (%d px) in %s", n_patients, len(rows), image_size, raw_dir)
    return raw_dir


def main(argv: list[str] | None = None) -> None:
    """CLI: write the demo cohort and print a one-line summary."""
    parser = argparse.ArgumentParser(prog="python -m cohorts.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="raw cohort folder to write")
    parser.add_argument("--n-patients", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--sites", type=int, default=3, help=f"hospitals, 1-{len(SITES)} (1: no site effects)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the images (same files for any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = generate_demo(args.out, n_patients=args.n_patients, seed=args.seed, image_size=args.image_size,
                        sites=args.sites, workers=args.workers)
    manifest = pd.read_csv(out / "manifest.csv")
    print(f"wrote {len(manifest)} images of {manifest['patient_id'].nunique()} patients to {out}")


if __name__ == "__main__":
    main()
