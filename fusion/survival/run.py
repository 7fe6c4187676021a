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
3. Patient-level K-fold (seeded; :mod:`fusion.survival.crossval`): in each fold the clinical encoder,
   CXR standardization, the head (:class:`fusion.survival.model.SurvivalModel`, early-stopped on a
   validation part of the training patients) and the baselines (:mod:`fusion.survival.baselines`) are
   fitted on training patients only; every reported risk is out-of-fold. Cox-type risks are centred by their training-fold mean (the partial likelihood does
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
   (:mod:`fusion.survival.linear`) with the token network's output at 0; the configured
   ``evaluation.ablations`` (other token networks, or one token group dropped) are trained the same way.
5. Metrics on the out-of-fold risks and survival curves (:mod:`fusion.survival.eval`): Harrell's, Uno's and
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cohorts.folder import read_manifest
from core import cli
from core.config import ConfigError, read_yaml, validate_config
from core.provenance import sha256_json, write_run_record
from core.safeio import check_output_dir, locked_output, relative_path, write_parquet, write_text
from fusion.clinical import ClinicalEncoder
from fusion.config import FusionConfig, load_fusion_config
from fusion.data import load_patient_data, resolve_cxr_model
from fusion.survival.config import SurvivalConfig
from fusion.survival.crossval import run_endpoint
from fusion.survival.eval import token_summary
from fusion.survival.figures import plot_c_index, plot_calibration, plot_km_by_risk
from fusion.survival.inputs import HeadInputs, SerialCXR, Target, endpoint_target, head_inputs
from fusion.survival.metrics import Interval

log = logging.getLogger(__name__)


def run_survival(cfg: SurvivalConfig, *, cohort: Path, store: Path | None, selection: Path | None = None,
                 latents: Path | None = None, out: Path, fusion: FusionConfig | None = None) -> dict[str, Path]:
    """Train and evaluate the survival head for every endpoint of ``cfg``; write outputs under ``out``.

    ``fusion``: the VAE's config in ``tokens.latent: joint`` mode (None: :class:`FusionConfig` defaults).
    """
    out = check_output_dir(Path(out), what="survival output folder")
    tok = cfg.tokens
    model, augmentation = _resolve_model(cfg, store, selection)
    data = load_patient_data(cohort, store if model else None, model=model, augmentation=augmentation,
                             serial="all", max_images=_max_images_per_patient(Path(cohort)),
                             covariates=fusion.covariates if tok.latent == "joint" and fusion else ())
    inputs, serial = head_inputs(data, tok, latents=latents)
    if tok.latent == "joint":
        fusion = fusion or FusionConfig()
    metrics = _run_summary(cfg, inputs, serial, model=model, augmentation=augmentation, fusion=fusion)
    log.info("survival head tokens: %s", metrics["tokens"])
    frames = []
    for endpoint in cfg.endpoints:
        target = endpoint_target(data, endpoint, landmark_days=tok.landmark_days)
        ep_metrics, frame = run_endpoint(cfg, inputs, target, fusion=fusion)
        metrics["endpoints"][endpoint.name] = ep_metrics
        frames.append(frame)
        _plot_endpoint(cfg, target, ep_metrics, frame, out / "figures")
        _log_summary(endpoint.name, ep_metrics)
    risk_path = out / "risk.parquet"
    write_parquet(pd.concat(frames, ignore_index=True), risk_path)
    metrics_path = out / "metrics.json"
    write_text(metrics_path, json.dumps(metrics, indent=2, default=_json_default))
    write_run_record(out, cfg, stage="fusion.survival", extra={
        **{name: relative_path(path, root=out.parent) for name, path in
           (("cohort", cohort), ("store", store), ("latents", latents))}, "cxr_model": model})
    return {"metrics": metrics_path, "risk": risk_path, "figures": out / "figures"}


def _run_summary(cfg: SurvivalConfig, inputs: HeadInputs, serial: SerialCXR, *, model: str | None, augmentation: str,
                 fusion: FusionConfig | None) -> dict[str, Any]:
    """The run-level part of ``metrics.json`` (tokens, config, inputs), with an empty ``endpoints``."""
    tok, data = cfg.tokens, inputs.data
    n_clinical = len(ClinicalEncoder(out_of_range="mask").fit(data.clinical, data.schema, columns=tok.clinical_columns,
                                                             exclude=tok.clinical_exclude).variables) if tok.clinical else 0
    latent_dim = (fusion.model.latent_dim if tok.latent == "joint" else inputs.latent.shape[1]) \
        if tok.latent != "none" else None
    metrics: dict[str, Any] = {"tokens": token_summary(cfg, cxr_model=model, n_clinical=n_clinical, latent_dim=latent_dim),
                               "config": "config.resolved.yaml", "config_sha256": sha256_json(cfg.model_dump(mode="json")),
                               "cxr_model": model, "augmentation": augmentation, "input_notes": data.notes | serial.notes,
                               "latent": tok.latent, "patients_with_latent": int(inputs.lat_ok.sum()), "endpoints": {}}
    if tok.latent == "joint":
        metrics["joint_vae_config"] = fusion.model_dump(mode="json", include={"model", "kl", "clinical", "cxr"})
        del metrics["patients_with_latent"]
    return metrics


def _plot_endpoint(cfg: SurvivalConfig, target: Target, metrics: dict[str, Any], frame: pd.DataFrame,
                   figures: Path) -> None:
    """C-index forest plot; time-to-event endpoints also Kaplan-Meier by risk group and calibration."""
    name = target.endpoint.name
    plot_c_index(metrics["metrics"], figures / f"c_index_{name}.png", title=name)
    if target.endpoint.kind == "binary":
        return
    plot_km_by_risk(target.time, target.event, frame, figures / f"km_{name}.png", groups=cfg.evaluation.risk_groups,
                    title=name)
    tables = {k: v for k, v in metrics.get("calibration", {}).items() if k in ("head", "clinical_cox", "rsf")}
    if tables:
        plot_calibration({k: {c: np.asarray(v) for c, v in t.items()} for k, t in tables.items()},
                         metrics["calibration_horizon_days"], figures / f"calibration_{name}.png", title=name)


def _resolve_model(cfg: SurvivalConfig, store: Path | None, selection: Path | None) -> tuple[str | None, str]:
    if not cfg.tokens.cxr:
        return None, cfg.tokens.augmentation
    if store is None:
        raise ConfigError("survival tokens.cxr is true but no embedding store was given (--store STORE.zarr)")
    return resolve_cxr_model(cfg.tokens.cxr_model, cfg.tokens.augmentation, selection, key="survival tokens.cxr_model")


def _max_images_per_patient(cohort: Path) -> int:
    manifest = read_manifest(cohort, columns=["patient_id"])
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
