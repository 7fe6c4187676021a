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
