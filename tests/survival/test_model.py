"""The user API of the survival head: ``SurvivalModel(cfg).fit(inputs, target)``, ``predict_risk``, ``predict_survival``."""
from __future__ import annotations

import numpy as np
import pytest

from fusion.data import load_patient_data
from fusion.survival.config import SurvivalConfig
from fusion.survival.inputs import endpoint_target, head_inputs
from fusion.survival.model import SurvivalModel


def _config(**overrides: object) -> SurvivalConfig:
    base = {"tokens": {"cxr_model": "toy", "latent": "none"}, "head": {"d_model": 8, "d_state": 4, "ensemble": 2},
            "train": {"max_epochs": 4, "patience": 4, "learning_rate": 0.01}}
    return SurvivalConfig.model_validate(base | overrides)


@pytest.fixture(scope="module")
def toy(toy_cohort):
    """(inputs, target of the time-to-event endpoint, training mask over the target's rows) of the toy cohort."""
    cohort, store = toy_cohort
    cfg = _config()
    data = load_patient_data(cohort, store, model="toy", serial="all", max_images=3)
    inputs, _ = head_inputs(data, cfg.tokens, latents=None)
    target = endpoint_target(data, cfg.endpoints[0], landmark_days=cfg.tokens.landmark_days)
    return inputs, target, np.arange(len(target.rows)) % 4 != 0


def test_cox_model_fits_and_predicts(toy):
    inputs, target, train = toy
    model = SurvivalModel(_config()).fit(inputs, target.subset(train))
    assert model.kind_ == "cox" and len(model.params_) == len(model.offsets_) == len(model.best_epochs_) == 2
    assert model.network_.n_out == 1 and model.cuts_ is None and model.vae_ is None
    test_rows = target.rows[~train]
    risk = model.predict_risk(inputs, test_rows)
    assert risk.shape == (len(test_rows),) and np.isfinite(risk).all()
    assert abs(model.predict_risk(inputs, target.rows[train]).mean()) < 1e-9     # centred on the training patients
    surv = model.predict_survival(inputs, test_rows, np.array([5.0, 10.0, 20.0]))
    assert surv.shape == (len(test_rows), 3) and ((surv >= 0) & (surv <= 1)).all()
    assert (np.diff(surv, axis=1) <= 0).all()
    again = SurvivalModel(_config()).fit(inputs, target.subset(train))          # same seed: same model
    np.testing.assert_array_equal(again.predict_risk(inputs, test_rows), risk)


def test_discrete_model_has_one_logit_per_bin_and_binary_has_no_curve(toy):
    inputs, target, train = toy
    model = SurvivalModel(_config(loss={"kind": "discrete", "n_bins": 4}, head={"d_model": 8, "d_state": 4,
                                                                                "ensemble": 1})).fit(inputs, target.subset(train))
    assert model.network_.n_out == len(model.cuts_) + 1
    assert model.predict(inputs, target.rows[~train]).shape == (int((~train).sum()), len(model.cuts_) + 1)
    with pytest.raises(ValueError, match="n_out"):
        SurvivalModel(model.cfg, network=model.network_.clone(n_out=1)).fit(inputs, target.subset(train))

    binary = endpoint_target(inputs.data, SurvivalConfig.model_validate(
        {"endpoints": [{"name": "d30", "binary": "death30"}]}).endpoints[0], landmark_days=None)
    fitted = SurvivalModel(_config(head={"d_model": 8, "d_state": 4, "ensemble": 1})).fit(
        inputs, binary.subset(np.arange(len(binary.rows)) % 4 != 0))
    assert fitted.kind_ == "binary" and fitted.baseline_cumulative_hazard_ is None
    with pytest.raises(ValueError, match="no survival curve"):
        fitted.predict_survival(inputs, binary.rows[:3], np.array([1.0]))
