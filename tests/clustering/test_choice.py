"""Cluster choice: membership confidence cannot contradict stability, the Gaussian mixture (BIC) finds planted
classes, and on Gaussian noise the stage reports no stable subtypes instead of a partition."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from clustering.config import ClusteringConfig, GmmConfig, StabilityConfig
from clustering.gmm import choose_gmm
from clustering.run import run_clustering
from clustering.stability import membership_agreement, subsample_stability
from core.parallel import on_dask
from fusion.latents import write_latents


def _planted(n: int = 400, d: int = 12, sep: float = 2.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    return (rng.normal(size=(3, d))[truth] * sep + rng.normal(size=(n, d))).astype(np.float32), truth


def test_membership_agreement_scores_collapse_and_shuffles_zero() -> None:
    ref = np.repeat([0, 1], [60, 40])
    np.testing.assert_allclose(membership_agreement(ref, ref), 1.0)
    np.testing.assert_allclose(membership_agreement(ref, np.zeros(100, int)), 0.0)     # everyone merged
    shuffled = np.random.default_rng(0).permutation(ref)
    assert membership_agreement(ref, shuffled).mean() < 0.1
    split = np.where(np.arange(100) < 30, 0, np.where(ref == 0, 2, 1))               # S1 split in two halves
    score = membership_agreement(ref, split)
    assert score[ref == 1].min() == 1.0 and 0.2 < score[ref == 0].mean() < 0.7


def test_confidence_follows_the_resampling_ari() -> None:
    """A clustering that collapses on half the resamples: the old confidence said 0.99; now it tracks the ARI."""
    x, truth = _planted(n=200)
    calls = iter(range(100))

    def flaky(subsets: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
        return [np.zeros(len(nodes), int) if next(calls) % 2 else truth[nodes] for nodes in subsets]

    res = subsample_stability(truth, cluster=flaky, cfg=StabilityConfig(n_resamples=10), seed=0)
    assert abs(res.ari.mean() - 0.5) < 0.01
    assert abs(np.nanmean(res.confidence) - res.ari.mean()) < 0.1 and np.nanmedian(res.confidence) < 0.7


def test_gmm_bic_recovers_planted_classes_and_finds_one_class_in_noise() -> None:
    x, truth = _planted()
    res = choose_gmm(x, GmmConfig(max_components=6), seed=0, progress=False)
    assert res.n_components == 3 and adjusted_rand_score(truth, res.labels) > 0.9
    assert res.bic.chosen.sum() == 1 and res.bic.loc[res.bic.chosen, "bic"].iloc[0] == res.bic.bic.min()
    noise = np.random.default_rng(1).normal(size=(400, 12)).astype(np.float32)
    assert choose_gmm(noise, GmmConfig(max_components=6), seed=0, progress=False).n_components == 1


def test_gmm_bic_table_and_labels_do_not_depend_on_the_worker_count_or_dask() -> None:
    x, _ = _planted()
    one = choose_gmm(x, GmmConfig(max_components=4), seed=0, progress=False, workers=1)
    two = choose_gmm(x, GmmConfig(max_components=4), seed=0, progress=False, workers=2)
    with on_dask(workers=2):
        dask = choose_gmm(x, GmmConfig(max_components=4), seed=0, progress=False)
    for other in (two, dask):
        pd.testing.assert_frame_equal(one.bic, other.bic)
        np.testing.assert_array_equal(one.labels, other.labels)


def test_noise_stage_reports_no_stable_subtypes(small_cohort, tmp_path) -> None:
    cohort, _ = small_cohort
    ids = pd.read_parquet(cohort / "clinical.parquet").patient_id.to_numpy()
    noise = np.random.default_rng(0).normal(size=(len(ids), 16)).astype(np.float32)
    latents = write_latents(tmp_path / "latents.zarr", ids, noise, split={"train": np.arange(len(ids))},
                            informed=np.ones(len(ids), bool), model="noise")
    cfg = ClusteringConfig(leiden={"n_seeds": 2, "n_subsamples": 3}, stability={"n_resamples": 3},
                           characterize={"montage_per_subtype": 0}, atlas={"enabled": False}, umap={"n_epochs": 50})
    paths = run_clustering(cfg, cohort=cohort, latents=latents, out=tmp_path / "out")
    m = json.loads(paths["metrics"].read_text())
    assert m["stable_structure"] is False and m["n_subtypes"] == 1
    assert m["methods"]["gmm"]["n_subtypes"] == 1 and m["methods"]["leiden"]["stable"] is False
    assert set(pd.read_csv(paths["subtypes_csv"]).subtype) == {"S1"}
    panel = {c["check"]: c for c in json.loads(paths["validity"].read_text())}
    assert panel["resampling stability"]["status"] == "fail"
    assert "No stable subtypes" in panel["resampling stability"]["message"]
    assert "NO STABLE SUBTYPES" in paths["report"].read_text()
