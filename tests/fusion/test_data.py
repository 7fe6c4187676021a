"""Patient-level assembly: serial image policies, presence of modalities, patient-grouped split."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion.data import load_patient_data, split_patients


def test_assembly_keeps_patients_missing_a_modality(contract_cohort, store_model) -> None:
    cohort, store = contract_cohort
    data = load_patient_data(cohort, store, model=store_model, serial="last")
    manifest = pd.read_parquet(cohort / "manifest.parquet")
    clinical = pd.read_parquet(cohort / "clinical.parquet")
    assert set(data.patient_ids) == set(manifest.patient_id) | set(clinical.patient_id)
    assert (~data.clinical_row).sum() == data.notes["patients_without_clinical_row"] > 0
    assert (~data.has_cxr).sum() == data.notes["patients_without_cxr"] > 0
    assert data.notes["images_without_embedding"] > 0
    assert list(data.clinical.columns) == ["age", "lactate", "il6", "vasopressors", "sex"]
    assert list(data.truth.columns) == ["true_subtype"] and list(data.outcomes.columns) == ["time", "event"]
    assert data.cxr.shape == (len(data), 1, 1, 16)
    assert (data.cxr[~data.cxr_mask] == 0).all()


def test_serial_policies_pick_images_in_time_order(contract_cohort, store_model) -> None:
    cohort, store = contract_cohort
    manifest = pd.read_parquet(cohort / "manifest.parquet")
    first = load_patient_data(cohort, store, model=store_model, serial="first_within_window", window_days=(0.0, 10.0))
    last = load_patient_data(cohort, store, model=store_model, serial="last")
    seq = load_patient_data(cohort, store, model=store_model, serial="all", max_images=2)
    assert seq.cxr.shape[1] == 2 and seq.notes["images_beyond_max_images"] > 0
    # the fixture's offsets are -1, 2, 5 days for images 0, 1, 2 (NaN for every 7th patient)
    i = int(np.flatnonzero((seq.cxr_mask.sum(1) == 2) & ~np.isnan(seq.cxr_offsets[:, 0]))[0])
    pid = seq.patient_ids[i]
    assert np.all(np.diff(seq.cxr_offsets[i]) > 0)                       # time order within the sequence
    assert last.cxr_image_ids[i, 0] == seq.cxr_image_ids[i, 1]           # last of the sequence == "last"
    offsets = manifest.set_index("image_id").offset_days
    chosen = first.cxr_image_ids[list(first.patient_ids).index(pid), 0]
    assert 0.0 <= offsets[chosen] <= 10.0                                # earliest inside the window, not -1
    assert first.notes["patients_first_image_without_offset"] > 0


def test_all_within_window_keeps_the_window_in_time_order(contract_cohort, store_model) -> None:
    cohort, store = contract_cohort
    offsets = pd.read_parquet(cohort / "manifest.parquet").set_index("image_id").offset_days
    data = load_patient_data(cohort, store, model=store_model, serial="all_within_window", window_days=(-1.0, 2.0))
    capped = load_patient_data(cohort, store, model=store_model, serial="all_within_window", window_days=(-1.0, 2.0),
                               max_images=1)
    with_offsets = ~np.isnan(data.cxr_offsets[:, 0]) & data.has_cxr
    assert (data.cxr_mask[with_offsets].sum(1) == 2).any()            # -1 and 2 days both kept, 5 days not
    for i in np.flatnonzero(with_offsets):
        kept = [offsets[x] for x, m in zip(data.cxr_image_ids[i], data.cxr_mask[i]) if m]
        assert all(-1.0 <= o <= 2.0 for o in kept) and kept == sorted(kept)
    assert capped.cxr.shape[1] == 1 and capped.notes["images_beyond_max_images"] > 0
    assert data.notes["images_beyond_max_images"] == 0


def test_split_is_disjoint_seeded_and_complete() -> None:
    ids = np.array([f"p{i}" for i in range(50)])
    a = split_patients(ids, val_fraction=0.2, test_fraction=0.2, seed=3)
    b = split_patients(ids, val_fraction=0.2, test_fraction=0.2, seed=3)
    c = split_patients(ids, val_fraction=0.2, test_fraction=0.2, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    allidx = np.concatenate(list(a.values()))
    assert sorted(allidx) == list(range(50)) and (len(a["val"]), len(a["test"])) == (10, 10)
    with pytest.raises(ValueError, match="unique"):
        split_patients(np.array(["p1", "p1", "p2"]), val_fraction=0.3, test_fraction=0.3, seed=0)
