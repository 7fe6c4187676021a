"""Fusion stage entry point: ``python -m fusion.run --config FILE --cohort DIR --store STORE.zarr [--selection FILE] --out DIR``.

Writes (docs/data-contracts.md): ``checkpoint/`` (model, fitted clinical encoder, training state),
``latents.zarr`` (``ids``, ``latent``, ``split``), ``metrics.json`` (reconstruction per modality, KL,
validation loss, training curve, held-out probes and single-modality ablations when truth columns
exist), ``figures/*.png``, ``config.resolved.yaml`` + ``run.json``, and ``survival/`` when the
survival head is enabled and available.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from core import cli
from core.provenance import write_run_record
from core.safeio import check_output_dir, locked_output, relative_path, write_text
from fusion.config import FusionConfig, load_fusion_config
from fusion.data import PatientData, load_patient_data, resolve_cxr_model, split_patients
from fusion.distributed import initialize, output_folder
from fusion.figures import plot_loss_curves, plot_probes
from fusion.latents import write_latents
from fusion.model import FusionVAE
from fusion.probes import mixture_recovery, probe_latent
from fusion.train import CheckpointMismatch

log = logging.getLogger(__name__)


def run_fusion(cfg: FusionConfig, *, cohort: Path, store: Path, selection: Path | None = None,
               out: Path) -> dict[str, Path]:
    """Train the multimodal VAE on ``cohort`` + ``store`` and write the fusion outputs under ``out``.

    With ``distributed.enabled`` every process of a multi-host run calls this; only process 0 writes ``out``.
    """
    initialize(cfg.distributed)
    out = check_output_dir(output_folder(Path(out)), what="fusion output folder")
    model, augmentation = resolve_cxr_model(cfg.cxr.model, cfg.cxr.augmentation, selection, key="cxr.model")
    data = load_patient_data(cohort, store, model=model, augmentation=augmentation, serial=cfg.cxr.serial,
                             window_days=cfg.cxr.window_days, max_images=cfg.cxr.max_images,
                             covariates=cfg.covariates)
    split = split_patients(data.patient_ids, val_fraction=cfg.split.val_fraction,
                           test_fraction=cfg.split.test_fraction, seed=cfg.seed)
    vae = FusionVAE(cfg)
    state_dir = out / "checkpoint" / "train_state"
    try:
        result = vae.fit(data, train_idx=split["train"], val_idx=split["val"], checkpoint_dir=state_dir)
    except CheckpointMismatch as exc:   # the folder holds an earlier run (other config or cohort): start afresh
        log.warning("%s: training from scratch", exc)
        shutil.rmtree(state_dir)
        result = vae.fit(data, train_idx=split["train"], val_idx=split["val"], checkpoint_dir=state_dir)
    vae.save(out / "checkpoint")
    latent = vae.get_latent(data)
    bad = ~np.isfinite(latent).all(axis=1)
    if bad.any():
        raise FloatingPointError(
            f"the VAE gave non-finite latents for {int(bad.sum())} patient(s), e.g. {data.patient_ids[bad][:5].tolist()}: "
            f"check their embeddings ({model}) and clinical values in {cohort}, or lower train.learning_rate")
    _warn_unknown_covariates(vae, data, split["train"])
    informed = vae.informed(data)
    if not informed.all():
        log.warning("%d patient(s) have no CXR in the window and no clinical value the model uses; their latent is "
                    "the prior mean (marked informed=False in latents.zarr), e.g. %s", int((~informed).sum()),
                    data.patient_ids[~informed][:5].tolist())
    latents_path = write_latents(out / "latents.zarr", data.patient_ids, latent, split=split, informed=informed,
                                 model=model)

    metrics: dict = {
        "model": model, "augmentation": augmentation, "serial": cfg.cxr.serial, "n_patients": len(data),
        "split_sizes": {k: len(v) for k, v in split.items()},
        "input_notes": data.notes | {"patients_without_any_input": int((~informed).sum())},
        "clinical_out_of_range_masked": vae.encoder.report,
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        "val_loss": result.best_val,
        "reconstruction": {name: vae.evaluate(data.subset(idx)) for name, idx in split.items() if len(idx)},
        "history": result.history,
    }
    figures = out / "figures"
    plot_loss_curves(result.history, figures / "loss_curves.png")
    if cfg.covariates:
        metrics["covariates"] = {"levels": vae.covariates.levels, "conditioning": cfg.conditioning.model_dump(),
                                 "probes": _probe_covariates(cfg, data, split, latent)}
    probes = _probe_all(cfg, data, split, vae, latent)
    if probes:
        metrics["probes"] = probes
        plot_probes(probes, figures / "probes.png")
    metrics_path = out / "metrics.json"
    write_text(metrics_path, json.dumps(metrics, indent=2, default=_json_default))
    write_run_record(out, cfg, stage="fusion", extra={"inputs": {
        name: relative_path(path, root=out.parent) for name, path in
        (("cohort", cohort), ("store", store), ("selection", selection))}})
    outputs = {"checkpoint": out / "checkpoint", "latents": latents_path, "metrics": metrics_path, "figures": figures}
    survival = _run_survival_if_enabled(cfg, model=model, augmentation=augmentation, cohort=cohort, store=store,
                                        selection=selection, latents=latents_path, out=out / "survival")
    if survival is not None:
        outputs["survival"] = out / "survival"
    return outputs


def _probe_all(cfg: FusionConfig, data: PatientData, split: dict[str, np.ndarray], vae: FusionVAE,
               latent: np.ndarray) -> dict:
    """Held-out probes per truth column: joint latent, single-modality inference, single-modality VAEs; for
    categorical truth also the ARI of a Gaussian mixture on each space (:func:`fusion.probes.mixture_recovery`)."""
    ev = cfg.evaluation
    columns = ev.truth_columns if ev.truth_columns is not None else list(data.truth.columns)
    missing = [c for c in columns if c not in data.truth.columns]
    if missing:
        raise ValueError(f"evaluation.truth_columns {missing} are not role=truth columns of clinical_schema.json")
    if not columns or not len(split["test"]):
        return {}
    train_idx = np.concatenate([split["train"], split["val"]])
    spaces = {"joint": latent, "joint_model_cxr_only_input": vae.get_latent(data, modalities=["cxr"]),
              "joint_model_clinical_only_input": vae.get_latent(data, modalities=["clinical"])}
    if ev.ablations:
        for mods in (["clinical"], ["cxr"]):
            ablated = FusionVAE(cfg, modalities=mods)
            ablated.fit(data, train_idx=split["train"], val_idx=split["val"])
            spaces[f"{mods[0]}_only_vae"] = ablated.get_latent(data)
    out: dict = {}
    for col in columns:
        labels = data.truth[col].to_numpy(dtype=object)
        continuous = data.schema[col].type == "continuous"
        out[col] = {space: {kind: probe_latent(z, labels, train_idx=train_idx, test_idx=split["test"], kind=kind,
                                               continuous=continuous, k=ev.knn_k, seed=cfg.seed)
                            for kind in ev.probes}
                    for space, z in spaces.items()}
        if not continuous:     # unsupervised: can a cluster analysis of each space find the truth classes?
            for space, z in spaces.items():
                out[col][space]["mixture"] = mixture_recovery(z, labels, seed=cfg.seed)
    return out


def _warn_unknown_covariates(vae: FusionVAE, data: PatientData, train_idx: np.ndarray) -> None:
    """Log the patients outside training whose covariate level is missing or was not seen in training."""
    if not vae.covariates.width:
        return
    rest = np.setdiff1d(np.arange(len(data)), train_idx)
    _, unknown = vae.covariates.transform(data.covariates.iloc[rest])
    if unknown:
        log.warning("%d patient(s) outside training have a covariate level missing or unseen in training (levels: %s); "
                    "they get a latent from the encoders with the covariates marked unknown", unknown,
                    vae.covariates.levels)


def _probe_covariates(cfg: FusionConfig, data: PatientData, split: dict[str, np.ndarray], latent: np.ndarray) -> dict:
    """Held-out logistic probe (balanced accuracy) of each covariate from the joint latent: what the latent still encodes."""
    if not len(split["test"]):
        return {}
    train_idx = np.concatenate([split["train"], split["val"]])
    return {name: probe_latent(latent, data.covariates[name].to_numpy(dtype=object), train_idx=train_idx,
                               test_idx=split["test"], kind="logistic", seed=cfg.seed)
            for name in cfg.covariates}


def _run_survival_if_enabled(cfg: FusionConfig, *, model: str, augmentation: str, **inputs: Path | None) -> dict | None:
    """The survival head on this run's latents; with ``tokens.cxr_model`` unset it reads the VAE's CXR model.

    ``tokens.latent: joint`` trains this stage's VAE architecture (``cfg``'s model/kl/clinical sections) with the head.
    """
    if not cfg.survival.enabled:
        return None
    from fusion.survival.run import run_survival  # the head builds on this stage's latents

    survival = cfg.survival
    if survival.tokens.cxr and survival.tokens.cxr_model is None:
        tokens = survival.tokens.model_copy(update={"cxr_model": model, "augmentation": augmentation})
        survival = survival.model_copy(update={"tokens": tokens})
    return run_survival(survival, fusion=cfg, **inputs)


def _json_default(obj: object) -> object:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def main(argv: list[str] | None = None) -> int:
    """CLI wrapper of :func:`run_fusion`."""
    ap = cli.parser("python -m fusion.run", __doc__)
    ap.add_argument("--config", required=True, type=Path, help="fusion YAML or composed pipeline config")
    ap.add_argument("--cohort", required=True, type=Path, help="COHORT_DIR with manifest/clinical parquet")
    ap.add_argument("--store", required=True, type=Path, help="embedding store STORE.zarr")
    ap.add_argument("--selection", type=Path, default=None, help="BENCH_DIR/selection.json (model choice)")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_fusion_config(args.config)
    with locked_output(args.out):
        outputs = run_fusion(cfg, cohort=args.cohort, store=args.store, selection=args.selection, out=args.out)
    metrics = json.loads(outputs["metrics"].read_text())
    print(f"fusion: {metrics['n_patients']} patients, model {metrics['model']}, best epoch {metrics['best_epoch']}, "
          f"val loss {metrics['val_loss']:.3f}")
    for col, spaces in metrics.get("probes", {}).items():
        for space, kinds in spaces.items():
            line = ", ".join(f"{k} {v['metric']} {v.get('score', float('nan')):.3f}" for k, v in kinds.items())
            print(f"  probe {col} on {space}: {line}")
    for name, path in outputs.items():
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
