"""cohorts.demo sites: a constant site per patient, case mix, laboratory and detector differences, sites=1."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import adjusted_mutual_info_score

from cohorts.demo import SITES, generate_demo


def _tables(raw: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(raw / "manifest.csv"), pd.read_csv(raw / "clinical.csv")


def test_site_is_constant_per_patient_and_shared_by_both_tables(demo_300: Path) -> None:
    manifest, clinical = _tables(demo_300)
    per_patient = manifest.groupby("patient_id")["site"].nunique()
    assert (per_patient == 1).all()
    joined = manifest.merge(clinical[["patient_id", "site"]], on="patient_id", suffixes=("", "_clinical"))
    assert (joined["site"] == joined["site_clinical"]).all()
    shares = clinical["site"].value_counts(normalize=True)
    assert sorted(shares.index) == ["A", "B", "C"] and shares.between(0.25, 0.42).all(), shares.to_dict()


def test_case_mix_differs_by_site_but_barely_predicts_the_subtype(demo_300: Path) -> None:
    _, clinical = _tables(demo_300)
    hyper = clinical.groupby("site")["true_subtype"].apply(lambda z: (z == 0).mean())
    assert hyper["B"] > hyper["C"] + 0.05, hyper.to_dict()
    assert adjusted_mutual_info_score(clinical["site"], clinical["true_subtype"]) < 0.03


def test_laboratory_differences(demo_300: Path) -> None:
    _, clinical = _tables(demo_300)
    by_site = clinical.groupby("site")
    pf = by_site["pf_ratio"].median()
    assert pf["C"] < 60 and pf["A"] > 100 and pf["B"] > 100            # site C reports P/F with PaO2 in kPa
    hypo = clinical[clinical["true_subtype"] != 0].groupby("site")["il6"].median()
    assert hypo["B"] > 1.8 * hypo["A"] > 3 * hypo["C"]                 # immunoassay calibration
    missing = by_site["il6"].apply(lambda v: v.isna().mean())
    assert missing["B"] > missing["A"] + 0.25                         # biomarker sub-study at half of B's ICUs (0.50 vs 0.15)
    lactate_missing = by_site["lactate"].apply(lambda v: v.isna().mean())
    assert lactate_missing["C"] > lactate_missing["A"] + 0.15


def test_detectors_differ_in_tone_noise_and_view_mix(demo_300: Path) -> None:
    manifest, _ = _tables(demo_300)
    supine = manifest.groupby("site")["view"].apply(lambda v: (v == "AP Supine").mean())
    pa = manifest.groupby("site")["view"].apply(lambda v: (v == "PA").mean())
    assert supine["C"] > supine["A"] + 0.15 and pa["B"] > pa["A"] + 0.15
    first = manifest.groupby("site").head(30)
    stats = []
    for path, site in zip(first["path"], first["site"]):
        img = np.asarray(Image.open(demo_300 / path), dtype=np.float32) / 255.0
        outside = img[:, :3]                                            # air beside the body: noise only
        stats.append({"site": site, "mean": img.mean(), "noise": np.diff(outside, axis=0).std()})
    by_site = pd.DataFrame(stats).groupby("site").mean()
    assert by_site.loc["B", "mean"] > by_site.loc["A", "mean"] + 0.02 > by_site.loc["C", "mean"] + 0.04
    assert by_site.loc["B", "noise"] > 1.5 * by_site.loc["A", "noise"]


def test_one_site_has_no_site_effects_and_too_many_sites_fail(tmp_path: Path) -> None:
    raw = generate_demo(tmp_path / "one", n_patients=30, seed=2, image_size=32, sites=1)
    manifest, clinical = _tables(raw)
    assert set(manifest["site"]) == set(clinical["site"]) == {SITES[0].name}
    with pytest.raises(ValueError, match=f"1 <= sites <= {len(SITES)}"):
        generate_demo(tmp_path / "bad", n_patients=3, sites=len(SITES) + 1)
