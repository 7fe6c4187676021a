"""Sharded, streamed import of several models' precomputed embeddings, aligned by image id."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedders.bulk import BulkImportConfig, BulkSpec, run_bulk_import, shard_paths
from embedders.precomputed import PrecomputedError
from embedders.store import EmbeddingStore


def _manifest(tmp_path, n=50):
    ids = [f"img{i:03d}" for i in range(n)]
    pd.DataFrame({"image_id": ids, "patient_id": [f"p{i // 2}" for i in range(n)], "path": None,
                  "sop": [f"sop{i}" for i in range(n)]}).to_parquet(tmp_path / "manifest.parquet")
    return tmp_path / "manifest.parquet", ids


def _x(n, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_shards_in_every_format_align_by_id(tmp_path):
    manifest, ids = _manifest(tmp_path)
    x = _x(50)
    order = np.random.default_rng(1).permutation(50)
    # model a: parquet shards with an embedding list column, rows shuffled
    (tmp_path / "a").mkdir()
    for s in range(0, 50, 20):
        r = order[s:s + 20]
        pq.write_table(pa.table({"dicom_id": [ids[i] for i in r],
                                 "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[r].ravel()), 6)}),
                       tmp_path / "a" / f"part-{s:03d}.parquet")
    # model b: CSV of the source study's format (embedding_0..N, augmentation), matched on the manifest's sop column
    df = pd.DataFrame(x[order[:45]], columns=[f"embedding_{j}" for j in range(6)])
    df["dicom_id"], df["augmentation"] = [f"sop{i}" for i in order[:45]], "original"
    df.to_csv(tmp_path / "b.csv", index=False)
    # model c: .npy shards with ids beside them, plus an id that is in no manifest row
    (tmp_path / "c").mkdir()
    np.save(tmp_path / "c" / "part-0.npy", x[:30])
    (tmp_path / "c" / "part-0.ids.txt").write_text("\n".join(ids[:30]))
    np.save(tmp_path / "c" / "part-1.npy", np.r_[x[30:50], x[:1]])
    (tmp_path / "c" / "part-1.ids.txt").write_text("\n".join(ids[30:50] + ["stranger"]))
    # model d: npz shards by glob
    np.savez(tmp_path / "d-0.npz", dicom_id=np.array(ids[:25]), embedding=x[:25])
    np.savez(tmp_path / "d-1.npz", dicom_id=np.array(ids[25:]), embedding=x[25:])
    cfg = BulkImportConfig(models=[
        BulkSpec(name="a", path=tmp_path / "a", batch_rows=7),
        BulkSpec(name="b", path=tmp_path / "b.csv", match_column="sop", batch_rows=8),
        BulkSpec(name="c", path=tmp_path / "c", batch_rows=9),
        BulkSpec(name="d", path=str(tmp_path / "d-*.npz"))], chunk_rows=16)
    paths = run_bulk_import(cfg, manifest=manifest, store=tmp_path / "s.zarr")
    store = EmbeddingStore(paths["store"])
    for m in "acd":
        got_ids, got = store.read(m)
        assert list(got_ids) == ids and np.array_equal(got.compute(), x), m
    got_ids, got = store.read("b")
    assert len(got_ids) == 45 and np.array_equal(got.compute(), x[np.isin(ids, got_ids)])
    align = pd.read_csv(paths["alignment"])
    assert sorted(align.image_id) == sorted(ids[i] for i in order[45:])
    assert set(align.missing_from) == {"b"} and set(align.present_in) == {"a;c;d"}
    errors = pd.read_csv(paths["errors"])
    assert errors[["image_id", "model", "stage"]].values.tolist() == [["stranger", "c", "import"]]


def test_repeated_id_and_bad_shards_fail_with_the_file(tmp_path):
    manifest, _ = _manifest(tmp_path, n=10)
    np.save(tmp_path / "x.npy", _x(3))
    (tmp_path / "x.ids.txt").write_text("img000\nimg001\nimg000\n")
    with pytest.raises(PrecomputedError, match="img000.*more than once"):
        run_bulk_import(BulkImportConfig(models=[BulkSpec(name="x", path=tmp_path / "x.npy")]), manifest=manifest,
                        store=tmp_path / "s.zarr")
    (tmp_path / "many").mkdir()
    np.save(tmp_path / "many" / "p0.npy", _x(3))
    np.save(tmp_path / "many" / "p1.npy", _x(3))
    with pytest.raises(PrecomputedError, match="p0.npy: no p0.ids.txt"):
        run_bulk_import(BulkImportConfig(models=[BulkSpec(name="y", path=tmp_path / "many")]), manifest=manifest,
                        store=tmp_path / "s2.zarr")
    with pytest.raises(PrecomputedError, match="no .parquet/.csv/.npy/.npz files"):
        shard_paths(BulkSpec(name="z", path=str(tmp_path / "nothing-*.parquet")))
