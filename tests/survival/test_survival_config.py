"""One source of truth for the head's options; ablation variants; flags; the tokens sentence."""
from __future__ import annotations

from pathlib import Path

import pytest

from fusion.config import load_fusion_config
from fusion.survival.config import SurvivalConfig
from fusion.survival.crossval import head_variants
from fusion.survival.eval import endpoint_flags, token_summary
from fusion.survival.network import SurvivalHead
from fusion.survival.run import load_survival_config
from pipeline.config import load_pipeline_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo", "covid_cxr"])
def test_pipeline_stage_and_head_cli_read_the_same_head(name):
    """The pipeline config, the fusion stage config and the survival CLI on it give one SurvivalConfig."""
    _, sections = load_pipeline_config(ROOT / "configs" / f"{name}.yaml")
    pipeline = sections["fusion"].survival
    stage = load_fusion_config(ROOT / "configs" / "fusion" / f"{name}.yaml")
    assert pipeline == stage.survival
    own = SurvivalConfig.model_validate(__import__("yaml").safe_load((ROOT / "configs/survival" / f"{name}.yaml").read_text()))
    assert stage.survival == own                                   # the survival file is the source
    cli = load_survival_config(ROOT / "configs" / "fusion" / f"{name}.yaml")
    assert cli.tokens.cxr_model == stage.cxr.model                 # null -> the VAE's model, as fusion.run does
    assert cli.model_copy(update={"tokens": own.tokens}) == own
    assert own.tokens.latent == "frozen"                           # covid no longer silently drops the latent


def test_head_variants_cover_the_ablations():
    cfg = SurvivalConfig.model_validate({"evaluation": {"ablations": ["gru", "mlp", "linear", "no_cxr", "no_clinical",
                                                                      "no_latent"]}})
    head = SurvivalHead(variable_of_column=(0,), n_variables=1, use_latent=False)
    variants = head_variants(cfg, head)
    assert list(variants) == ["head", "gru", "mlp", "linear", "no_cxr", "no_clinical"]   # no_latent = the head
    assert variants["gru"].mixer == "gru" and variants["no_cxr"].use_cxr is False
    only_cxr = SurvivalHead(variable_of_column=(), n_variables=0, use_clinical=False, use_latent=False)
    assert "no_cxr" not in head_variants(cfg, only_cxr)             # would leave no token group


def _c(head, diff_high=None):
    out = {"c_index": {"head": {"estimate": head, "ci_low": head - 0.05, "ci_high": head + 0.05}}}
    if diff_high is not None:
        out["c_index"]["head - clinical_cox"] = {"estimate": diff_high - 0.05, "ci_low": diff_high - 0.1,
                                                 "ci_high": diff_high}
    return out


def test_flags():
    assert endpoint_flags(_c(0.7, 0.02), n_events=50) == []
    assert endpoint_flags(_c(0.45, -0.01), n_events=50) == ["worse_than_clinical", "c_below_half"]
    assert endpoint_flags(_c(0.6), n_events=9) == ["few_events"]


def test_token_summary_states_every_group():
    cfg = SurvivalConfig.model_validate({"tokens": {"max_images": 4, "landmark_days": 3.0, "latent": "frozen"}})
    text = token_summary(cfg, cxr_model="radiomics", n_clinical=12, latent_dim=16)
    assert text.startswith("CXR series (radiomics, up to 4 images up to day 3, one token per image), 12 clinical "
                           "variables, fused latent (frozen, 16 dims); selective SSM head + linear term")
    none = SurvivalConfig.model_validate({"tokens": {"cxr": False, "latent": "none"}, "head": {"mixer": "gru"}})
    assert token_summary(none, cxr_model=None, n_clinical=7, latent_dim=None).startswith("7 clinical variables; GRU head")
