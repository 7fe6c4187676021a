"""Table 1 numbers equal a direct pandas/scipy computation; enrichment counts; survival test."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clustering.characterize import label_enrichment, survival, table1

SCHEMA = {"age": {"type": "continuous", "unit": "years"}, "sex": {"type": "categorical"},
          "vaso": {"type": "binary"}}


def _frame(n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    sub = rng.choice(["S1", "S2", "S3"], n, p=[0.5, 0.3, 0.2])
    df = pd.DataFrame({"subtype": sub, "age": rng.normal(60, 10, n).round(1), "sex": rng.choice(["F", "M"], n),
                       "vaso": (rng.random(n) < 0.3).astype(float), "label_X": rng.choice([1, 0, -1], n).astype(float)})
    df.loc[::7, "age"] = np.nan
    df.loc[::11, "vaso"] = np.nan
    return df


def test_table1_equals_direct_pandas() -> None:
    df = _frame()
    t1, st = table1(df, SCHEMA)
    for g, part in df.groupby("subtype"):
        row = st[(st.variable == "age") & (st.group == g)].iloc[0]
        assert row["median"] == pytest.approx(part.age.median())
        assert row.q1 == pytest.approx(part.age.quantile(0.25)) and row.q3 == pytest.approx(part.age.quantile(0.75))
        assert row.n == part.age.notna().sum() and row.missing == part.age.isna().sum()
        v = st[(st.variable == "vaso") & (st.group == g)].iloc[0]
        assert v["count"] == (part.vaso == 1).sum()
        assert v.percent == pytest.approx(100 * (part.vaso == 1).sum() / part.vaso.notna().sum())
        f = st[(st.variable == "sex") & (st.level == "F") & (st.group == g)].iloc[0]
        assert f["count"] == (part.sex == "F").sum()
        cell = t1.loc[(t1.variable == "age (years)"), g].iloc[0]
        assert cell.startswith(f"{part.age.median():.3g} [{part.age.quantile(0.25):.3g}, {part.age.quantile(0.75):.3g}]")
    age = t1[t1.variable == "age (years)"].iloc[0]
    d = df.dropna(subset=["age"])
    assert age.test == "Kruskal-Wallis"
    assert age.p == pytest.approx(stats.kruskal(*[p.age for _, p in d.groupby("subtype")]).pvalue)
    sex = t1[t1.variable == "sex"].iloc[0]
    assert sex.p == pytest.approx(stats.chi2_contingency(pd.crosstab(df.subtype, df.sex), correction=False).pvalue)
    assert list(t1.columns[2:6]) == ["Overall", "S1", "S2", "S3"]


def test_fisher_for_small_2x2() -> None:
    df = pd.DataFrame({"subtype": ["S1"] * 6 + ["S2"] * 6, "vaso": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1.0]})
    t1, _ = table1(df, {"vaso": {"type": "binary"}})
    assert t1.test.iloc[0] == "Fisher exact"
    assert t1.p.iloc[0] == pytest.approx(stats.fisher_exact([[1, 5], [5, 1]]).pvalue)


def test_label_enrichment_counts() -> None:
    df = _frame()
    en = label_enrichment(df, ["label_X"])
    s1 = en[en.subtype == "S1"].iloc[0]
    part = df[df.subtype == "S1"]
    assert s1.present == (part.label_X == 1).sum() and s1.uncertain == (part.label_X == -1).sum()
    assert s1.prevalence == pytest.approx((part.label_X == 1).sum() / part.label_X.isin([0, 1]).sum())
    assert en.q_bh.between(0, 1).all()


def test_survival_separates_planted_hazards(tmp_path) -> None:
    rng = np.random.default_rng(0)
    sub = np.repeat(["S1", "S2"], 100)
    t = rng.exponential(np.where(sub == "S1", 50.0, 10.0))
    res = survival(pd.DataFrame({"subtype": sub, "time": np.minimum(t, 60), "event": (t < 60).astype(int)}),
                   time="time", event="event", figure=tmp_path / "km.png")
    assert res["logrank_p"] < 1e-6 and res["cox"][0]["hr"] > 2 and (tmp_path / "km.png").stat().st_size > 1000


def test_outcomes_are_per_patient_when_images_are_clustered() -> None:
    """covid with unit: image counted 48 events where there are 5: images must collapse to patients first."""
    from clustering.characterize import per_patient

    units = pd.DataFrame({"image_id": list("abcdef"), "patient_id": ["p1", "p1", "p1", "p2", "p2", "p3"],
                          "subtype": ["S2", "S1", "S2", "S1", "S2", "S1"], "time": [5, 5, 5, 9, 9, 3],
                          "event": [1, 1, 1, 0, 0, 1]})
    patients, split = per_patient(units)
    assert list(patients.patient_id) == ["p1", "p2", "p3"] and split == 2
    assert list(patients.subtype) == ["S2", "S1", "S1"]                 # majority; p2's tie -> the lower S number
    res = survival(patients, time="time", event="event")
    assert res["n"] == 3 and res["events"] == 2
    same, none = per_patient(units.drop(columns="image_id"))         # patient-level units pass through
    assert none == 0 and len(same) == len(units)


def test_table1_marks_p_values_of_latent_inputs_descriptive() -> None:
    from clustering.characterize import DESCRIPTIVE

    t1, _ = table1(_frame(), SCHEMA, descriptive={"age"})
    assert t1.set_index("variable").loc["age (years)", "p_use"] == DESCRIPTIVE
    assert t1[t1.variable == "vaso"].p_use.iloc[0] == "test"


def test_cox_without_events_in_a_group_is_not_estimable_and_said_in_words() -> None:
    from clustering.characterize import cox_table

    rng = np.random.default_rng(0)
    sub = np.repeat(["S1", "S2"], [200, 12])
    t = rng.exponential(20.0, 212)
    event = np.where(sub == "S2", 0, (t < 30).astype(int))                 # S2: no events (covid's S1, n = 1)
    res = survival(pd.DataFrame({"subtype": sub, "time": np.minimum(t, 30), "event": event}), time="time", event="event")
    assert res["cox"][0]["estimable"] is False
    shown = cox_table(res["cox"]).iloc[0]
    assert shown["hazard ratio [95% CI]"].startswith("not estimable") and shown["p"] == ""
    assert {g["subtype"]: g["events"] for g in res["groups"]}["S2"] == 0
