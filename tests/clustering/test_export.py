"""PHI guard: only allow-listed columns leave; identifying ones are refused unless explicitly allowed."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clustering.config import ClusteringConfig
from clustering.export import ExportError, check_columns, identifying_reason, write_export

SCHEMA = {"age": {"type": "continuous", "role": "feature"}, "patient_name": {"type": "categorical", "role": "id"},
          "bed": {"type": "categorical", "role": "feature"}}


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    n = 6
    base = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "subtype": ["S1", "S2"] * 3,
                         "confidence": np.linspace(0.5, 1, n), "umap_1": np.zeros(n), "umap_2": np.ones(n)})
    table = pd.DataFrame({"age": np.arange(n) + 50.0, "patient_name": [f"Jane Doe {i}" for i in range(n)],
                          "bed": list("ABCDEF"), "acquired_at": pd.date_range("2020-01-01", periods=n),
                          "path": [f"/data/img{i}.png" for i in range(n)],
                          "remarks": [f"patient {i} was admitted after a fall at home, see discharge letter" for i in range(n)]})
    return base, table


@pytest.mark.parametrize("column,why", [("patient_name", "role is 'id'"), ("acquired_at", "dates/times"),
                                        ("path", "paths"), ("remarks", "free text")])
def test_identifying_columns_are_refused_with_a_clear_error(column: str, why: str) -> None:
    base, table = _tables()
    cfg = ClusteringConfig(export={"columns": ["age", column]})
    with pytest.raises(ExportError, match=rf"'{column}' \(.*{why}") as err:
        check_columns(table, cfg, SCHEMA, source="fixture")
    assert "allow_identifying" in str(err.value)


def test_only_allow_listed_columns_are_written(tmp_path) -> None:
    base, table = _tables()
    cfg = ClusteringConfig(export={"columns": ["age", "patient_name"], "allow_identifying": ["patient_name"]})
    paths = write_export(base, table, cfg, SCHEMA, out=tmp_path, provenance={"model": "m"}, source="fixture")
    for key in ("subtypes_csv", "subtypes_parquet"):
        df = pd.read_csv(paths[key]) if key.endswith("csv") else pd.read_parquet(paths[key])
        assert list(df.columns) == ["patient_id", "subtype", "confidence", "umap_1", "umap_2", "age", "patient_name"]
    dd = pd.read_csv(paths["data_dictionary"])
    assert list(dd.column) == ["patient_id", "subtype", "confidence", "umap_1", "umap_2", "age", "patient_name"]
    prov = json.loads(paths["provenance"].read_text())
    assert prov["model"] == "m" and len(prov["config_sha256"]) == 64 and "numpy" in prov["versions"]


def test_unknown_and_plain_columns() -> None:
    base, table = _tables()
    with pytest.raises(ExportError, match="not in fixture"):
        check_columns(table, ClusteringConfig(export={"columns": ["weight"]}), SCHEMA, source="fixture")
    assert identifying_reason("bed", table.bed, SCHEMA) is None
    assert identifying_reason("age", table.age, SCHEMA) is None


@pytest.mark.parametrize("labels,method", [("leiden", "Leiden"), ("gmm", "Gaussian mixture")])
def test_data_dictionary_names_the_method_behind_the_subtypes(tmp_path, labels: str, method: str) -> None:
    base, table = _tables()
    paths = write_export(base, table, ClusteringConfig(labels=labels, export={"columns": ["age"]}), SCHEMA,
                         out=tmp_path, provenance={}, source="fixture")
    dd = pd.read_csv(paths["data_dictionary"]).set_index("column")
    assert method in dd.loc["subtype", "description"]
