"""Inputs: store embeddings (written with the embedders' own store writer) averaged per patient or
clustered per image; misaligned inputs are errors that say what to do."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from clustering.inputs import InputError, load_cohort, load_points
from embedders.store import open_store_for_writing, prepare_model_group, write_rows
from fusion.latents import read_latents, write_latents


@pytest.fixture(scope="module")
def store(small_cohort, tmp_path_factory):
    cohort, _ = small_cohort
    man = pd.read_parquet(cohort / "manifest.parquet")
    path = tmp_path_factory.mktemp("store") / "emb.zarr"
    root = open_store_for_writing(path, image_ids=man.image_id.to_numpy(), manifest_sha256="x" * 64)
    group = prepare_model_group(root, "toy", attrs={"model": "toy"}, augmentations=["original"], output_shape=(4,),
                                chunk_rows=len(man))
    values = np.random.default_rng(0).normal(size=(len(man), 4)).astype(np.float32)
    ok = np.ones(len(man), bool)
    ok[5] = False                                                  # one image not extracted
    write_rows(group, "original", 0, values, ok)
    return path, man, values, ok


def test_patient_means_and_image_unit(small_cohort, store) -> None:
    cohort, _ = small_cohort
    path, man, values, ok = store
    coh = load_cohort(cohort)
    pts = load_points(coh, latents=None, store=path, model="toy", unit="patient", augmentation="original")
    assert len(pts.units) == man.patient_id.nunique()
    pid = man.patient_id[0]
    rows = values[(man.patient_id == pid).to_numpy() & ok]
    expect = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).mean(0)
    np.testing.assert_allclose(pts.x[pts.units.patient_id == pid][0], expect, rtol=1e-5)
    edema = man[man.patient_id == pid].label_Edema.max()
    assert pts.units.loc[pts.units.patient_id == pid, "label_Edema"].iloc[0] == edema
    img = load_points(coh, latents=None, store=path, model="toy", unit="image", augmentation="original")
    assert len(img.units) == ok.sum() and man.image_id[5] not in set(img.units.image_id)
    assert {"age", "time", "event", "path"} <= set(img.units.columns)


def test_misaligned_inputs_are_errors(small_cohort, tmp_path) -> None:
    cohort, _ = small_cohort
    coh = load_cohort(cohort)
    bad = tmp_path / "latents.zarr"
    g = zarr.open_group(str(bad), mode="w")
    g.create_array("ids", data=np.array(["demo:00000", "nobody"]))
    g.create_array("latent", data=np.zeros((2, 3), np.float32))
    with pytest.raises(InputError, match="not in .*manifest.parquet"):
        load_points(coh, latents=bad, store=None, model=None, unit="patient", augmentation="original")
    with pytest.raises(InputError, match="exactly one input"):
        load_points(coh, latents=None, store=None, model=None, unit="patient", augmentation="original")


def test_patients_without_any_input_are_listed_not_clustered(small_cohort, tmp_path) -> None:
    cohort, latents = small_cohort
    ids, latent, _ = read_latents(latents)
    informed = np.ones(len(ids), bool)
    informed[[3, 7]] = False
    latent[~informed] = 0.0                                   # what the VAE gives a patient with no input
    path = tmp_path / "latents.zarr"
    write_latents(path, ids, latent, split={"train": np.arange(len(ids))}, informed=informed, model="m")
    pts = load_points(load_cohort(cohort), latents=path, store=None, model=None, unit="patient",
                      augmentation="original")
    assert len(pts.units) == len(ids) - 2 and not set(ids[[3, 7]]) & set(pts.units.patient_id)
    assert pts.excluded.patient_id.tolist() == ids[[3, 7]].tolist() and pts.excluded.reason.str.contains("prior").all()
    assert (np.linalg.norm(pts.x, axis=1) > 0).all()
