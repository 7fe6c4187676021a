"""Site diagnostics: per-patient site values, AMI/AUROC/mixing on planted confounded and unconfounded data,
replication and leave-one-site-out, the composition figure."""
from __future__ import annotations

import numpy as np
import pandas as pd

from clustering.config import GmmConfig, KnnConfig, SitesConfig
from clustering.gmm import fit_gmm
from clustering.knn import build_knn
from clustering.sites import SiteColumns, composition_figure, ilisi, mixing, site_columns, site_diagnostics


def test_view_per_patient_is_the_majority_then_the_earliest_image() -> None:
    manifest = pd.DataFrame({"image_id": list("abcdef"), "patient_id": ["p1", "p1", "p1", "p2", "p2", "p3"],
                             "view": ["AP", "PA", "PA", "PA", "AP", "AP"], "offset_days": [0, 1, 2, 5, 1, 0],
                             "dataset": ["x", "x", "x", "y", "y", "y"]})
    units = pd.DataFrame({"patient_id": ["p1", "p2", "p3"], "sex": ["F", "M", None]})
    sites = site_columns(units, manifest, columns=None)
    assert list(sites.frame.columns) == ["dataset", "view", "sex"]
    assert list(sites.frame.view) == ["PA", "AP", "AP"]           # p2: tie -> its earliest image (day 1, AP)
    assert "2 patient(s) have images that disagree" in sites.how["view"]
    assert sites.frame.sex.isna().sum() == 1


def test_ilisi_is_one_for_pure_and_the_cohort_value_for_mixed_neighbourhoods() -> None:
    levels = np.array(["a", "b"] * 50)
    pure = np.array([[j for j in range(i % 2, 100, 2) if j != i][:5] for i in range(100)])
    mixed = np.array([[(i + 1 + j) % 100 for j in range(5)] for i in range(100)])
    assert np.allclose(ilisi(pure, levels), 1.0)
    assert np.allclose(ilisi(mixed, levels), 2.0)                 # self + 5 neighbours: 3 of each level
    assert mixing(pure, levels, seed=0)["score"] == 0.0 and mixing(mixed, levels, seed=0)["score"] > 0.95


def _diagnose(site: np.ndarray, x: np.ndarray, labels: np.ndarray) -> dict:
    knn = build_knn(x, KnnConfig(), seed=0, progress=False)
    sites = SiteColumns(pd.DataFrame({"site": pd.Series(site, dtype="string")}), {"site": "test"})

    def cluster(sub: np.ndarray, seed: int) -> np.ndarray:
        return fit_gmm(sub, n_components=3, cfg=GmmConfig(), seed=seed)[0]

    return site_diagnostics(x, labels, sites, indices=knn.indices, groups=np.arange(len(x)).astype(str),
                            model_inputs=set(), cluster=cluster, cfg=SitesConfig(min_patients=50), seed=0)["site"]


def test_diagnostics_separate_confounded_from_mixed_sites(tmp_path) -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice(3, 450)
    x = (rng.normal(size=(3, 10))[truth] * 3 + rng.normal(size=(450, 10))).astype(np.float32)
    mixed = _diagnose(rng.choice(["h1", "h2", "h3"], 450), x, truth)
    assert abs(mixed["ami"]) < 0.02 and mixed["classifier"]["auroc"] < 0.6 and mixed["mixing"]["score"] > 0.9
    assert all(r["agreement"] > 0.95 for r in mixed["replication"])
    assert all(r["accuracy"] > 0.95 for r in mixed["leave_one_out"])
    confounded = _diagnose(np.array(["h1", "h2", "h3"])[truth], x, truth)      # each site is one subtype
    assert confounded["ami"] > 0.99 and confounded["classifier"]["auroc"] > 0.99
    assert confounded["mixing"]["score"] < 0.1
    assert all(r["accuracy"] == 0 and r["subtypes_unseen_in_training"] for r in confounded["leave_one_out"])
    png = composition_figure({"site": mixed}, path=tmp_path / "comp.png")
    assert png.stat().st_size > 5000


def test_many_levels_fold_into_other() -> None:
    from clustering.sites import top_levels

    comp = pd.DataFrame(np.arange(40).reshape(2, 20), index=["S1", "S2"], columns=[f"l{i}" for i in range(20)])
    short = top_levels(comp, keep=7)
    assert short.shape == (2, 8) and short.sum(1).tolist() == comp.sum(1).tolist()
    assert short.columns[-1] == "other (13 levels)" and list(short.columns[:2]) == ["l19", "l18"]


def test_leave_one_out_predicts_a_seeded_sample_of_large_levels() -> None:
    from clustering.sites import leave_one_out

    rng = np.random.default_rng(1)
    truth = rng.choice(3, 600)
    x = (rng.normal(size=(3, 8))[truth] * 3 + rng.normal(size=(600, 8))).astype(np.float32)
    levels = pd.Series(np.where(np.arange(600) < 500, "big", "small"))
    rows = {r["level"]: r for r in leave_one_out(x, truth, levels, k=15, max_queries=120, seed=0)}
    assert (rows["big"]["n"], rows["big"]["n_predicted"]) == (500, 120)
    assert (rows["small"]["n"], rows["small"]["n_predicted"]) == (100, 100)
    assert rows["big"]["accuracy"] > 0.95
    again = {r["level"]: r for r in leave_one_out(x, truth, levels, k=15, max_queries=120, seed=0)}
    assert again == rows
