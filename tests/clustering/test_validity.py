"""Every validity-panel check driven to pass and to fail (and to warn where it has one), plus the panel HTML."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from clustering import validity as v
from clustering.config import ValidityConfig

CFG = ValidityConfig()


def _site(ami: float, auroc: float | None, *, model_input: bool = False) -> dict:
    return {"ami": ami, "ari": ami, "model_input": model_input, "classifier": {"auroc": auroc}}


def _statuses(checks: list[dict]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in checks}


def test_site_confounding_ami_and_auroc() -> None:
    good = _statuses(v.site_checks({"site": _site(0.01, 0.55)}, CFG))
    assert good == {"site confounding: subtypes vs site": "pass", "site in the latent: site": "pass"}
    mid = _statuses(v.site_checks({"site": _site(0.1, 0.8)}, CFG))
    assert set(mid.values()) == {"warn"}
    bad = v.site_checks({"dataset": _site(0.43, 0.99)}, CFG)
    assert set(_statuses(bad).values()) == {"fail"}
    assert "0.43" in bad[0]["message"] and "dataset" in bad[0]["message"]
    assert v.site_checks({"sex": _site(0.5, 0.99, model_input=True)}, CFG) == []   # an input of the latent


def test_stability_mean_and_minimum() -> None:
    def summary(mean, worst):
        return {"ari_mean": mean, "ari_min": worst, "n_resamples": 20}

    assert v.stability_check(summary(0.95, 0.9), stable=True, reason="", cfg=CFG)["status"] == "pass"
    assert v.stability_check(summary(0.9, 0.3), stable=True, reason="", cfg=CFG)["status"] == "warn"   # worst low
    assert v.stability_check(summary(0.7, 0.6), stable=True, reason="", cfg=CFG)["status"] == "warn"
    assert v.stability_check(summary(0.417, 0.0), stable=True, reason="", cfg=CFG)["status"] == "fail"
    none = v.stability_check(None, stable=False, reason="no stable structure: best 0.3", cfg=CFG)
    assert none["status"] == "fail" and "No stable subtypes" in none["message"]


def test_smallest_subtype() -> None:
    assert v.size_check({"S1": 200, "S2": 80}, CFG)["status"] == "pass"
    assert v.size_check({"S1": 200, "S2": 20}, CFG)["status"] == "warn"
    bad = v.size_check({"S1": 231, "S2": 1}, CFG)
    assert bad["status"] == "fail" and bad["value"] == 1 and "S2" in bad["message"]


def _surv(groups, cox=None, **extra) -> dict:
    out = {"groups": [{"subtype": s, "n": n, "events": e} for s, n, e in groups], "logrank_p": 0.1}
    if cox is not None:
        out["cox"] = cox
    return {**out, **extra}


def test_kaplan_meier_groups_and_cox_estimability() -> None:
    ok = _statuses(v.survival_checks(_surv([("S1", 100, 30), ("S2", 50, 12)],
                                           cox=[{"subtype": "S2", "estimable": True}]), CFG))
    assert ok == {"Kaplan-Meier groups": "pass", "Cox hazard ratios": "pass"}
    bad = v.survival_checks(_surv([("S1", 231, 5), ("S2", 1, 0)], cox=[{"subtype": "S2", "estimable": False}]), CFG)
    assert set(_statuses(bad).values()) == {"fail"}
    assert "S2 (1 patients, 0 events)" in bad[0]["message"] and "not estimable" in bad[1]["message"]
    assert not re.search(r"\de-\d|, inf\]", bad[1]["message"])                     # words, never 2e-06 [0, inf]
    err = v.survival_checks(_surv([("S1", 100, 30), ("S2", 50, 12)], cox_error="Cox model not estimable: singular"), CFG)
    assert _statuses(err)["Cox hazard ratios"] == "fail"
    assert v.survival_checks({"note": "no time/event columns"}, CFG) == []


def _head(est, lo, hi, diff_hi) -> dict:
    return {"endpoints": {"death": {"metrics": {"c_index": {
        "head": {"estimate": est, "ci_low": lo, "ci_high": hi},
        "clinical_cox": {"estimate": 0.6, "ci_low": 0.55, "ci_high": 0.65},
        "head - clinical_cox": {"estimate": est - 0.6, "ci_low": diff_hi - 0.2, "ci_high": diff_hi}}}}}}


def test_survival_head_against_chance_and_its_clinical_baseline() -> None:
    assert v.survival_head_check(_head(0.7, 0.65, 0.75, 0.2), CFG)[0]["status"] == "pass"
    assert v.survival_head_check(_head(0.6, 0.45, 0.75, 0.1), CFG)[0]["status"] == "warn"
    worse = v.survival_head_check(_head(0.53, 0.51, 0.56, -0.02), CFG)[0]
    assert worse["status"] == "fail" and "significantly below clinical_cox" in worse["message"]
    assert v.survival_head_check(_head(0.45, 0.4, 0.5, 0.1), CFG)[0]["status"] == "fail"


def _comparisons(p: float, auroc_pick: float) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "label": "L", "model_a": "a", "model_b": "b", "auroc_a": auroc_pick,
                          "auroc_b": 0.7, "delong_p_adj": p}])


def test_model_selection() -> None:
    sel = {"model": "a"}
    assert v.selection_check(sel, _comparisons(0.01, 0.9), CFG)["status"] == "pass"
    none = v.selection_check(sel, _comparisons(0.5, 0.9), CFG)
    assert none["status"] == "warn" and "No model differs significantly" in none["message"]
    assert v.selection_check(sel, _comparisons(0.01, 0.6), CFG)["status"] == "fail"      # the pick is worse
    cand = {"model": "a", "candidates": {"a": {}, "b": {"indistinguishable_from_best": True}}}
    assert v.selection_check(cand, None, CFG)["status"] == "warn"


def test_agreement_of_leiden_and_the_mixture() -> None:
    def methods(ari: float | None, gmm: bool = True) -> dict:
        out = {"exported": "leiden", "agreement_ari": ari, "leiden": {"n_subtypes": 3}}
        return {**out, "gmm": {"n_subtypes": 3}} if gmm else out
    assert v.agreement_check(methods(0.9), CFG)["status"] == "pass"
    assert v.agreement_check(methods(0.42), CFG)["status"] == "warn"
    assert v.agreement_check(methods(0.1), CFG)["status"] == "fail"
    assert v.agreement_check(methods(None, gmm=False), CFG) is None      # mixture disabled: no check


def test_excluded_patients() -> None:
    assert v.excluded_check(0, 500, CFG)["status"] == "pass"
    assert v.excluded_check(50, 500, CFG)["status"] == "warn"
    assert v.excluded_check(200, 500, CFG)["status"] == "fail"


def test_thresholds_come_from_the_config_and_must_be_ordered() -> None:
    strict = ValidityConfig(site_ami_warn=0.001, site_ami_fail=0.01)
    assert v.site_checks({"site": _site(0.02, None)}, strict)[0]["status"] == "fail"
    with pytest.raises(ValueError, match="milder"):
        ValidityConfig(site_ami_warn=0.3, site_ami_fail=0.2)


def test_panel_lists_failures_first() -> None:
    checks = [v.excluded_check(0, 10, CFG), v.size_check({"S1": 1, "S2": 9}, CFG)]
    page = v.panel_html(checks)
    assert page.index("smallest subtype") < page.index("excluded patients") and "1 fail, 0 warn, 1 pass" in page
    assert v.panel_html(None) == ""
