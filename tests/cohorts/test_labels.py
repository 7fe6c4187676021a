import pandas as pd
import pytest

from cohorts.labels import apply_uncertain_policy, code_flags, code_numeric, code_terms, label_counts


def test_code_terms_multi_finding_and_unknown():
    s = pd.Series(["Atelectasis|Effusion", "No Finding", "", None, "Effusion", "todo"])
    out = code_terms(s, {"A": "Atelectasis", "E": "Effusion"}, separator="|", unknown=["todo"])
    assert out["label_A"].tolist()[:2] == [1, 0] and out["label_E"].tolist()[:2] == [1, 0]
    assert out.iloc[2:4].isna().all().all() and out.iloc[5].isna().all()
    assert out.loc[4, "label_E"] == 1 and out.loc[4, "label_A"] == 0
    assert str(out["label_A"].dtype) == "Int8"


def test_code_terms_matches_whole_terms_only():
    out = code_terms(pd.Series(["COVID-19, ARDS", "ARDSish"]), {"ARDS": "ARDS"}, separator=",")
    assert out["label_ARDS"].tolist() == [1, 0]


def test_code_numeric_chexpert_coding_and_errors():
    out = code_numeric(pd.Series([1.0, 0.0, -1.0, None]), source="t")
    assert out.tolist()[:3] == [1, 0, -1] and out.isna().tolist()[3]
    with pytest.raises(ValueError, match="column 'x'.*2"):
        code_numeric(pd.Series([1.0, 2.0]), source="f.csv column 'x'")


def test_code_flags():
    out = code_flags(pd.Series(["Y", "N", None, "Would have been stated"]), positive=["N"], negative=["Y"])
    assert out.tolist()[:2] == [0, 1] and out.isna().tolist()[2:] == [True, True]


@pytest.mark.parametrize("policy, expected", [("ignore", [1, 0, -1]), ("zeros", [1, 0, 0]), ("ones", [1, 0, 1])])
def test_uncertain_policy(policy, expected):
    df = pd.DataFrame({"dataset": "d", "label_X": pd.array([1, 0, -1, None], dtype="Int8"), "other": [-1] * 4})
    out = apply_uncertain_policy(df, policy=policy)
    assert out["label_X"].tolist()[:3] == expected and out["other"].tolist() == [-1] * 4
    assert out["label_X"].isna().tolist() == [False, False, False, True]   # not mentioned stays missing
    with pytest.raises(ValueError, match="uncertain policy"):
        apply_uncertain_policy(df, policy="drop")


def test_label_counts():
    df = pd.DataFrame({"dataset": ["a"] * 4, "label_X": pd.array([1, 0, -1, None], dtype="Int8")})
    assert label_counts(df) == {"a/X": {"positive": 1, "negative": 1, "uncertain": 1, "missing": 1}}
