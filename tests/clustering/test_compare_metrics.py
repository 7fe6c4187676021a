"""Model-comparison measures against independent implementations and their invariances."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from clustering.compare_metrics import (
    knn_jaccard,
    linear_cka,
    probe_auroc,
    probe_targets,
    variance_concentration,
)
from clustering.config import KnnConfig
from clustering.knn import build_knn


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from the n x n Gram matrices and the centring matrix (Kornblith et al. 2019, eq. 3)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    gram_x, gram_y = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(gram_x, gram_y) / np.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y))


def test_linear_cka_equals_gram_matrix_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 7)) + 3.0
    y = np.c_[x[:, :3] @ rng.normal(size=(3, 5)), rng.normal(size=(80, 6))] - 2.0
    ours = linear_cka(x.astype(np.float32), y.astype(np.float32))
    assert ours == pytest.approx(_hsic_cka(x, y), abs=1e-5)
    assert 0.05 < ours < 0.95
    # invariances: orthogonal transform, isotropic scale, offset; and a model with itself
    q = ortho_group.rvs(7, random_state=1)
    assert linear_cka(x.astype(np.float32), (3 * x @ q + 5).astype(np.float32)) == pytest.approx(1.0, abs=1e-5)
    z = rng.normal(size=(80, 4))
    assert linear_cka(z.astype(np.float32), z[:, ::-1].astype(np.float32)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("pca_dims", [None, 20])
def test_knn_jaccard_is_one_for_itself_and_a_rotation(pca_dims):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 40))
    x = (centres[rng.integers(0, 6, 600)] + 0.8 * rng.normal(size=(600, 40))).astype(np.float32)
    rotated = (x @ ortho_group.rvs(40, random_state=4)).astype(np.float32)
    cfg = KnnConfig(k=15, pca_dims=pca_dims)
    a = build_knn(x, cfg, seed=0, progress=False).indices
    b = build_knn(rotated, cfg, seed=0, progress=False).indices
    assert knn_jaccard(a, a).min() == 1.0
    assert knn_jaccard(a, b).mean() == pytest.approx(1.0, abs=1e-9)
    other = build_knn(rng.normal(size=(600, 40)).astype(np.float32), cfg, seed=0, progress=False).indices
    assert knn_jaccard(a, other).mean() < 0.05          # unrelated data: near chance (15 / 599)


def test_knn_jaccard_counts_overlap():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 2, 9], [7, 8, 9]])
    assert knn_jaccard(a, b).tolist() == [2 / 4, 0.0]


def test_probe_is_patient_grouped_and_drops_rare_levels():
    rng = np.random.default_rng(5)
    patients = np.repeat(np.arange(200), 3)
    level = np.where(patients % 2 == 0, "a", "b").astype(object)
    level[:3] = "rare"                                   # one patient only: left out
    x = rng.normal(size=(600, 8)).astype(np.float32)
    x[:, 0] += 2.0 * (level == "b")
    codes, levels = probe_targets(pd.Series(level), patients, min_patients=10)
    assert levels == ["a", "b"] and (codes[:3] == -1).all()
    res = probe_auroc(x, codes, patients, folds=5, C=1.0, seed=0, max_n=10_000)
    assert res["auroc"] > 0.85 and res["n"] == 597
    # a per-patient random code with no signal: patient-grouped folds keep it at chance
    noise = pd.Series(np.where(rng.random(200) < 0.5, "u", "v")[patients])
    codes, _ = probe_targets(noise, patients, min_patients=10)
    assert abs(probe_auroc(x, codes, patients, folds=5, C=1.0, seed=0, max_n=10_000)["auroc"] - 0.5) < 0.1


def test_variance_concentration_flags_a_few_dominant_features():
    rng = np.random.default_rng(0)
    even = rng.normal(size=(500, 40))
    assert abs(variance_concentration(even) - 5 / 40) < 0.05
    scaled = even * np.r_[np.full(3, 100.0), np.ones(37)]        # 3 features on a pixel-count scale
    assert variance_concentration(scaled) > 0.99
    assert variance_concentration(even[:, :4]) == 1.0


def test_shipped_compare_and_bulk_configs_validate():
    from pathlib import Path

    from clustering.compare_config import CompareConfig
    from core.config import load_config
    from embedders.bulk import BulkImportConfig

    repo = Path(__file__).resolve().parents[2]
    shipped = sorted((repo / "configs" / "compare").glob("*.yaml"))
    assert {p.stem for p in shipped} >= {"covid_cxr", "emory"}
    for path in shipped:
        assert len(load_config(path, CompareConfig).columns) >= 5
    assert len(load_config(repo / "configs" / "embedders" / "emory_bulk.yaml", BulkImportConfig).models) == 5
