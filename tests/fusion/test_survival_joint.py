"""Survival head with ``tokens.latent: joint``: a fusion VAE trained with the head (shared latent) in each fold."""
from __future__ import annotations

import json

import jax
import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, validate_config
from fusion.config import FusionConfig
from fusion.data import load_patient_data
from fusion.model import FusionVAE
from fusion.survival.config import SurvivalConfig
from fusion.survival.network import SurvivalHead
from fusion.survival.objective import VAE_PREFIX, HeadLoss, JointLoss
from fusion.survival.run import run_survival


def _survival_config(latent: str = "joint", **overrides: object) -> SurvivalConfig:
    base = {"seed": 0, "tokens": {"cxr_model": "synthetic", "latent": latent, "landmark_days": 3.0},
            "head": {"d_model": 8, "d_state": 4}, "joint": {"weight": 2.0},
            "train": {"max_epochs": 6, "patience": 6, "batch_size": 64, "learning_rate": 0.01, "warmup_steps": 2},
            "evaluation": {"folds": 2, "n_boot": 20, "pca_components": 2}}
    return SurvivalConfig.model_validate(base | overrides)


@pytest.fixture(scope="module")
def joint_batch(contract_cohort, tiny_config):
    """(JointLoss in score mode, params {"head", "vae"}, batch of 16 patients) on the contract cohort."""
    cohort, store = contract_cohort
    data = load_patient_data(cohort, store, model="synthetic", serial="all", max_images=3).subset(np.arange(16))
    fusion: FusionConfig = tiny_config()
    vae = FusionVAE(fusion)
    vae_arrays = vae.prepare(data, seed=0)
    n = len(data)
    rng = np.random.default_rng(0)
    batch = {f"{VAE_PREFIX}{k}": v for k, v in vae_arrays.items()} | {
        "clin_values": np.zeros((n, 1), np.float32), "clin_mask": np.zeros((n, 1), np.float32),
        "latent": np.zeros((n, fusion.model.latent_dim), np.float32), "latent_mask": np.ones(n, np.float32),
        "cxr": np.zeros((n, 1, 4), np.float32), "cxr_mask": np.zeros((n, 1), np.float32),
        "cxr_days": np.zeros((n, 1), np.float32), "cxr_days_known": np.zeros((n, 1), np.float32),
        "time": rng.exponential(10, n).astype(np.float32), "event": (rng.random(n) < 0.5).astype(np.float32),
        "weight": np.ones(n, np.float32)}
    head = SurvivalHead(variable_of_column=(0,), n_variables=1, d_model=8, d_state=4, use_clinical=False,
                        use_cxr=False)
    head_params = head.init(jax.random.PRNGKey(0), {k: v for k, v in batch.items() if not k.startswith(VAE_PREFIX)})
    vae_json = fusion.model_dump_json(include={"model", "kl"})
    score = JointLoss(HeadLoss(head, "cox", "efron"), vae.module, vae_json, score=True)
    return score, {"head": head_params["params"], "vae": vae.params}, batch


def _norm(tree) -> float:
    return float(sum(np.sum(np.asarray(x) ** 2) for x in jax.tree_util.tree_leaves(tree)) ** 0.5)


def test_survival_gradient_reaches_the_vae_encoder_and_frozen_mode_is_unchanged(joint_batch):
    score, params, batch = joint_batch
    key, step = jax.random.PRNGKey(1), np.int32(0)
    grads = jax.grad(lambda p: score(p, batch, key, step)[0])(params)
    vae_grads = grads["vae"]
    for encoder in ("clin_body", "clin_head", "cxr_body", "cxr_head", "cxr_pool"):
        assert _norm(vae_grads[encoder]) > 0, encoder          # the survival loss trains both encoders
    assert _norm(vae_grads["cxr_dec"]) == 0 and _norm(vae_grads["clin_dec"]) == 0   # decoders: ELBO only

    # the joint survival term is the frozen head's loss given the same (posterior-mean) latent
    head_batch, _ = score.head_batch(params, batch)
    frozen = score.head(params["head"], {k: np.asarray(v) for k, v in head_batch.items()}, key, step)[0]
    assert np.isclose(float(frozen), float(score(params, batch, key, step)[0]), rtol=1e-6)
    frozen_grads = jax.grad(lambda p: score.head(p, head_batch | {"latent": np.asarray(head_batch["latent"])},
                                                 key, step)[0])(params["head"])
    assert jax.tree_util.tree_structure(frozen_grads) == jax.tree_util.tree_structure(params["head"])

    # the training loss adds the negative ELBO to weight x the survival loss
    train = JointLoss(score.head, score.vae, score.vae_config, weight=3.0)
    total, parts = train(params, batch, key, step)
    assert np.isclose(float(total), float(parts["neg_elbo"] + 3.0 * parts["survival"]), rtol=1e-5)
    assert np.isclose(float(parts["survival"]), float(frozen), rtol=1e-6)


@pytest.fixture(scope="module")
def joint_runs(contract_cohort, tiny_config, tmp_path_factory):
    cohort, store = contract_cohort
    cfg, fusion = _survival_config(), tiny_config()
    outs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"joint{i}")
        run_survival(cfg, cohort=cohort, store=store, latents=None, out=out, fusion=fusion)
        outs.append(out)
    return outs


def test_joint_mode_runs_end_to_end(joint_runs):
    metrics = json.loads((joint_runs[0] / "metrics.json").read_text())
    assert metrics["latent"] == "joint"
    assert metrics["joint_vae_config"]["model"]["latent_dim"] == 4
    c = metrics["endpoints"]["death"]["metrics"]["c_index"]
    assert 0.0 <= c["head"]["estimate"] <= 1.0
    assert {"clinical_cox", "oracle", "head - clinical_cox"} <= set(c)
    risk = pd.read_parquet(joint_runs[0] / "risk.parquet")
    assert np.isfinite(risk["risk"]).all()


def test_joint_mode_same_seed_same_risks(joint_runs):
    a, b = (pd.read_parquet(out / "risk.parquet") for out in joint_runs)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_joint_config_validation():
    cfg = validate_config({"tokens": {"latent": "joint"}, "joint": {"weight": 0.5}}, SurvivalConfig, source="t")
    assert cfg.tokens.latent == "joint" and cfg.joint.weight == 0.5
    assert SurvivalConfig().joint.weight == 1.0 and SurvivalConfig().tokens.latent == "frozen"
    for bad in ({"joint": {"wieght": 1.0}}, {"joint": {"weight": -1.0}}, {"tokens": {"latent": "shared"}},
                {"joint": {"weight": 1.0, "epochs": 3}}):
        with pytest.raises(ConfigError):
            validate_config(bad, SurvivalConfig, source="t")
    fusion = FusionConfig.model_validate({"survival": {"tokens": {"latent": "joint"}, "joint": {"weight": 2}}})
    assert fusion.survival.joint.weight == 2.0


def test_fusion_stage_passes_its_own_config_to_the_joint_head(monkeypatch, tiny_config):
    import fusion.survival.run
    from fusion.run import _run_survival_if_enabled

    seen = {}
    monkeypatch.setattr(fusion.survival.run, "run_survival", lambda survival, **kw: seen.update(kw, survival=survival))
    cfg = tiny_config(survival={"enabled": True, "tokens": {"latent": "joint"}})
    _run_survival_if_enabled(cfg, model="synthetic", augmentation="original", cohort=None, store=None,
                             selection=None, latents=None, out=None)
    assert seen["fusion"] is cfg and seen["survival"].tokens.latent == "joint"
    assert seen["survival"].tokens.cxr_model == "synthetic"
