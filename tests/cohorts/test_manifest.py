import pandas as pd
import pytest

from cohorts.manifest import CONTRACT_COLUMNS, ManifestError, conform, validate_manifest


def _rows(**over):
    df = pd.DataFrame({"image_id": ["a", "b"], "patient_id": ["p", "p"], "path": ["/x/a.png", None],
                       "label_X": pd.array([1, -1], dtype="Int8"), "site": ["s1", "s2"]})
    return df.assign(**over)


def test_conform_fills_contract_columns_and_orders_them():
    m = conform(_rows(), dataset="d")
    assert list(m.columns) == [*CONTRACT_COLUMNS, "label_X", "site"]
    assert m["study_id"].tolist() == ["a", "b"] and (m["dataset"] == "d").all()
    assert m["acquired_at"].isna().all() and m["offset_days"].isna().all()
    validate_manifest(m)


@pytest.mark.parametrize("over, match", [
    ({"image_id": ["a", "a"]}, "unique"),
    ({"path": ["rel/a.png", None]}, "absolute.*rel/a.png"),
    ({"label_X": pd.array([1, 2], dtype="Int8")}, "label_X.*outside"),
    ({"patient_id": ["p", None]}, "'patient_id' is empty.*row 1"),
])
def test_contract_violations_are_named(over, match):
    with pytest.raises(ManifestError, match=match):
        validate_manifest(conform(_rows(**over), dataset="d"))


def test_label_dtype_must_be_int8():
    m = conform(_rows(), dataset="d")
    m["label_X"] = m["label_X"].astype("float64")
    with pytest.raises(ManifestError, match="Int8"):
        validate_manifest(m)
