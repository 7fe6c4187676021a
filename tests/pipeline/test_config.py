"""The composed pipeline config rejects unknown sections with a message naming the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError
from pipeline.config import load_pipeline_config


def test_unknown_top_level_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\nclusterng: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*clusterng"):
        load_pipeline_config(cfg)


def test_missing_required_section(tmp_path: Path) -> None:
    cfg = tmp_path / "partial.yaml"
    cfg.write_text("name: x\n")
    with pytest.raises(ConfigError, match="missing section 'cohorts'"):
        load_pipeline_config(cfg)


def test_sections_include_stage_configs_with_deep_merged_overrides(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "fusion.yaml").write_text("seed: 3\nmodel: {latent_dim: 8, hidden: 64}\n"
                                                      "survival:\n  from: survival.yaml\n")
    (tmp_path / "stages" / "survival.yaml").write_text("enabled: true\nhead: {d_model: 24}\n")
    (tmp_path / "cohorts.yaml").write_text("sources: [{kind: demo, n_patients: 20}]\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: inc\ncohorts: {from: cohorts.yaml}\nembedders: {models: [{name: radiomics}]}\n"
                   "fusion:\n  from: stages/fusion.yaml\n  model: {latent_dim: 4}\n  survival: {head: {n_layers: 2}}\n"
                   "clustering: {}\n")
    name, sections = load_pipeline_config(cfg)
    fusion = sections["fusion"]
    assert name == "inc" and fusion.seed == 3
    assert (fusion.model.latent_dim, fusion.model.hidden) == (4, 64)          # override + kept sibling
    assert (fusion.survival.head.d_model, fusion.survival.head.n_layers) == (24, 2)  # nested include + override
    assert sections["cohorts"].sources[0].n_patients == 20


def test_include_errors_name_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("cohorts: {from: nowhere.yaml}\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_pipeline_config(cfg)
    (tmp_path / "c.yaml").write_text("sources: [{kind: demo, n_patiens: 20}]\n")
    cfg.write_text("cohorts: {from: c.yaml}\nembedders: {}\nfusion: {}\nclustering: {}\n")
    with pytest.raises(ConfigError, match=r"(?s)run.yaml \[cohorts\] \(from c.yaml\).*n_patiens"):
        load_pipeline_config(cfg)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")))
def test_shipped_pipeline_configs_validate(path: Path) -> None:
    name, sections = load_pipeline_config(path)
    assert name and {"cohorts", "embedders", "clustering"} <= set(sections)


def test_reading_the_pipeline_config_does_not_load_jax() -> None:
    """The pipeline reads every stage's config before the embedders stage; JAX loaded by then makes the
    embedders' DataLoader workers start from a forkserver (the demo's embedders stage took 97 s instead of 58 s)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    code = ("import sys; from pipeline.config import load_pipeline_config; "
            "load_pipeline_config('configs/demo.yaml'); print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
