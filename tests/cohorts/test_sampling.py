import numpy as np
import pandas as pd
import pytest

from cohorts.sampling import balanced_sample


def _manifest(n_patients: int = 400, images_per_patient: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"image_id": f"p{p}/i{i}", "patient_id": f"p{p}", "dataset": "d"}
            for p in range(n_patients) for i in range(images_per_patient)]
    df = pd.DataFrame(rows)
    df["label_X"] = pd.array(rng.choice([1, 0, -1, None], size=len(df), p=[0.4, 0.4, 0.1, 0.1]), dtype="Int8")
    return df


def test_balanced_counts_and_one_image_per_patient():
    res = balanced_sample(_manifest(), labels=["X"], n_per_class=100, seed=1)
    s = res.sample
    assert list(s.columns) == ["dataset", "label", "image_id", "patient_id", "y"]
    assert (s["y"] == 1).sum() == 100 and (s["y"] == 0).sum() == 100
    assert not s["patient_id"].duplicated().any()
    m = _manifest().set_index("image_id")
    assert (m.loc[s["image_id"], "label_X"].to_numpy() == s["y"].to_numpy()).all()   # y is the coded label
    assert res.shortfalls == []


def test_same_seed_same_sample_and_different_seed_differs():
    a = balanced_sample(_manifest(), labels=["X"], n_per_class=100, seed=7).sample
    b = balanced_sample(_manifest(), labels=["X"], n_per_class=100, seed=7).sample
    c = balanced_sample(_manifest(), labels=["X"], n_per_class=100, seed=8).sample
    pd.testing.assert_frame_equal(a, b)
    assert set(a["image_id"]) != set(c["image_id"])


def test_label_order_does_not_change_a_labels_sample():
    m = _manifest()
    m["label_Y"] = m["label_X"][::-1].to_numpy()
    a = balanced_sample(m, labels=["X", "Y"], n_per_class=50, seed=3).sample
    b = balanced_sample(m, labels=["Y", "X"], n_per_class=50, seed=3).sample
    key = ["label", "image_id"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))


def test_fewer_than_n_uses_all_and_warns(caplog):
    m = _manifest(n_patients=30)
    with caplog.at_level("WARNING"):
        res = balanced_sample(m, labels=["X"], n_per_class=1000, seed=0)
    assert res.shortfalls == ["d/X"] and "using all" in caplog.text
    pos_patients = m.loc[m["label_X"] == 1, "patient_id"].nunique()
    assert res.counts["d/X"]["positive"] == pos_patients
    assert not res.sample["patient_id"].duplicated().any()


def test_scarce_class_is_not_starved_by_patients_of_the_other():
    # 50 patients with a positive image; only patients 0-9 also have a negative image
    rows = [{"image_id": f"p{p}/pos", "patient_id": f"p{p}", "label_X": 1} for p in range(50)]
    rows += [{"image_id": f"p{p}/neg", "patient_id": f"p{p}", "label_X": 0} for p in range(10)]
    m = pd.DataFrame(rows).assign(dataset="d").astype({"label_X": "Int8"})
    for seed in range(5):
        res = balanced_sample(m, labels=["X"], n_per_class=10, seed=seed)
        assert res.counts["d/X"] == {"positive": 10, "negative": 10, "asked": 10}
        assert not res.sample["patient_id"].duplicated().any()


def test_uncertain_and_missing_never_sampled_and_images_per_patient_option():
    m = _manifest(n_patients=20)
    res = balanced_sample(m, labels=["X"], n_per_class=1000, seed=0, one_per_patient=False)
    coded = m["label_X"].isin([0, 1])
    assert set(res.sample["image_id"]) == set(m.loc[coded, "image_id"])


@pytest.mark.real_data
def test_nih_four_labels_1000_each(nih_result):
    res = balanced_sample(nih_result.manifest, labels=["Atelectasis", "Edema", "Effusion", "Opacity"], seed=0)
    for label in ("Atelectasis", "Edema", "Effusion"):
        assert res.counts[f"nih/{label}"] == {"positive": 1000, "negative": 1000, "asked": 1000}
    # Google's Opacity labels cover 4,376 images of ~2,000 patients: fewer than 1000 distinct patients per class
    assert res.shortfalls == ["nih/Opacity"]
    for _, part in res.sample.groupby("label"):
        assert not part["patient_id"].duplicated().any()


def _nih_like(seed: int = 0) -> pd.DataFrame:
    """200 patients, one image each: Pneumonia or No Finding; the finding X only among Pneumonia images."""
    rng = np.random.default_rng(seed)
    pneumonia = rng.random(200) < 0.5
    x = pneumonia & (rng.random(200) < 0.3)
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(200)], "patient_id": [f"p{k}" for k in range(200)],
                         "dataset": "nih", "label_X": pd.array(x.astype(int), dtype="Int8"),
                         "label_Pneumonia": pd.array(pneumonia.astype(int), dtype="Int8"),
                         "label_NoFinding": pd.array((~pneumonia).astype(int), dtype="Int8")})


def test_negative_definitions_balance_and_too_small_labels():
    m = _nih_like()
    m["label_Tiny"] = pd.array([1] * 3 + [0] * 197, dtype="Int8")
    res = balanced_sample(m, labels=["X", "Tiny"], n_per_class=1000, seed=0, balance_to_smaller=True,
                          negatives_from={"Pneumonia": "Pneumonia", "NoFinding": "NoFinding"}, min_per_class=5)
    s = res.sample.merge(m, on=["image_id", "patient_id", "dataset"])
    assert set(s["label"]) == {"X_vs_Pneumonia", "X_vs_NoFinding"}          # Tiny left out ...
    assert res.counts["nih/Tiny_vs_Pneumonia"]["too_small"] is True          # ... but reported
    n_pos = int(m["label_X"].sum())
    for name, pool in (("X_vs_Pneumonia", "label_Pneumonia"), ("X_vs_NoFinding", "label_NoFinding")):
        part = s[s["label"] == name]
        assert (part["y"] == 1).sum() == (part["y"] == 0).sum() == n_pos     # balanced up to what exists
        negatives = part[part["y"] == 0]
        assert (negatives[pool] == 1).all() and (negatives["label_X"] == 0).all()
    with pytest.raises(ValueError, match="Absent"):
        balanced_sample(m, labels=["X"], negatives_from={"A": "Absent"})
