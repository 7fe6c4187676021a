"""Store round trip and provenance through run_embedders; bad images reported; manifest changes refused;
embedders whose batches are lists (images kept at their own size) through the extractor."""
from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import torch

from cohorts.images import load_image
from core.provenance import sha256_file
from embedders.base import Embedder, ModelInfo
from embedders.baselines.radiomics import radiomics_features
from embedders.config import EmbeddersConfig
from embedders.extract import extract_chunks
from embedders.run import run_embedders
from embedders.store import EmbeddingStore, StoreError, errors_path, open_store_for_writing, prepare_model_group

from .conftest import write_manifest


def _cfg(**kw: object) -> EmbeddersConfig:
    base = {"models": [{"name": "radiomics"}], "augmentations": ["original", "dark"], "chunk_rows": 4,
            "batch_size": 3}
    return EmbeddersConfig.model_validate({**base, **kw})


def test_round_trip_provenance_and_bad_images(tmp_path: Path, covid_pngs: list[Path]) -> None:
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(covid_pngs[0].read_bytes()[:200])
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    paths = [*covid_pngs[:5], truncated, covid_pngs[5], None, not_image, covid_pngs[6]]
    manifest = write_manifest(tmp_path / "manifest.parquet", paths)
    store = tmp_path / "emb.zarr"

    out = run_embedders(_cfg(), manifest=manifest, store=store)

    assert out["store"] == store and out["run"].is_file()
    s = EmbeddingStore(store)
    assert s.models() == ["radiomics"] and s.augmentations("radiomics") == ["dark", "original"]
    assert s.manifest_sha256 == sha256_file(manifest)
    attrs = s.attrs("radiomics")
    assert attrs["model"] == "radiomics" and attrs["output_shape"] == [348] and attrs["manifest_sha256"] == s.manifest_sha256
    assert attrs["library_versions"]["zarr"] == "3.1.6" and attrs["created"] and attrs["augmentations"] == ["original", "dark"]
    assert "weights_sha256" in attrs and attrs["resize"].startswith("bilinear")

    ids, x = s.read("radiomics")
    assert isinstance(x, da.Array)                         # lazy
    good = [0, 1, 2, 3, 4, 6, 9]
    assert list(ids) == [f"img{i:03d}" for i in good] and x.shape == (7, 348)
    values = x.compute()
    # row content: the features of the decoded, resized image (independent recomputation)
    from embedders import get_embedder
    emb = get_embedder("radiomics")
    ref = radiomics_features(emb.preprocess(load_image(covid_pngs[5])).numpy())
    np.testing.assert_array_equal(values[5], ref)
    assert s.done("radiomics", "dark").tolist() == [i in good for i in range(10)]

    errors = pd.read_csv(errors_path(store))
    assert sorted(set(errors["image_id"])) == ["img005", "img007", "img008"]
    assert set(errors["stage"]) == {"decode"} and len(errors) == 6          # 3 images x 2 augmentations
    assert errors.set_index(["image_id", "augmentation"]).loc[("img007", "original"), "reason"] == "no image path in the manifest"

    # a rerun computes nothing new, keeps the arrays and does not duplicate error rows
    before = EmbeddingStore(store).read("radiomics", "dark")[1].compute()
    run_embedders(_cfg(), manifest=manifest, store=store)
    np.testing.assert_array_equal(EmbeddingStore(store).read("radiomics", "dark")[1].compute(), before)
    assert len(pd.read_csv(errors_path(store))) == 6

    # a changed manifest is refused unless overwrite
    write_manifest(manifest, paths[:-1])
    with pytest.raises(StoreError, match="another manifest"):
        run_embedders(_cfg(), manifest=manifest, store=store)
    run_embedders(_cfg(overwrite=True, augmentations=["original"]), manifest=manifest, store=store)
    assert EmbeddingStore(store).read("radiomics")[1].shape == (6, 348)


def test_reader_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no embedding store"):
        EmbeddingStore(tmp_path / "absent.zarr")


class _FullSizeStats(Embedder):
    """Keeps each image at its own size (like CXR Foundation): a batch is a list, not a stack."""

    info = ModelInfo(name="full-size-stats", version="test", output_shape=(4,), input_size=None)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image)

    def collate(self, items: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(items)

    def forward(self, batch: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.stack([x.mean(), x.std(), torch.tensor(float(x.shape[0])),
                                         torch.tensor(float(x.shape[1]))]) for x in batch])


@pytest.mark.parametrize("decode_workers", [0, 1])
def test_embedders_with_list_batches_run_through_the_extractor(tmp_path: Path, covid_pngs: list[Path],
                                                               decode_workers: int) -> None:
    paths = [str(p) for p in covid_pngs[:6]]
    shapes = {load_image(p).shape for p in paths}
    assert len(shapes) > 1                                     # real images of different sizes
    ids = np.array([f"img{i}" for i in range(len(paths))])
    root = open_store_for_writing(tmp_path / "s.zarr", image_ids=ids, manifest_sha256="test")
    emb = _FullSizeStats()
    group = prepare_model_group(root, emb.info.name, attrs=emb.provenance(), augmentations=["original"],
                                output_shape=emb.info.output_shape, chunk_rows=4)
    errors = extract_chunks(emb, group, "original", [0, 1], ids=ids, paths=paths, batch_size=3,
                            decode_workers=decode_workers)
    assert errors == []
    expected = np.stack([emb.forward([emb.preprocess(load_image(p))]).numpy()[0] for p in paths])
    np.testing.assert_array_equal(group["original"]["embeddings"][:], expected)


def test_compressed_dicoms_through_the_runner(tmp_path: Path) -> None:
    """Real CR chest DICOMs (pydicom-data; MONOCHROME1): JPEG 2000 lossless decodes in the decode workers to
    the same embedding as its uncompressed twin."""
    from pydicom.data import get_testdata_file

    files = [get_testdata_file(name) for name in ("RG1_J2KR.dcm", "RG1_UNCR.dcm", "RG1_UNCI.dcm")]
    if None in files:
        pytest.skip("pydicom-data is not installed")
    manifest = write_manifest(tmp_path / "manifest.parquet", files)
    store = tmp_path / "emb.zarr"
    run_embedders(_cfg(augmentations=["original"], decode_workers=1), manifest=manifest, store=store)
    ids, x = EmbeddingStore(store).read("radiomics")
    values = x.compute()
    assert list(ids) == ["img000", "img001", "img002"] and pd.read_csv(errors_path(store)).empty
    np.testing.assert_array_equal(values[0], values[1])        # lossless == uncompressed, bit for bit
    assert not np.array_equal(values[0], values[2])            # the lossy-compressed twin differs
