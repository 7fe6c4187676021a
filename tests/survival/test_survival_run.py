"""Survival head stage on a small contract-format cohort: landmarking, token masks, end-to-end outputs."""
from __future__ import annotations

import json

import jax
import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError
from fusion.data import load_patient_data
from fusion.survival.config import Endpoint, SurvivalConfig
from fusion.survival.eval import endpoint_flags
from fusion.survival.inputs import endpoint_target, landmark_images
from fusion.survival.network import SurvivalHead
from fusion.survival.run import run_survival


@pytest.fixture(scope="module")
def data(toy_cohort):
    cohort, store = toy_cohort
    return load_patient_data(cohort, store, model="toy", serial="all", max_images=3)


def test_landmark_keeps_only_images_up_to_the_landmark(data):
    serial = landmark_images(data, landmark_days=3.0, max_images=4, unknown_offset="include")
    assert np.nanmax(serial.days) <= 3.0
    assert serial.notes["images_after_landmark"] == int((data.cxr_offsets > 3.0).sum())
    last = landmark_images(data, landmark_days=None, max_images=1, unknown_offset="include")
    assert np.array_equal(last.days[:, 0], np.nanmax(data.cxr_offsets, axis=1))   # the latest image


def test_landmark_drops_patients_not_at_risk(data):
    target = endpoint_target(data, Endpoint(name="d", time="time", event="event"), landmark_days=3.0)
    time = data.outcomes["time"].to_numpy(float)
    assert np.all(target.time > 3.0)
    assert target.notes["patients_event_or_censored_before_landmark"] == int((time <= 3.0).sum())
    with pytest.raises(ValueError, match="not a role=outcome column"):
        endpoint_target(data, Endpoint(name="x", binary="age"), landmark_days=None)


def test_binary_endpoint_leaves_out_positives_with_the_outcome_before_the_landmark(data):
    y = data.outcomes["death30"].to_numpy(float)
    day = data.outcomes["time"].to_numpy(float)
    with_onset = endpoint_target(data, Endpoint(name="d30", binary="death30", onset="time"), landmark_days=3.0)
    early = (y == 1) & (day <= 3.0)
    assert early.any() and with_onset.notes["positives_with_outcome_before_landmark"] == int(early.sum())
    assert not np.isin(with_onset.rows, np.flatnonzero(early)).any()
    assert len(with_onset.rows) == int((~np.isnan(y)).sum() - early.sum())
    assert endpoint_flags({}, n_events=50, notes=with_onset.notes) == []
    blind = endpoint_target(data, Endpoint(name="d30", binary="death30"), landmark_days=3.0)
    assert len(blind.rows) == int((~np.isnan(y)).sum()) and blind.notes["outcome_onset_unknown"] == int((y == 1).sum())
    assert endpoint_flags({}, n_events=50, notes=blind.notes) == ["onset_unknown"]
    no_landmark = endpoint_target(data, Endpoint(name="d30", binary="death30", onset="time"), landmark_days=None)
    assert len(no_landmark.rows) == int((~np.isnan(y)).sum()) and "outcome_onset_unknown" not in no_landmark.notes
    with pytest.raises(ValueError, match="`onset` is for binary endpoints"):
        Endpoint(name="t", time="time", event="event", onset="time")


def test_missing_tokens_are_exactly_irrelevant():
    head = SurvivalHead(variable_of_column=(0, 1, 1, 2), n_variables=3, d_model=8, d_state=4)
    rng = np.random.default_rng(0)
    batch = {"clin_values": rng.normal(size=(4, 4)).astype(np.float32),
             "clin_mask": np.array([[1, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32),
             "latent": rng.normal(size=(4, 3)).astype(np.float32), "latent_mask": np.array([1, 0, 1, 0], np.float32),
             "cxr": rng.normal(size=(4, 5, 6)).astype(np.float32),
             "cxr_mask": np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], np.float32),
             "cxr_days": rng.uniform(0, 3, (4, 5)).astype(np.float32), "cxr_days_known": np.ones((4, 5), np.float32)}
    apply = jax.jit(head.apply)
    params = jax.jit(head.init)(jax.random.PRNGKey(0), batch)
    junk = dict(batch)
    for key, mask in (("clin_values", "clin_mask"), ("cxr", "cxr_mask"), ("cxr_days", "cxr_mask")):
        m = batch[mask] > 0
        noise = 1e3 * rng.normal(size=batch[key].shape).astype(np.float32)
        junk[key] = np.where(m if m.ndim == batch[key].ndim else m[..., None], batch[key], noise)
    junk["latent"] = np.where(batch["latent_mask"][:, None] > 0, batch["latent"], 1e3)
    assert np.array_equal(np.asarray(apply(params, batch)), np.asarray(apply(params, junk)))
    # fewer padded image slots: same output
    short = {k: (v[:, :2] if k.startswith("cxr") and k != "cxr" else v[:, :2] if k == "cxr" else v) for k, v in batch.items()}
    short["cxr_mask"] = short["cxr_mask"] * 0 + batch["cxr_mask"][:, :2]
    rows = np.asarray(batch["cxr_mask"][:, 2:].sum(1) == 0)
    np.testing.assert_allclose(np.asarray(apply(params, short))[rows], np.asarray(apply(params, batch))[rows], atol=1e-5)


def test_run_survival_end_to_end(toy_cohort, tmp_path):
    cohort, store = toy_cohort
    cfg = SurvivalConfig.model_validate({
        "endpoints": [{"name": "death", "time": "time", "event": "event"}],
        "tokens": {"cxr_model": "toy", "latent": "none", "landmark_days": 3.0},
        "head": {"d_model": 8, "d_state": 4, "ensemble": 1},
        "train": {"max_epochs": 25, "patience": 25, "learning_rate": 0.01},
        "evaluation": {"folds": 2, "n_boot": 30, "pca_components": 2, "ablations": ["linear", "no_cxr"],
                       "baselines": ["clinical_cox", "cxr_pca_cox", "oracle", "rsf"]}})
    paths = run_survival(cfg, cohort=cohort, store=store, selection=None, latents=None, out=tmp_path)
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["tokens"].startswith("CXR series (toy, up to 4 images up to day 3, one token per image), "
                                        "3 clinical variables; selective SSM head + linear term")
    assert (tmp_path / "config.resolved.yaml").is_file() and metrics["config"] == "config.resolved.yaml"
    death = metrics["endpoints"]["death"]
    c = death["metrics"]["c_index"]
    models = {"head", "linear", "no_cxr", "clinical_cox", "cxr_pca_cox", "oracle", "rsf"}
    assert set(c) >= models | {f"head - {m}" for m in models - {"head"}}
    assert c["oracle"]["estimate"] > 0.6                        # the true severity ranks patients
    assert c["head"]["estimate"] > 0.55                         # severity is visible in the embedding
    assert c["head"]["ci_low"] <= c["head"]["estimate"] <= c["head"]["ci_high"]
    h = death["horizons_days"]
    expected = {"uno_c", "antolini_c", "integrated_brier", f"calibration@{death['calibration_horizon_days']:g}d"}
    assert expected | {f"td_auroc@{x:g}d" for x in h} <= set(death["metrics"])
    assert set(death["calibration"]) >= {"head", "clinical_cox", "rsf"}
    assert len(death["calibration"]["head"]["observed"]) == 10
    assert isinstance(death["flags"], list) and "few_events" not in death["flags"]
    risk = pd.read_parquet(paths["risk"])
    assert {"patient_id", "endpoint", "fold", "risk", "risk_linear", "risk_rsf"} <= set(risk.columns)
    assert len(risk.query("endpoint == 'death'")) == death["n_patients"]
    for fig in ("km_death.png", "calibration_death.png", "c_index_death.png"):
        assert (tmp_path / "figures" / fig).is_file(), fig
    assert (tmp_path / "run.json").is_file()


def test_frozen_latent_needs_latents(toy_cohort, tmp_path):
    cohort, store = toy_cohort
    cfg = SurvivalConfig.model_validate({"tokens": {"cxr_model": "toy", "latent": "frozen"}})
    with pytest.raises(ConfigError, match="latents"):
        run_survival(cfg, cohort=cohort, store=store, selection=None, latents=None, out=tmp_path)
