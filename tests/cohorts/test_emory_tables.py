"""Streaming pyarrow join of Emory-style split tables (image, study and patient keys)."""
from __future__ import annotations

import pandas as pd
import pytest

from cohorts import emory_tables
from cohorts.emory_tables import EmoryTable, join_tables


def _tables(tmp_path, n=300):
    meta = pd.DataFrame({"sop": [f"s{i}" for i in range(n)][::-1], "acc": [f"a{i // 3}" for i in range(n)],
                         "empi": [f"p{i // 6}" for i in range(n)], "view": ["PA", "AP", "LL"] * (n // 3)})
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    pd.DataFrame({"acc": [f"a{i}" for i in range(n // 3)][::-1], "Edema": [1, 0, None] * (n // 9) + [0] * (n // 3 % 3)}
                 ).to_parquet(tmp_path / "findings.parquet")
    pd.DataFrame({"empi": [f"p{i}" for i in range(n // 6)], "adi": range(n // 6), "income": 1.0}
                 ).to_csv(tmp_path / "sdoh.csv", index=False)
    return meta


def test_join_filters_streams_and_keeps_metadata_order(tmp_path, monkeypatch):
    monkeypatch.setattr(emory_tables, "_BATCH_ROWS", 17)       # many parquet batches
    monkeypatch.setattr(emory_tables, "_BLOCK_BYTES", 1024)    # many CSV blocks
    meta = _tables(tmp_path)
    keep = ["s5", "s200", "s13", "s299"]
    joined = join_tables(EmoryTable(path=tmp_path / "metadata.csv", key="sop"),
                         [EmoryTable(path=tmp_path / "findings.parquet", key="acc"),
                          EmoryTable(path=tmp_path / "sdoh.csv", key="empi", columns=["adi"])],
                         keep_ids=keep).to_pandas()
    expected = meta[meta.sop.isin(keep)]                       # metadata order, not keep order
    assert joined.sop.tolist() == expected.sop.tolist()
    assert joined.columns.tolist() == ["sop", "acc", "empi", "view", "Edema", "adi"]
    for row in joined.itertuples():
        src = meta[meta.sop == row.sop].iloc[0]
        assert row.acc == src.acc and row.adi == int(src.empi[1:])


def test_join_errors_name_the_file(tmp_path):
    _tables(tmp_path)
    pd.DataFrame({"acc": ["a1", "a1"], "x": [1, 2]}).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ValueError, match="dup.csv: key 'acc' repeats"):
        join_tables(EmoryTable(path=tmp_path / "metadata.csv", key="sop"), [EmoryTable(path=tmp_path / "dup.csv", key="acc")])
    with pytest.raises(ValueError, match="sdoh.csv: joins on 'patient'"):
        join_tables(EmoryTable(path=tmp_path / "metadata.csv", key="sop"),
                    [EmoryTable(path=tmp_path / "sdoh.csv", key="empi", on="patient")])
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        join_tables(EmoryTable(path=tmp_path / "nope.csv", key="sop"), [])
