"""FusionVAE: determinism from the seed, latents for patients missing a modality, save/load, resume."""
from __future__ import annotations

import numpy as np
import pytest

from fusion.data import load_patient_data, split_patients
from fusion.model import FusionVAE


@pytest.fixture(scope="module")
def data_split(contract_cohort, store_model):
    cohort, store = contract_cohort
    data = load_patient_data(cohort, store, model=store_model)
    return data, split_patients(data.patient_ids, val_fraction=0.15, test_fraction=0.15, seed=0)   # as run_fusion


@pytest.fixture(scope="module")
def fitted(data_split, tiny_config):
    data, split = data_split
    vae = FusionVAE(tiny_config())
    vae.fit(data, train_idx=split["train"], val_idx=split["val"], progress=False)
    return vae


def test_same_seed_same_latents(fitted, data_split, tiny_config) -> None:
    data, split = data_split
    again = FusionVAE(tiny_config())
    again.fit(data, train_idx=split["train"], val_idx=split["val"], progress=False)
    np.testing.assert_array_equal(again.get_latent(data), fitted.get_latent(data))
    other = FusionVAE(tiny_config(seed=1))
    other.fit(data, train_idx=split["train"], val_idx=split["val"], progress=False)
    assert not np.allclose(other.get_latent(data), fitted.get_latent(data))


def test_patients_missing_a_modality_get_finite_latents(fitted, data_split) -> None:
    data, _ = data_split
    z = fitted.get_latent(data)
    assert z.shape == (len(data), 4) and np.isfinite(z).all()
    no_clin = ~data.clinical.notna().any(axis=1).to_numpy()
    assert (~data.has_cxr).any() and no_clin.any()
    # patients without CXR are placed by their clinical values alone, and vice versa: not all at the prior
    assert np.abs(z[~data.has_cxr]).sum() > 0 and np.abs(z[no_clin]).sum() > 0
    # a patient with neither modality gets exactly the prior mean
    empty = data.subset(np.array([0]))
    empty.cxr_mask[:] = False
    empty.clinical = empty.clinical.astype(object).mask(np.ones(empty.clinical.shape, bool))
    np.testing.assert_array_equal(fitted.get_latent(empty), 0.0)
    assert not fitted.informed(empty).any()
    np.testing.assert_array_equal(fitted.informed(data), data.has_cxr | ~no_clin)
    clin_only = fitted.get_latent(data, modalities=["clinical"])
    np.testing.assert_array_equal(clin_only[no_clin], 0.0)


def test_save_load_roundtrip(fitted, data_split, tmp_path) -> None:
    data, split = data_split
    loaded = FusionVAE.load(fitted.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.get_latent(data), fitted.get_latent(data))
    assert loaded.evaluate(data.subset(split["test"])) == fitted.evaluate(data.subset(split["test"]))


def test_resume_from_checkpoint_matches_uninterrupted_fit(fitted, data_split, tiny_config, tmp_path) -> None:
    data, split = data_split
    first = FusionVAE(tiny_config())
    part = first.fit(data, train_idx=split["train"], val_idx=split["val"], checkpoint_dir=tmp_path,
                     stop_after_epochs=2, progress=False)
    assert part.epochs_run == 2 and not part.finished
    second = FusionVAE(tiny_config())
    done = second.fit(data, train_idx=split["train"], val_idx=split["val"], checkpoint_dir=tmp_path, progress=False)
    assert done.epochs_run == 4 and done.history == fitted.result.history
    np.testing.assert_array_equal(second.get_latent(data), fitted.get_latent(data))
