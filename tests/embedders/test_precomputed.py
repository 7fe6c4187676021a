"""Import of precomputed embeddings: the source study's CSV, and .npz/.npy/.parquet with ids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedders.config import EmbeddersConfig
from embedders.precomputed import PrecomputedError
from embedders.run import run_embedders
from embedders.store import EmbeddingStore, StoreError, errors_path

from .conftest import write_manifest


def _manifest(tmp_path: Path) -> Path:
    path = write_manifest(tmp_path / "manifest.parquet", [f"/nonexistent/{i}.png" for i in range(5)])
    df = pd.read_parquet(path)
    df["dicom_id"] = [f"dcm-{i}" for i in range(5)]
    df.to_parquet(path)
    return path


def _study_csv(path: Path, rng: np.random.Generator) -> tuple[Path, pd.DataFrame]:
    rows = [("dcm-3", "original"), ("dcm-0", "original"), ("dcm-0", "rotate45"), ("dcm-4", "bright"),
            ("dcm-9", "original")]                                      # dcm-9 is not in the manifest
    x = rng.normal(size=(len(rows), 6)).astype(np.float32)
    df = pd.DataFrame(x, columns=[f"embedding_{i}" for i in range(6)])
    df["dicom_id"] = [r[0] for r in rows]
    df["label"] = [1, 0, 0, 1, 1]
    df["augmentation"] = [r[1] for r in rows]
    df.to_csv(path, index=False)
    return path, df


def test_source_study_csv_import(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    csv, df = _study_csv(tmp_path / "study.csv", np.random.default_rng(0))
    spec = {"name": "study", "path": str(csv), "match_column": "dicom_id", "augmentation_map": {"rotate45": "rot+45"}}
    cfg = EmbeddersConfig.model_validate({"precomputed": [spec]})
    store = tmp_path / "emb.zarr"
    run_embedders(cfg, manifest=manifest, store=store)

    s = EmbeddingStore(store)
    assert s.augmentations("study") == ["bright", "original", "rot+45"]
    ids, x = s.read("study")
    assert list(ids) == ["img000", "img003"]                            # manifest order, done rows only
    expected = df.set_index(["dicom_id", "augmentation"]).filter(like="embedding_")
    np.testing.assert_array_equal(x.compute(), expected.loc[[("dcm-0", "original"), ("dcm-3", "original")]].to_numpy())
    ids, x = s.read("study", "rot+45")
    assert list(ids) == ["img000"] and x.shape == (1, 6)
    attrs = s.attrs("study")
    assert attrs["output_shape"] == [6] and len(attrs["source_sha256"]) == 64
    errors = pd.read_csv(errors_path(store))
    assert errors[["image_id", "stage"]].values.tolist() == [["dcm-9", "import"]]

    # the source file changed -> refused unless overwrite
    _study_csv(csv, np.random.default_rng(1))
    with pytest.raises(StoreError, match="source_sha256"):
        run_embedders(cfg, manifest=manifest, store=store)


def test_unknown_augmentation_and_duplicates_are_errors(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    csv, df = _study_csv(tmp_path / "study.csv", np.random.default_rng(0))
    df.assign(augmentation=df.augmentation.replace({"rotate45": "hflip"})).to_csv(csv, index=False)
    cfg = EmbeddersConfig.model_validate({"precomputed": [{"name": "s", "path": str(csv), "match_column": "dicom_id"}]})
    with pytest.raises(PrecomputedError, match="hflip"):
        run_embedders(cfg, manifest=manifest, store=tmp_path / "a.zarr")
    pd.concat([df, df.iloc[:1]]).to_csv(csv, index=False)
    with pytest.raises(PrecomputedError, match="'dcm-3' appears more than once"):
        run_embedders(cfg, manifest=manifest, store=tmp_path / "b.zarr")


def test_npz_npy_parquet_imports(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    x = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    np.savez(tmp_path / "e.npz", image_id=np.array(["img004", "img001"]), embedding=x[:2])
    np.save(tmp_path / "e.npy", x)                                       # manifest order
    pd.DataFrame({"image_id": ["img002"], "embedding": [x[2].tolist()]}).to_parquet(tmp_path / "e.parquet")
    cfg = EmbeddersConfig.model_validate({"precomputed": [
        {"name": "npz", "path": str(tmp_path / "e.npz"), "id_column": "image_id"},
        {"name": "npy", "path": str(tmp_path / "e.npy")},
        {"name": "pq", "path": str(tmp_path / "e.parquet"), "id_column": "image_id"}]})
    run_embedders(cfg, manifest=manifest, store=tmp_path / "emb.zarr")
    s = EmbeddingStore(tmp_path / "emb.zarr")
    ids, got = s.read("npz")
    assert list(ids) == ["img001", "img004"]
    np.testing.assert_array_equal(got.compute(), x[[1, 0]])
    np.testing.assert_array_equal(s.read("npy")[1].compute(), x)
    ids, got = s.read("pq")
    assert list(ids) == ["img002"]
    np.testing.assert_array_equal(got.compute(), x[[2]])


def _cxr_foundation_csv(path: Path, n_images: int, rng: np.random.Generator,
                        augmentations: tuple[str, ...] = ("original", "rot45")) -> tuple[Path, np.ndarray]:
    """The source study's CSV exactly: embedding_0..embedding_24575 (32 x 768 flattened row-major), dicom_id,
    label, augmentation; one row per (image, augmentation). Returns the path and the (rows, 32, 768) tokens."""
    tokens = rng.normal(size=(n_images * len(augmentations), 32, 768)).astype(np.float32)
    df = pd.DataFrame(tokens.reshape(len(tokens), -1), columns=[f"embedding_{i}" for i in range(32 * 768)])
    df["dicom_id"] = [f"dcm-{i}" for _ in augmentations for i in range(n_images)]
    df["label"] = 1
    df["augmentation"] = [a for a in augmentations for _ in range(n_images)]
    df.to_csv(path, index=False, float_format="%.7g")
    return path, tokens


def test_study_cxr_foundation_csv_imports_as_tokens_and_probe_sees_768(tmp_path: Path) -> None:
    from benchmarks.data import load_features

    manifest = _manifest(tmp_path)
    csv, tokens = _cxr_foundation_csv(tmp_path / "cxr_foundation.csv", 5, np.random.default_rng(0))
    cfg = EmbeddersConfig.model_validate({"precomputed": [
        {"name": "cxr-foundation", "path": str(csv), "match_column": "dicom_id"}]})   # no map: rot45 is the study's
    run_embedders(cfg, manifest=manifest, store=tmp_path / "emb.zarr")
    s = EmbeddingStore(tmp_path / "emb.zarr")
    ids, x = s.read("cxr-foundation")
    assert x.shape == (5, 32, 768) and s.augmentations("cxr-foundation") == ["original", "rot+45"]
    np.testing.assert_allclose(x.compute(), tokens[:5], rtol=1e-6)
    attrs = s.attrs("cxr-foundation")
    assert attrs["output_shape"] == [32, 768] and "CXR-Foundation" in attrs["token_shape_source"]
    feats = load_features(s, "cxr-foundation", ids, augmentations=["original", "rot+45"], pooling="mean")
    assert feats.probe_dim == 768 and feats.size == 24576
    np.testing.assert_allclose(feats.X["original"], tokens[:5].mean(axis=1), rtol=1e-5, atol=1e-6)
    assert "32 x 768 tokens, mean over tokens -> 768 dims" == feats.pooling_note
    assert load_features(s, "cxr-foundation", ids, augmentations=["original"], pooling="flatten").probe_dim == 24576


def test_token_shape_flat_explicit_and_column_names(tmp_path: Path) -> None:
    from benchmarks.data import BenchmarkInputError, load_features

    manifest = _manifest(tmp_path)
    csv, tokens = _cxr_foundation_csv(tmp_path / "c.csv", 3, np.random.default_rng(1), augmentations=("Original",))
    x = np.random.default_rng(2).normal(size=(2, 4, 3)).astype(np.float32)
    two = pd.DataFrame(x.reshape(2, -1), columns=[f"embedding_{t}_{d}" for t in range(4) for d in range(3)])
    two.assign(dicom_id=["dcm-0", "dcm-1"]).to_csv(tmp_path / "two.csv", index=False)
    flat = pd.DataFrame(x.reshape(2, -1), columns=[f"embedding_{i}" for i in range(12)])
    flat.assign(dicom_id=["dcm-0", "dcm-1"]).to_csv(tmp_path / "flat.csv", index=False)
    cfg = EmbeddersConfig.model_validate({"precomputed": [
        {"name": "kept-flat", "path": str(csv), "match_column": "dicom_id", "token_shape": "flat"},
        {"name": "named", "path": str(tmp_path / "two.csv"), "match_column": "dicom_id"},
        {"name": "explicit", "path": str(tmp_path / "flat.csv"), "match_column": "dicom_id", "token_shape": [4, 3]}]})
    run_embedders(cfg, manifest=manifest, store=tmp_path / "emb.zarr")
    s = EmbeddingStore(tmp_path / "emb.zarr")
    for name in ("named", "explicit"):
        ids, got = s.read(name)
        np.testing.assert_allclose(got.compute(), x, rtol=1e-6)
    ids, got = s.read("kept-flat")
    assert got.shape == (3, 24576)
    feats = load_features(s, "kept-flat", ids, augmentations=["original"], pooling="mean")
    assert feats.probe_dim == 24576 and "NOTE" in feats.pooling_note and "token_shape [32, 768]" in feats.pooling_note
    with pytest.raises(BenchmarkInputError, match="pooling_per_model\\['kept-flat'\\] = 'mean' cannot apply"):
        load_features(s, "kept-flat", ids, augmentations=["original"], pooling="mean", explicit_pooling=True)
    bad = EmbeddersConfig.model_validate({"precomputed": [
        {"name": "bad", "path": str(tmp_path / "flat.csv"), "match_column": "dicom_id", "token_shape": [5, 3]}]})
    with pytest.raises(PrecomputedError, match=r"token_shape \[5, 3\] holds 15 values but the file has 12"):
        run_embedders(bad, manifest=manifest, store=tmp_path / "bad.zarr")


def test_study_augmentation_names() -> None:
    from embedders.precomputed import study_augmentation_name as name

    assert [name(v) for v in ("Original", "rot45", "Rot +45 deg", "rotate_45", "rot-45", "rot_-45", "rotneg45",
                              "Rot -45 deg", "brightness", "Dark", "contrast", "hflip")] == [
        "original", "rot+45", "rot+45", "rot+45", "rot-45", "rot-45", "rot-45", "rot-45", "bright", "dark",
        "contrast", "hflip"]


def test_patient_ids_from_table_checked_against_manifest(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)          # patient_id p0, p0, p1, p1, p2 for dcm-0..4
    csv, _ = _study_csv(tmp_path / "study.csv", np.random.default_rng(0))
    table = pd.DataFrame({"dicom_id": ["dcm-0", "dcm-3", "dcm-4"], "subject_id": ["s1", "s1", "s2"]})
    table.to_csv(tmp_path / "metadata.csv", index=False)
    spec = {"name": "study", "path": str(csv), "match_column": "dicom_id", "patient_column": "subject_id",
            "patient_table": str(tmp_path / "metadata.csv")}
    run_embedders(EmbeddersConfig.model_validate({"precomputed": [spec]}), manifest=manifest, store=tmp_path / "e.zarr")
    patients = EmbeddingStore(tmp_path / "e.zarr").attrs("study")["patients"]
    # s1 has dcm-0 (manifest p0) and dcm-3 (manifest p1): the manifest splits one patient over two ids
    assert patients["n_images"] == 3 and patients["n_patients"] == 2 and patients["split_patients"] == 1
    assert "splits 1 patients" in patients["warning"] and "column 'subject_id' of table metadata.csv" in patients["warning"]
    with pytest.raises(PrecomputedError, match="missing"):
        run_embedders(EmbeddersConfig.model_validate({"precomputed": [spec | {"patient_column": "subject"}]}),
                      manifest=manifest, store=tmp_path / "f.zarr")
