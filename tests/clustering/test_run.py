"""End to end on the contract-format fixture: planted subtypes recovered, survival separates, outputs
complete and guarded, Embedding Atlas export, and the report renders in headless Chromium."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clustering.config import ClusteringConfig
from clustering.export import ExportError
from clustering.run import run_clustering

CFG = {"leiden": {"n_seeds": 3, "n_subsamples": 2, "resolutions": [0.1, 0.3, 1.0]}, "stability": {"n_resamples": 4},
       "export": {"columns": ["age", "sex", "label_Edema"]}, "studies": {"label_noise": True, "cross_dataset": True},
       "characterize": {"montage_per_subtype": 4}}


@pytest.fixture(scope="module")
def run_out(small_cohort, tmp_path_factory) -> tuple[Path, dict]:
    cohort, latents = small_cohort
    out = tmp_path_factory.mktemp("run")
    paths = run_clustering(ClusteringConfig(**CFG), cohort=cohort, latents=latents, out=out)
    return out, paths


def test_planted_subtypes_and_survival(run_out) -> None:
    out, _ = run_out
    m = json.loads((out / "metrics.json").read_text())
    assert m["truth_ari"]["true_subtype"]["chosen"] > 0.9
    assert m["survival"]["logrank_p"] < 1e-6
    assert m["knn"]["method"] == "exact" and m["leiden"]["n_subtypes"] == 3
    sweep = pd.read_csv(out / "resolution_sweep.csv")
    assert {"modularity", "seed_ari", "subsample_ari", "chosen"} <= set(sweep.columns)


def test_export_holds_only_allow_listed_columns(run_out, small_cohort) -> None:
    out, paths = run_out
    df = pd.read_parquet(paths["subtypes_parquet"])
    assert list(df.columns) == ["patient_id", "subtype", "confidence", "umap_1", "umap_2", "age", "sex", "label_Edema"]
    csv = pd.read_csv(paths["subtypes_csv"])
    assert len(csv) == len(df) == 240 and df.confidence.between(0, 1).all()
    atlas = pd.read_parquet(paths["atlas_parquet"])
    assert "patient_name" not in atlas.columns and "path" not in atlas.columns
    # row level: the same allow-list as subtypes.csv (outcomes not listed in export.columns stay home)
    assert {"umap_1", "umap_2", "subtype", "label_Edema", "neighbors"} <= set(atlas.columns)
    assert not {"time", "event", "vasopressors"} & set(atlas.columns)
    assert atlas.patient_id.str.fullmatch(r"P-[0-9a-f]{16}").all() and atlas.patient_id.tolist() == df.patient_id.tolist()
    assert (paths["atlas_app"] / "index.html").is_file() and (paths["atlas_app"] / "data" / "dataset.parquet").is_file()
    app = pd.read_parquet(paths["atlas_app"] / "data" / "dataset.parquet")
    assert set(app.get("FILE_NAME", pd.Series(["atlas.parquet"]))) == {"atlas.parquet"}   # no machine path
    for name in ("table1.csv", "label_enrichment.csv", "study_label_noise.csv", "study_cross_dataset.csv",
                 "config.resolved.yaml", "run.json", "figures/montage.png", "figures/kaplan_meier.png",
                 "validity.json", "site_diagnostics.json", "figures/site_composition.png", "gmm_bic.csv"):
        assert (out / name).is_file(), name


def test_validity_panel_heads_the_report_and_metrics_name_the_figures(run_out) -> None:
    out, paths = run_out
    checks = json.loads(paths["validity"].read_text())
    assert all(set(c) == {"check", "status", "value", "threshold", "message"} for c in checks)
    assert {c["check"] for c in checks} >= {"resampling stability", "smallest subtype", "Kaplan-Meier groups",
                                            "Cox hazard ratios", "excluded patients", "site confounding: subtypes vs dataset"}
    page = paths["report"].read_text()
    assert page.index("Validity panel") < page.index("<h2>Summary") < page.index("Site diagnostics")
    m = json.loads((out / "metrics.json").read_text())
    assert m["truth"]["true_subtype"]["ari"] > 0.9 and m["truth"]["true_subtype"]["n_subtypes"] == 3
    assert abs(m["site_ami"]["dataset"]) < 0.05
    # full-covariance BIC on 240 points x 16 dims merges two classes (2 classes, ARI 0.70 with Leiden; diag finds 3):
    # the panel reports both methods and their agreement rather than hiding the disagreement
    assert m["methods"]["gmm"]["n_components_bic"] == 2 and 0.5 < m["methods"]["agreement_ari"] < 0.9


def test_compute_clustering_returns_what_the_stage_writes(run_out, small_cohort, tmp_path, monkeypatch) -> None:
    """The Python API writes nothing; its result's metrics() is metrics.json less environment and timing."""
    from clustering.compute import compute_clustering

    out, _ = run_out
    cohort, latents = small_cohort
    monkeypatch.chdir(tmp_path)
    res = compute_clustering(ClusteringConfig(**CFG), cohort=cohort, latents=latents)
    assert list(tmp_path.iterdir()) == []
    written = json.loads((out / "metrics.json").read_text())
    computed = res.metrics(root=out.resolve().parent, km_figure="figures/kaplan_meier.png")
    assert json.loads(json.dumps(computed, default=str)) == {k: v for k, v in written.items()
                                                              if k not in ("environment", "seconds")} | {
        "knn": {**written["knn"], "seconds": computed["knn"]["seconds"]},
        "leiden": {**written["leiden"], "seconds": computed["leiden"]["seconds"]}}
    assert res.units.subtype.tolist() == pd.read_csv(out / "subtypes.csv").subtype.tolist()
    assert res.params["neighbors"]["n_neighbors"] == res.knn.indices.shape[1]
    assert res.params["leiden"]["resolution"] == written["leiden"]["resolution"]


def test_planted_identifying_column_stops_the_run_early(small_cohort, tmp_path) -> None:
    cohort, latents = small_cohort
    cfg = ClusteringConfig(export={"columns": ["age", "patient_name"]})
    with pytest.raises(ExportError, match="patient_name"):
        run_clustering(cfg, cohort=cohort, latents=latents, out=tmp_path)
    assert not (tmp_path / "subtypes.csv").exists()


def test_numpy_weights_equal_umap_learn(small_cohort) -> None:
    from umap.umap_ import fuzzy_simplicial_set

    from clustering.config import KnnConfig
    from clustering.inputs import load_latents
    from clustering.knn import build_knn
    from clustering.leiden import connectivities, with_self

    _, x, _ = load_latents(small_cohort[1])
    knn = build_knn(x, KnnConfig(), seed=0, progress=False)
    ind, dist = with_self(knn.indices, knn.distances)
    ref, _, _ = fuzzy_simplicial_set(np.empty((len(x), 1)), ind.shape[1], np.random.RandomState(0), "cosine",
                                     knn_indices=ind, knn_dists=dist)
    ref = ref.tocsr()
    ref.setdiag(0)
    ref.eliminate_zeros()
    ours = connectivities(knn)
    assert ours.nnz == ref.nnz and abs(ours - ref).max() < 1e-5


def test_report_renders_in_headless_chromium(run_out, tmp_path, render_html) -> None:
    out, _ = run_out
    shot = tmp_path / "report.png"
    dom = render_html(out / "report.html", shot)
    n_figs = len(list((out / "figures").glob("*.png")))
    assert f'data-figures-loaded="{n_figs}"' in dom and f'data-figures="{n_figs}"' in dom
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2000, 1200)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200     # figures drawn, not a blank page


def test_h5ad_round_trips_and_scanpy_plots_it(run_out, tmp_path) -> None:
    import anndata as ad

    out, paths = run_out
    adata = ad.read_h5ad(paths["h5ad"])
    export = pd.read_parquet(paths["subtypes_parquet"])
    assert adata.n_obs == len(export) == 240 and list(adata.obs_names) == export.patient_id.tolist()
    assert list(adata.obs.columns) == ["subtype", "confidence", "age", "sex", "label_Edema"]   # allow-list only
    assert adata.obs.subtype.astype(str).tolist() == export.subtype.tolist()
    assert adata.obsm["X_latent"].shape == (240, 16)
    np.testing.assert_allclose(adata.obsm["X_umap"], export[["umap_1", "umap_2"]].to_numpy(), rtol=1e-6)
    d, c = adata.obsp["distances"], adata.obsp["connectivities"]
    assert (d.getnnz(axis=1) == 15).all() and abs(c - c.T).max() < 1e-6 and c.diagonal().max() == 0
    assert adata.uns["neighbors"]["params"]["n_neighbors"] == 15 and adata.uns["neighbors"]["distances_key"] == "distances"
    m = json.loads((out / "metrics.json").read_text())
    assert adata.uns["leiden"]["params"]["resolution"] == m["leiden"]["resolution"]
    sc = pytest.importorskip("scanpy", reason="scanpy is in the dev extra (pip install '.[dev]')")
    import matplotlib

    matplotlib.use("Agg")
    fig = sc.pl.umap(adata, color="subtype", show=False, return_fig=True)
    fig.savefig(tmp_path / "umap.png")
    assert (tmp_path / "umap.png").stat().st_size > 5000
    sc.tl.leiden(adata, resolution=adata.uns["leiden"]["params"]["resolution"], key_added="again",
                 flavor="igraph", n_iterations=2, random_state=0)     # scanpy's tools read the stored graph
    assert adata.obs.again.nunique() >= 2
