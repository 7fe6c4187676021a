"""ClinicalEncoder: fitted on training rows only, range/unit checks, masks for missing values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion.clinical import ClinicalEncoder, ColumnSpec, SchemaError

SCHEMA = {
    "lactate": ColumnSpec("lactate", "continuous", "feature", unit="mmol/L", min=0.0, max=30.0),
    "vaso": ColumnSpec("vaso", "binary", "feature"),
    "sex": ColumnSpec("sex", "categorical", "feature", categories=("F", "M")),
    "subtype": ColumnSpec("subtype", "categorical", "truth", categories=("0", "1")),
}


def table(lactate, vaso, sex) -> pd.DataFrame:
    return pd.DataFrame({"lactate": lactate, "vaso": vaso, "sex": sex, "subtype": ["0"] * len(lactate)},
                        index=pd.Index([f"p{i}" for i in range(len(lactate))], name="patient_id"))


def test_fit_uses_training_rows_and_masks_missing() -> None:
    train = table([1.0, 3.0, None], [1, 0, None], ["F", None, "M"])
    enc = ClinicalEncoder().fit(train, SCHEMA)
    assert [v.name for v in enc.variables] == ["lactate", "vaso", "sex"]   # truth column never an input
    assert enc.layout.width == 4
    other = table([2.0, 10.0], [None, True], [None, "F"])
    out = enc.transform(other)
    # standardized with the TRAINING mean 2 and SD 1 (not the other table's)
    np.testing.assert_allclose(out.values[:, 0], [0.0, 8.0])
    np.testing.assert_array_equal(out.mask, [[True, False, False, False], [True, True, True, True]])
    np.testing.assert_array_equal(out.values[1, 1:], [1.0, 1.0, 0.0])
    assert (out.values[~out.mask] == 0).all()


def test_out_of_range_error_names_column_and_row() -> None:
    enc = ClinicalEncoder().fit(table([1.0, 2.0], [0, 1], ["F", "M"]), SCHEMA)
    with pytest.raises(SchemaError, match=r"lactate.*\['p1'\]"):
        enc.transform(table([1.0, 45.0], [0, 1], ["F", "M"]))


def test_out_of_range_mask_mode_counts() -> None:
    enc = ClinicalEncoder(out_of_range="mask").fit(table([1.0, 2.0], [0, 1], ["F", "M"]), SCHEMA)
    out = enc.transform(table([1.0, -3.0, np.inf], [0, 1, 1], ["F", "M", "M"]))
    assert enc.report == {"lactate": 2}
    np.testing.assert_array_equal(out.mask[:, 0], [True, False, False])


def test_bad_binary_unknown_category_and_unit_change() -> None:
    enc = ClinicalEncoder().fit(table([1.0, 2.0], [0, 1], ["F", "M"]), SCHEMA)
    with pytest.raises(SchemaError, match="vaso"):
        enc.transform(table([1.0], [2], ["F"]))
    with pytest.raises(SchemaError, match="sex"):
        enc.transform(table([1.0], [0], ["X"]))
    changed = {**SCHEMA, "lactate": ColumnSpec("lactate", "continuous", "feature", unit="mg/dL", min=0, max=300)}
    with pytest.raises(SchemaError, match="unit"):
        enc.transform(table([1.0], [0], ["F"]), schema=changed)


def test_save_load_roundtrip(tmp_path) -> None:
    train = table([1.0, 3.0, 4.0], [1, 0, None], ["F", None, "M"])
    enc = ClinicalEncoder().fit(train, SCHEMA)
    again = ClinicalEncoder.load(enc.save(tmp_path / "enc.json"))
    a, b = enc.transform(train), again.transform(train)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert again.layout == enc.layout
