"""Slow end to end (cohorts -> embedders -> fusion) on a reduced multi-site demo: site covariates keep the
clusters of the joint latent off the site and on the planted subtypes; without them the clusters follow the site.

Clusters: a seeded 3-component Gaussian mixture on the informed patients' latents (independent of the
clustering stage's choice rule). Figures measured are in docs/demo-cohort.md ("Sites and fusion").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score
from sklearn.mixture import GaussianMixture

from cohorts.config import CohortsConfig
from cohorts.run import run_cohorts
from embedders.config import EmbeddersConfig
from embedders.run import run_embedders
from fusion.config import FusionConfig, load_fusion_config
from fusion.data import load_patient_data, split_patients
from fusion.latents import read_informed, read_latents
from fusion.model import FusionVAE
from fusion.run import run_fusion

REPO = Path(__file__).resolve().parents[2]
N_PATIENTS, IMAGE_SIZE, MODEL = 500, 64, "thumbnail"

pytestmark = pytest.mark.slow


def _gmm_labels(latent: np.ndarray) -> np.ndarray:
    return GaussianMixture(3, reg_covar=1e-3, n_init=5, random_state=0).fit_predict(latent.astype(np.float64))


def _config(covariates: list[str]) -> FusionConfig:
    cfg = load_fusion_config(REPO / "configs" / "fusion" / "demo.yaml")
    return cfg.model_copy(update={
        "covariates": covariates, "cxr": cfg.cxr.model_copy(update={"model": MODEL}),
        "evaluation": cfg.evaluation.model_copy(update={"ablations": False}),
        "survival": cfg.survival.model_copy(update={"enabled": False})})


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sites_e2e")
    cohorts = CohortsConfig.model_validate({
        "sources": [{"kind": "demo", "n_patients": N_PATIENTS, "seed": 0, "image_size": IMAGE_SIZE, "sites": 3}],
        "overview": False})
    run_cohorts(cohorts, out=root / "cohorts")
    store = root / "embeddings.zarr"
    run_embedders(EmbeddersConfig.model_validate({"models": [{"name": MODEL}], "augmentations": ["original"]}),
                  manifest=root / "cohorts" / "manifest.parquet", store=store)
    clinical = pd.read_parquet(root / "cohorts" / "clinical.parquet").set_index("patient_id")
    out: dict = {"root": root, "store": store, "clinical": clinical}
    for name, covariates in (("on", ["site"]), ("off", [])):
        run_fusion(_config(covariates), cohort=root / "cohorts", store=store, out=root / f"fusion_{name}")
        path = root / f"fusion_{name}" / "latents.zarr"
        ids, latent, _ = read_latents(path)
        informed = read_informed(path)
        out[name] = (ids[informed], latent[informed])
    return out


def _scores(demo: dict, ids: np.ndarray, latent: np.ndarray) -> tuple[float, float]:
    labels = _gmm_labels(latent)
    truth = demo["clinical"].loc[ids]
    return (adjusted_rand_score(truth["true_subtype"], labels), adjusted_mutual_info_score(truth["site"], labels))


def test_covariates_on_keep_the_clusters_off_the_site(demo: dict) -> None:
    _, ami_site = _scores(demo, *demo["on"])
    assert ami_site <= 0.05, ami_site


def test_covariates_on_recover_the_planted_subtypes(demo: dict) -> None:
    # issue 21 asks ARI >= 0.8 of the clustering stage on the full demo (256 px): 0.820 in metrics.json. This
    # reduced demo (64 px images, fixed 3-component mixture) measured 0.796; the bound guards against regressions
    ari, _ = _scores(demo, *demo["on"])
    assert ari >= 0.75, ari


def test_covariates_off_the_clusters_follow_the_site(demo: dict) -> None:
    ari, ami_site = _scores(demo, *demo["off"])
    assert ami_site >= 0.2, (ari, ami_site)


@pytest.mark.parametrize("modality", ["clinical", "cxr"])
def test_one_modality_alone_does_not_recover_the_subtypes(demo: dict, modality: str) -> None:
    cfg = _config(["site"])
    data = load_patient_data(demo["root"] / "cohorts", demo["store"], model=MODEL, covariates=["site"],
                             serial=cfg.cxr.serial, window_days=cfg.cxr.window_days)
    split = split_patients(data.patient_ids, val_fraction=cfg.split.val_fraction,
                           test_fraction=cfg.split.test_fraction, seed=cfg.seed)
    vae = FusionVAE(cfg, modalities=[modality])
    vae.fit(data, train_idx=split["train"], val_idx=split["val"], progress=False)
    informed = vae.informed(data)
    ari, _ = _scores(demo, data.patient_ids[informed], vae.get_latent(data)[informed])
    assert ari <= 0.5, ari
