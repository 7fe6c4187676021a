"""Site covariates in the fusion VAE: per-patient lookup, one-hot codes, conditioning, unseen sites, fingerprint."""
from __future__ import annotations

import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from cohorts.folder import MANIFEST, read_manifest
from cohorts.manifest import write_manifest
from core.config import ConfigError
from fusion.covariates import CovariateEncoder
from fusion.data import load_patient_data, split_patients
from fusion.model import FusionVAE
from fusion.module import mmd_penalty
from fusion.train import CheckpointMismatch

SITES = ("A", "B", "C")
MIXED = "demo-0013"   # images at offsets -1, 2, 5 (the first in the fusion window [-1, 3])


@pytest.fixture(scope="module")
def site_cohort(contract_cohort: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The contract cohort with a per-patient ``site`` in the manifest (patient i: SITES[i % 3]) and
    ``view`` disagreeing between the images of :data:`MIXED` (PA on its first image only)."""
    cohort, store = contract_cohort
    out = tmp_path_factory.mktemp("site_cohort") / "cohort"
    shutil.copytree(cohort, out)
    manifest = read_manifest(out)
    index = manifest["patient_id"].str.split("-").str[1].astype(int)
    manifest["site"] = [SITES[i % 3] for i in index]
    first = manifest.index[manifest["patient_id"] == MIXED][0]
    manifest.loc[first, "view"] = "PA"
    write_manifest(manifest, out / MANIFEST)
    return out, store


def _load(site_cohort, store_model, covariates=("site", "view"), **kw):
    cohort, store = site_cohort
    return load_patient_data(cohort, store, model=store_model, covariates=list(covariates), **kw)


def test_lookup_takes_one_value_per_patient_and_counts_disagreement(site_cohort, store_model) -> None:
    data = _load(site_cohort, store_model)
    cov = data.covariates
    assert list(cov.columns) == ["site", "view"] and list(cov.index) == list(data.patient_ids)
    index = pd.Series(data.patient_ids).str.split("-").str[1].astype(int).to_numpy()
    assert data.notes["covariate_site_missing"] == (index % 10 == 9).sum() > 0   # no image: no site
    known = cov["site"].notna().to_numpy()
    assert (cov["site"].to_numpy()[known] == np.array([SITES[i % 3] for i in index])[known]).all()
    assert data.notes["covariate_view_patients_with_disagreeing_images"] == 1
    assert cov.loc[MIXED, "view"] == "PA"                      # the model's image (first in window) is the PA one
    last = _load(site_cohort, store_model, serial="last")
    assert last.covariates.loc[MIXED, "view"] == "AP"          # the chosen image decides


def test_clinical_column_wins_and_unknown_column_is_a_config_error(site_cohort, store_model, tmp_path) -> None:
    cohort, store = site_cohort
    copy = tmp_path / "cohort"
    shutil.copytree(cohort, copy)
    clin = pd.read_parquet(copy / "clinical.parquet")
    clin["sex"] = clin["sex"].fillna("F")
    data = load_patient_data(copy, store, model=store_model, covariates=["sex"])
    assert data.covariates["sex"].dropna().isin(["F", "M"]).all()
    with pytest.raises(ConfigError, match="covariate 'scanner' is neither"):
        load_patient_data(copy, store, model=store_model, covariates=["scanner"])


def test_encoder_marks_missing_and_unseen_levels_unknown(tmp_path) -> None:
    enc = CovariateEncoder().fit(pd.DataFrame({"site": ["A", "B", None, "A"]}))
    assert enc.levels == {"site": ["A", "B"]} and enc.width == 2
    codes, unknown = enc.transform(pd.DataFrame({"site": ["B", "C", None]}))
    np.testing.assert_array_equal(codes, [[0, 1], [0, 0], [0, 0]])
    assert unknown == 2
    enc.save(tmp_path / "cov.json")
    assert CovariateEncoder.load(tmp_path / "cov.json").levels == enc.levels
    assert CovariateEncoder.load(tmp_path / "absent.json").width == 0
    with pytest.raises(ConfigError, match="no value among the training patients"):
        CovariateEncoder().fit(pd.DataFrame({"site": [None, None]}))


@pytest.mark.parametrize("encoders", [False, True])
def test_patient_from_a_site_unseen_in_training_gets_a_latent(site_cohort, store_model, tiny_config, encoders,
                                                              tmp_path) -> None:
    data = _load(site_cohort, store_model, covariates=["site"])
    cfg = tiny_config(covariates=["site"], conditioning={"encoders": encoders})
    seen = np.flatnonzero(data.covariates["site"].isin(["A", "B"]).to_numpy())
    vae = FusionVAE(cfg)
    vae.fit(data, train_idx=seen[:60], val_idx=seen[60:], progress=False)
    assert vae.covariates.levels == {"site": ["A", "B"]} and vae.module.covariate_sizes == (2,)
    new = np.flatnonzero((data.covariates["site"] == "C").to_numpy())
    z = vae.get_latent(data.subset(new))
    assert z.shape == (len(new), 4) and np.isfinite(z).all() and vae.informed(data.subset(new)).all()
    assert np.abs(z).sum(1).min() > 0                          # a real posterior, not the prior placeholder
    vae.save(tmp_path / "ckpt")
    np.testing.assert_allclose(FusionVAE.load(tmp_path / "ckpt").get_latent(data.subset(new)), z, rtol=1e-5, atol=1e-6)
    # the decoders read the site: the same latent reconstructs differently at site A and site B
    batch = {k: jnp.asarray(v[:4]) for k, v in vae.arrays(data.subset(seen)).items()}
    zeros = jnp.zeros((4, 4))
    at = {s: vae.module.apply({"params": vae.params}, zeros, {**batch, "cov": jnp.asarray(np.eye(2)[[i] * 4], jnp.float32)},
                              method=type(vae.module).decode_clinical) for i, s in enumerate("AB")}
    assert float(jnp.abs(at["A"] - at["B"]).max()) > 1e-4
    # with encoders conditioned, the latent depends on the site code; decoder-only: it does not
    moved = {**batch, "cov": batch["cov"][:, ::-1]}
    mu = [vae.module.apply({"params": vae.params}, b, method=type(vae.module).posterior)[0] for b in (batch, moved)]
    assert (float(jnp.abs(mu[0] - mu[1]).max()) > 1e-5) == encoders


def test_checkpoint_fingerprint_covers_the_covariates(site_cohort, store_model, tiny_config, tmp_path) -> None:
    data = _load(site_cohort, store_model, covariates=["site", "view"])
    split = split_patients(data.patient_ids, val_fraction=0.2, test_fraction=0.0, seed=0)
    first = FusionVAE(tiny_config(covariates=["site"]))
    first.fit(data, train_idx=split["train"], val_idx=split["val"], checkpoint_dir=tmp_path, stop_after_epochs=1,
              progress=False)
    with pytest.raises(CheckpointMismatch):
        FusionVAE(tiny_config(covariates=["site", "view"])).fit(
            data, train_idx=split["train"], val_idx=split["val"], checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointMismatch):
        FusionVAE(tiny_config()).fit(data, train_idx=split["train"], val_idx=split["val"], checkpoint_dir=tmp_path,
                                     progress=False)


def test_covariates_not_loaded_with_the_data_raise(site_cohort, store_model, tiny_config) -> None:
    data = _load(site_cohort, store_model, covariates=[])
    with pytest.raises(ValueError, match=r"fusion.covariates \['site'\] were not loaded"):
        FusionVAE(tiny_config(covariates=["site"])).fit(data, train_idx=np.arange(80), progress=False)


def test_mmd_penalty_is_zero_for_one_distribution_and_grows_with_a_site_shift() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 4)).astype(np.float32)
    site = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 200)]
    w = np.ones(200, np.float32)
    same = float(mmd_penalty(jnp.asarray(z), jnp.asarray(site), jnp.asarray(w), (2,)))
    shifted = float(mmd_penalty(jnp.asarray(z + 1.5 * site[:, :1]), jnp.asarray(site), jnp.asarray(w), (2,)))
    assert 0 <= same < 0.15 and shifted > 10 * same     # V-statistic: small positive bias without a shift
    alone = float(mmd_penalty(jnp.asarray(z), jnp.asarray(np.c_[np.ones(200), np.zeros(200)].astype(np.float32)),
                              jnp.asarray(w), (2,)))
    assert alone == 0.0                                        # a level holding the whole batch adds nothing


def test_mmd_penalty_trains_and_is_reported(site_cohort, store_model, tiny_config) -> None:
    data = _load(site_cohort, store_model, covariates=["site"])
    vae = FusionVAE(tiny_config(covariates=["site"], conditioning={"penalty": "mmd", "penalty_weight": 5.0}))
    result = vae.fit(data, train_idx=np.arange(90), val_idx=np.arange(90, len(data)), progress=False)
    assert np.isfinite(vae.get_latent(data)).all()
    assert any("mmd" in key for key in result.history[-1])
