"""End to end on a small synthetic Emory: split tables -> Emory adapter -> sharded import -> comparison."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from clustering.compare import run_compare
from clustering.compare_config import CompareConfig
from cohorts.config import CohortsConfig
from cohorts.emory_synth import generate_emory
from cohorts.run import run_cohorts
from embedders.bulk import BulkImportConfig, run_bulk_import

COLUMN_OF = {"view": "view", "manufacturer": "Manufacturer", "sex": "sex", "age_band": "age_band", "site": "site"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("emory")
    syn = generate_emory(root / "raw", n_metadata=8000, n_patients=1200, n_studies=4500, n_images=1500, dim=48,
                         shard_rows=400, sdoh_columns=6, seed=1)
    source = {"kind": "emory", "metadata": syn.tables["metadata"], "key": "sop_id", "keep_ids": syn.sample_ids,
              "tables": [{"path": syn.tables["findings"], "key": "acc_anon"},
                         {"path": syn.tables["manufacturer"], "key": "sop_id"},
                         {"path": syn.tables["sdoh"], "key": "empi_anon", "columns": ["adi_national_rank"]}],
              "columns": {"image_id": "sop_id", "patient_id": "empi_anon", "study_id": "acc_anon",
                          "path": "png_path", "view": "ViewPosition", "acquired_at": "study_date"},
              "labels": {"Effusion": "Pleural Effusion"},
              "extra_columns": ["sop_id", "Manufacturer", "site", "sex", "age", "adi_national_rank"]}
    cohort = run_cohorts(CohortsConfig(sources=[source], views=None, check_files=False, verify_images=False,
                                       overview=False), out=root / "cohort")
    models = [{"name": m, "path": str(p), "id_column": "sop_id", "match_column": "sop_id", "batch_rows": 300}
              for m, p in syn.embeddings.items()]
    store = root / "store.zarr"
    imported = run_bulk_import(BulkImportConfig(models=models, chunk_rows=128), manifest=cohort["manifest"], store=store)
    cfg = CompareConfig(columns=["view", "Manufacturer", "sex", "age", "site", "label_Effusion"],
                        bins={"age": [0, 40, 60, 75, 200]}, umap={"enabled": False}, atlas={"enabled": False},
                        leiden={"resolution": 0.5, "n_seeds": 1, "n_subsamples": 0})
    paths = run_compare(cfg, cohort=root / "cohort", store=store, out=root / "compare")
    return syn, cohort, imported, paths


def test_import_lists_ids_missing_from_some_models(synthetic):
    syn, cohort, imported, _ = synthetic
    manifest = pd.read_parquet(cohort["manifest"])
    assert len(manifest) == 1500                                   # keep_ids: only the sampled images
    assert manifest.adi_national_rank.notna().all()                # patient-level SDOH joined onto images
    last = list(syn.embeddings)[-1]
    align = pd.read_csv(imported["alignment"])
    assert len(align) > 0 and set(align.missing_from) == {last}
    errors = pd.read_csv(imported["errors"])
    assert sorted(errors.image_id) == ["sop_unknown_0", "sop_unknown_1", "sop_unknown_2"]
    assert (errors.model == last).all()


def test_probes_recover_which_model_encodes_which_nuisance(synthetic):
    syn, _, _, paths = synthetic
    probes = pd.read_csv(paths["probes"]).pivot(index="model", columns="column", values="auroc")
    for model, weights in syn.truth.items():
        for factor in weights:
            col = COLUMN_OF[factor]
            assert probes[col].idxmax() == model, (factor, probes[col].to_dict())
            assert probes.loc[model, col] > 0.8           # weight 1 (age band) gives ~0.89, weight >= 1.5 ~1.0
    plain = next(m for m, w in syn.truth.items() if not w)          # encodes no nuisance
    assert (probes.loc[plain, ["view", "sex", "age_band", "site", "Manufacturer"]] < 0.65).all()


def test_comparison_outputs(synthetic):
    _, _, imported, paths = synthetic
    pairs = pd.read_csv(paths["pairs"])
    assert len(pairs) == 10 and pairs[["cka", "knn_jaccard", "ari", "ami"]].notna().all().all()
    missing = pd.read_csv(paths["missing"])
    assert len(missing) == len(pd.read_csv(imported["alignment"]))  # compared on the shared images, rest listed
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["n_shared"] == 1500 - len(missing)
    dis = pd.read_csv(paths["disagreement"])
    assert dis.agreement.is_monotonic_increasing and len(dis) == metrics["n_shared"]
    html = paths["report"].read_text()
    assert "What each model encodes" in html and html.count("data:image/png;base64") >= 4
    groups = pd.read_csv(paths["groups"])
    assert {"view", "Manufacturer", "age_band"} <= set(groups.column)
